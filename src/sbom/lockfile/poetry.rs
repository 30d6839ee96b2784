//! `poetry.lock`: the Python packages Poetry installs for the app.

use serde::Deserialize;

use super::{package, pypi_name, toml_packages, unique, Problem};
use crate::sbom::AppPackage;

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
}

/// The packages `lock` pins. Poetry records a hash per wheel and sdist,
/// not one for the package, so none is given as its checksum.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let packages: Vec<Package> = toml_packages(lock)?;
    Ok(unique(packages.iter().map(|p| {
        package("pypi", None, &pypi_name(&p.name), &p.version, None)
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_pinned_packages_with_normalized_names() {
        let lock = br#"
[[package]]
name = "Flask_Login"
version = "0.6.3"
files = [{file = "x.whl", hash = "sha256:00"}]

[[package]]
name = "six"
version = "1.16.0"

[metadata]
lock-version = "2.0"
"#;
        let purls: Vec<String> = packages(lock)
            .unwrap()
            .into_iter()
            .map(|p| p.purl)
            .collect();
        assert_eq!(purls, ["pkg:pypi/flask-login@0.6.3", "pkg:pypi/six@1.16.0"]);
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_their_line() {
        let err = packages(b"[[package]]\nname = \"a\"\n").unwrap_err();
        assert!(err.reason.contains("version"), "{err:?}");
        let bad = b"\n\n[[package]]\nname = [\"a\"]\nversion = \"1\"\n";
        assert_eq!(packages(bad).unwrap_err().line, Some(4));
        assert!(survives(packages, &[bad, b"package = {}"]) >= 10);
    }
}
