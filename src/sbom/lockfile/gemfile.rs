//! `Gemfile.lock`: the gems Bundler installs. Written here because
//! Bundler's lockfile is an indentation format of its own that no
//! maintained Rust crate reads; kiln needs only the `specs:` entries.

use super::{package, Problem};
use crate::sbom::purl::encode;
use crate::sbom::AppPackage;

/// The gems the `GEM` and `GIT` sections of `lock` list (a `PATH` gem is
/// the app's own code). A platform-specific gem (`nokogiri
/// (1.16.0-x86_64-linux)`) gets the purl `platform` qualifier.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let text = super::text(lock)?;
    let mut found = Vec::new();
    let mut section = "";
    let mut in_specs = false;
    for (index, line) in text.lines().enumerate() {
        if !line.starts_with(' ') {
            section = line.trim();
            in_specs = false;
            continue;
        }
        if line.trim() == "specs:" {
            in_specs = true;
            continue;
        }
        // Gems are indented four spaces under `specs:`; their own
        // dependencies six.
        let is_gem = line.starts_with("    ") && !line.starts_with("     ");
        if !in_specs || !is_gem || !matches!(section, "GEM" | "GIT") {
            continue;
        }
        let entry = line.trim();
        let (name, version) = entry
            .strip_suffix(')')
            .and_then(|e| e.split_once(" ("))
            .ok_or_else(|| {
                Problem::at(index + 1, format!("lists `{entry}`, not `NAME (VERSION)`"))
            })?;
        if name.is_empty() || version.trim().is_empty() || name.contains(char::is_whitespace) {
            return Err(Problem::at(
                index + 1,
                format!("lists `{entry}`, not `NAME (VERSION)`"),
            ));
        }
        // Gem versions hold no `-`; the first one starts the platform.
        let mut gem = match version.split_once('-') {
            Some((version, platform)) => {
                let mut gem = package("gem", None, name, version, None);
                gem.purl = format!("{}?platform={}", gem.purl, encode(platform));
                gem
            }
            None => package("gem", None, name, version, None),
        };
        gem.version = version.to_string();
        found.push(gem);
    }
    Ok(super::unique(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    const LOCK: &str = "PATH
  remote: .
  specs:
    myapp (0.1.0)
      rack (>= 2)

GIT
  remote: https://example.invalid/x.git
  revision: abc
  specs:
    forked (1.2.3)

GEM
  remote: https://rubygems.org/
  specs:
    nokogiri (1.16.0-x86_64-linux)
      racc (~> 1.4)
    rack (3.0.8)
    racc (1.7.3)

PLATFORMS
  x86_64-linux

DEPENDENCIES
  nokogiri
  rack (>= 2)

BUNDLED WITH
   2.5.3
";

    #[test]
    fn lists_gems_but_not_path_gems_or_their_requirements() {
        let found = packages(LOCK.as_bytes()).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:gem/forked@1.2.3",
                "pkg:gem/nokogiri@1.16.0?platform=x86_64-linux",
                "pkg:gem/racc@1.7.3",
                "pkg:gem/rack@3.0.8",
            ]
        );
    }

    #[test]
    fn hostile_entries_are_refused_with_their_line() {
        let bad = "GEM\n  specs:\n    rack 3.0.8\n";
        let err = packages(bad.as_bytes()).unwrap_err();
        assert_eq!(err.line, Some(3));
        let odd = "GEM\n  specs:\n    a/b%c ( )\n    x y (1)\n";
        assert!(packages(odd.as_bytes()).is_err());
        let encoded = packages(b"GEM\n  specs:\n    a/b@c (1-p/q)\n").unwrap();
        assert_eq!(encoded[0].purl, "pkg:gem/a%2Fb%40c@1?platform=p%2Fq");
        assert!(survives(packages, &[bad.as_bytes()]) >= 3);
    }
}
