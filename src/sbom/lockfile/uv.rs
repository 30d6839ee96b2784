//! `uv.lock`: the Python packages uv installs for the app.

use serde::Deserialize;

use super::{package, prefixed_hash, pypi_name, toml_packages, unique, Problem};
use crate::sbom::AppPackage;

#[derive(Deserialize)]
struct Package {
    name: String,
    version: Option<String>,
    #[serde(default)]
    source: toml::Table,
    sdist: Option<Archive>,
}

#[derive(Deserialize)]
struct Archive {
    hash: Option<String>,
}

/// The packages `lock` pins. The app itself (an `editable` or `virtual`
/// source) is left out; a package's sdist hash is its checksum, the one
/// archive every platform shares.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let packages: Vec<Package> = toml_packages(lock)?;
    Ok(unique(packages.iter().filter_map(|p| {
        if p.source.contains_key("editable") || p.source.contains_key("virtual") {
            return None;
        }
        let checksum = p
            .sdist
            .as_ref()
            .and_then(|s| s.hash.as_deref())
            .and_then(prefixed_hash);
        Some(package(
            "pypi",
            None,
            &pypi_name(&p.name),
            p.version.as_deref()?,
            checksum,
        ))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_registry_packages_but_not_the_app() {
        let lock = format!(
            r#"version = 1
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1.0"
source = {{ editable = "." }}

[[package]]
name = "Jinja2"
version = "3.1.4"
source = {{ registry = "https://pypi.org/simple" }}
sdist = {{ url = "https://x/j.tar.gz", hash = "sha256:{}", size = 1 }}

[[package]]
name = "dynamic"
source = {{ virtual = "." }}
"#,
            "ab".repeat(32)
        );
        let found = packages(lock.as_bytes()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].purl, "pkg:pypi/jinja2@3.1.4");
        assert_eq!(found[0].checksum.as_ref().unwrap().algorithm, "SHA256");
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_their_line() {
        let bad = b"[[package]]\nname = \"a\"\nsource = 7\n";
        let err = packages(bad).unwrap_err();
        assert_eq!(err.line, Some(3), "{err:?}");
        assert!(survives(packages, &[bad, b"[[package]]\nname = \"x\"\nsdist = 1"]) >= 10);
    }
}
