//! `pnpm-lock.yaml` (lockfile versions 5, 6 and 9): the npm packages pnpm
//! installs for the app.

use serde_yaml::Value;

use super::npm::{integrity, npm_package};
use super::Problem;
use crate::sbom::AppPackage;

/// The packages of `lock`'s `packages` map. Its keys name each package
/// and version: `/name/1.0.0_peer@2` in version 5, `/name@1.0.0(peer@2)`
/// in version 6, `name@1.0.0` in version 9; an entry's own `name` and
/// `version` fields win where pnpm wrote them (packages from tarballs or
/// git).
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let lock: Value = super::yaml(lock)?;
    let Some(packages) = lock.get("packages") else {
        return Ok(Vec::new());
    };
    let packages = packages
        .as_mapping()
        .ok_or_else(|| Problem::whole("has a `packages` that is not a map"))?;
    let version_5 = match lock.get("lockfileVersion") {
        Some(Value::Number(n)) => n.as_f64().is_some_and(|n| n < 6.0),
        Some(Value::String(s)) => s.starts_with('5'),
        _ => false,
    };
    let mut found = Vec::new();
    for (key, entry) in packages {
        let key = key.as_str().ok_or_else(|| {
            Problem::whole(format!("has a package key `{key:?}` that is not text"))
        })?;
        let (key_name, key_version) = split_key(key, version_5)
            .ok_or_else(|| Problem::whole(format!("has a package key `{key}` with no version")))?;
        let field = |name: &str| entry.get(name).and_then(Value::as_str);
        let name = field("name").unwrap_or(key_name);
        let version = field("version").unwrap_or(key_version);
        // `link:` and `file:` folders are the app's own workspace.
        if version.starts_with("link:") || version.starts_with("file:") {
            continue;
        }
        let checksum = entry
            .get("resolution")
            .and_then(|r| r.get("integrity"))
            .and_then(Value::as_str)
            .and_then(integrity);
        found
            .push(npm_package(name, version, checksum).map_err(|reason| {
                Problem::whole(format!("has a package `{key}` that {reason}"))
            })?);
    }
    Ok(super::unique(found))
}

/// Name and version of a `packages` key, peer suffixes dropped.
fn split_key(key: &str, version_5: bool) -> Option<(&str, &str)> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if version_5 {
        let (name, version) = key.rsplit_once('/')?;
        let version = version.split('_').next().unwrap_or(version);
        return Some((name, version));
    }
    let key = key.split('(').next().unwrap_or(key);
    // The `@` after the name; a scope's own `@` is the first character.
    let (at, _) = key.char_indices().skip(1).find(|&(_, c)| c == '@')?;
    Some((&key[..at], &key[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::{purls, survives};

    #[test]
    fn reads_versions_5_6_and_9() {
        let v5 = "lockfileVersion: 5.4\npackages:\n  /@types/node/20.1.0:\n    resolution: {integrity: sha512-AAEC}\n  /react-dom/18.2.0_react@18.2.0:\n    dev: false\n";
        let v6 = "lockfileVersion: '6.0'\npackages:\n  /@types/node@20.1.0:\n    resolution: {integrity: sha512-AAEC}\n  /react-dom@18.2.0(react@18.2.0):\n    dev: false\n";
        let v9 = "lockfileVersion: '9.0'\nimporters:\n  .: {}\npackages:\n  '@types/node@20.1.0':\n    resolution: {integrity: sha512-AAEC}\n  react-dom@18.2.0:\n    resolution: {integrity: sha512-AAEC}\nsnapshots:\n  react-dom@18.2.0(react@18.2.0): {}\n";
        let expected = ["pkg:npm/%40types/node@20.1.0", "pkg:npm/react-dom@18.2.0"];
        assert_eq!(purls(packages, v5), expected);
        assert_eq!(purls(packages, v6), expected);
        assert_eq!(purls(packages, v9), expected);
    }

    #[test]
    fn entry_fields_win_and_workspace_links_are_left_out() {
        let lock = "lockfileVersion: '6.0'\npackages:\n  '@tarball/x@file:x.tgz':\n    name: x\n    version: 1.0.0\n  /y@link:../y: {}\n";
        assert_eq!(purls(packages, lock), ["pkg:npm/x@1.0.0"]);
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_a_reason() {
        let bad = "lockfileVersion: '9.0'\npackages:\n  x: [1\n";
        assert!(packages(bad.as_bytes()).unwrap_err().line.is_some());
        let no_version = "packages:\n  noversion: {}\n";
        assert!(packages(no_version.as_bytes())
            .unwrap_err()
            .reason
            .contains("no version"));
        let not_map = "packages: [1, 2]\n";
        assert!(packages(not_map.as_bytes()).is_err());
        let key_number = "packages:\n  1: {}\n";
        assert!(packages(key_number.as_bytes()).is_err());
        assert_eq!(split_key("", false), None);
        assert_eq!(split_key("/", true), None);
        assert_eq!(split_key("é@1", false), Some(("é", "1")));
        let wrong = "packages:\n  'a@1':\n    name: [x]\n";
        assert_eq!(purls(packages, wrong), ["pkg:npm/a@1"]);
        assert!(survives(packages, &[bad.as_bytes(), not_map.as_bytes()]) >= 8);
    }
}
