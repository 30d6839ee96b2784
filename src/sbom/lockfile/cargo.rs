//! `Cargo.lock` (versions 1 to 4): the crates Cargo builds into the app.

use serde::Deserialize;

use super::{hex_checksum, package, toml_packages, unique, Problem};
use crate::sbom::AppPackage;

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
}

/// The crates `lock` names that come from a registry or git: a package
/// without a `source` is a member of the app's own workspace.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let packages: Vec<Package> = toml_packages(lock)?;
    Ok(unique(packages.into_iter().filter_map(|p| {
        p.source.as_ref()?;
        let checksum = p
            .checksum
            .as_deref()
            .and_then(|c| hex_checksum("SHA256", c));
        Some(package("cargo", None, &p.name, &p.version, checksum))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_registry_crates_with_their_checksums() {
        let lock = br#"version = 3
[[package]]
name = "app"
version = "0.1.0"
dependencies = ["serde"]

[[package]]
name = "serde"
version = "1.0.200"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"

[[package]]
name = "weird name/..%"
version = "1.0.0+build"
source = "git+https://example.invalid/x#abc"
"#;
        let found = packages(lock).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:cargo/serde@1.0.200",
                "pkg:cargo/weird%20name%2F..%25@1.0.0+build"
            ]
        );
        assert_eq!(
            found[0].checksum.as_ref().unwrap().hex,
            "abcdef0123456789".repeat(4)
        );
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_their_line() {
        let wrong_type = b"[[package]]\nname = \"a\"\nversion = 1\nsource = \"x\"\n";
        let err = packages(wrong_type).unwrap_err();
        assert_eq!(err.line, Some(3), "{err:?}");
        assert!(err.reason.contains("TOML"), "{err:?}");
        let refused = survives(packages, &[wrong_type, b"package = 3", b"[[package]]\n"]);
        assert!(refused >= 10, "{refused}");
        assert!(packages(b"").unwrap().is_empty());
    }
}
