//! `yarn.lock`: the npm packages Yarn installs for the app. Yarn 2+
//! ("berry") writes YAML, read with serde_yaml; Yarn 1 writes a format of
//! its own (YAML-like, but not YAML: `version "1.0.0"`), which no
//! maintained Rust crate reads, so its few rules are written here.

use serde_yaml::Value;

use super::npm::{integrity, npm_package};
use super::{hex_checksum, Problem};
use crate::sbom::AppPackage;

/// The packages `lock` resolves, in either format.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let text = super::text(lock)?;
    let berry = text.lines().any(|l| l.starts_with("__metadata:"));
    if berry {
        berry_packages(lock)
    } else {
        classic_packages(text)
    }
}

/// Yarn 1: entries `"name@range", name@range2:` at the left margin, then
/// indented `version "..."` and `integrity sha512-...` lines.
fn classic_packages(text: &str) -> Result<Vec<AppPackage>, Problem> {
    let mut found = Vec::new();
    // The current entry: its line, its name, its version and integrity.
    let mut entry: Option<(usize, String, Option<String>, Option<String>)> = None;
    let mut finish = |entry: Option<(usize, String, Option<String>, Option<String>)>| {
        let Some((line, name, version, checksum)) = entry else {
            return Ok(());
        };
        let version =
            version.ok_or_else(|| Problem::at(line, format!("has no version for `{name}`")))?;
        let package = npm_package(&name, &version, checksum.as_deref().and_then(integrity))
            .map_err(|reason| Problem::at(line, format!("has a package that {reason}")))?;
        found.push(package);
        Ok::<(), Problem>(())
    };
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            finish(entry.take())?;
            let header = line
                .strip_suffix(':')
                .ok_or_else(|| Problem::at(number, "has an entry that does not end in `:`"))?;
            let first = header.split(',').next().unwrap_or_default().trim();
            let first = unquote(first);
            // The selector is `name@range`; a scope's own `@` is first.
            let (at, _) = first
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == '@')
                .ok_or_else(|| {
                    Problem::at(number, format!("has an entry `{first}` with no `@range`"))
                })?;
            entry = Some((number, first[..at].to_string(), None, None));
            continue;
        }
        let Some((_, _, version, checksum)) = entry.as_mut() else {
            return Err(Problem::at(
                number,
                "has an indented line outside any entry",
            ));
        };
        // Fields of the entry are indented two spaces; deeper lines are
        // its dependencies.
        if line.starts_with("   ") {
            continue;
        }
        let (field, value) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
        match field {
            "version" => *version = Some(unquote(value.trim()).to_string()),
            "integrity" => *checksum = Some(unquote(value.trim()).to_string()),
            _ => {}
        }
    }
    finish(entry.take())?;
    Ok(super::unique(found))
}

/// `text` without one pair of surrounding double quotes.
fn unquote(text: &str) -> &str {
    text.strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text)
}

/// Yarn 2+: a YAML map from selectors to entries with `version`,
/// `resolution` (`name@npm:1.0.0`) and `checksum`. Only `npm:` packages
/// are dependencies; `workspace:` and `link:` ones are the app's own code.
fn berry_packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let lock: Value = super::yaml(lock)?;
    let entries = lock
        .as_mapping()
        .ok_or_else(|| Problem::whole("is not a map of packages"))?;
    let mut found = Vec::new();
    for (key, entry) in entries {
        if key.as_str() == Some("__metadata") {
            continue;
        }
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let Some(resolution) = field("resolution") else {
            return Err(Problem::whole(format!(
                "has an entry `{key:?}` with no resolution"
            )));
        };
        let (at, _) = resolution
            .char_indices()
            .skip(1)
            .find(|&(_, c)| c == '@')
            .ok_or_else(|| {
                Problem::whole(format!("has a resolution `{resolution}` with no `@`"))
            })?;
        if !resolution[at + 1..].starts_with("npm:") {
            continue;
        }
        let version = field("version")
            .ok_or_else(|| Problem::whole(format!("has no version for `{resolution}`")))?;
        // Yarn 4 prefixes the hex SHA-512 with its cache key (`10c0/`).
        let checksum = field("checksum")
            .map(|c| c.rsplit('/').next().unwrap_or(c))
            .and_then(|c| hex_checksum("SHA512", c));
        let package = npm_package(&resolution[..at], version, checksum)
            .map_err(|reason| Problem::whole(format!("has a package that {reason}")))?;
        found.push(package);
    }
    Ok(super::unique(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::{purls, survives};

    #[test]
    fn reads_yarn_1() {
        let lock = r#"# THIS IS AN AUTOGENERATED FILE.
# yarn lockfile v1


"@babel/code-frame@^7.0.0", "@babel/code-frame@^7.10.4":
  version "7.12.13"
  resolved "https://registry.yarnpkg.com/x.tgz#abc"
  integrity sha512-AAEC
  dependencies:
    "@babel/highlight" "^7.12.13"

lodash@^4.17.21:
  version "4.17.21"
"#;
        assert_eq!(
            purls(packages, lock),
            [
                "pkg:npm/%40babel/code-frame@7.12.13",
                "pkg:npm/lodash@4.17.21"
            ]
        );
    }

    #[test]
    fn reads_yarn_berry() {
        let lock = format!(
            r#"__metadata:
  version: 8
  cacheKey: 10c0

"app@workspace:.":
  version: 0.0.0-use.local
  resolution: "app@workspace:."
  languageName: unknown
  linkType: soft

"lodash@npm:^4.17.21":
  version: 4.17.21
  resolution: "lodash@npm:4.17.21"
  checksum: 10c0/{}
  languageName: node
  linkType: hard

"@types/node@npm:20.1.0":
  version: 20.1.0
  resolution: "@types/node@npm:20.1.0"
"#,
            "ab".repeat(64)
        );
        let found = packages(lock.as_bytes()).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            ["pkg:npm/%40types/node@20.1.0", "pkg:npm/lodash@4.17.21"]
        );
        assert_eq!(found[1].checksum.as_ref().unwrap().algorithm, "SHA512");
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_their_line() {
        let no_version = "a@^1:\n  resolved \"x\"\n\nb@^2:\n  version \"2\"\n";
        assert_eq!(packages(no_version.as_bytes()).unwrap_err().line, Some(1));
        let no_colon = "a@^1:\n  version \"1\"\nb@^2\n";
        assert_eq!(packages(no_colon.as_bytes()).unwrap_err().line, Some(3));
        let stray = "  version \"1\"\n";
        assert!(packages(stray.as_bytes()).is_err());
        let no_at = "\"@scope\":\n  version \"1\"\n";
        assert!(packages(no_at.as_bytes()).is_err());
        let berry_bad = "__metadata:\n  version: 8\nx: [\n";
        assert!(packages(berry_bad.as_bytes()).unwrap_err().line.is_some());
        let berry_type = "__metadata:\n  version: 8\n\"a@npm:1\":\n  resolution: [1]\n";
        assert!(packages(berry_type.as_bytes()).is_err());
        let encoded = purls(packages, "\"a%b#c@1\":\n  version \"1?x\"\n");
        assert_eq!(encoded, ["pkg:npm/a%25b%23c@1%3Fx"]);
        assert!(survives(packages, &[no_version.as_bytes(), berry_bad.as_bytes()]) >= 10);
    }
}
