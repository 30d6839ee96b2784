//! The packages of an npm `package-lock.json` (lockfile versions 1, 2
//! and 3): what `npm ci` installs into the image's `node_modules`.

use std::collections::BTreeMap;

use base64::Engine;
use serde_json::Value;

use crate::sbom::{AppPackage, Checksum};

/// The packages `lock` (the text of a `package-lock.json`) installs, each
/// name and version once. The app itself and workspace links are not
/// dependencies, so they are left out. `Err` says what is wrong with it.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, super::Problem> {
    let lock: Value = serde_json::from_slice(lock)
        .map_err(|e| super::Problem::at(e.line().max(1), format!("is not valid JSON ({e})")))?;
    let mut found = BTreeMap::new();
    match (lock.get("packages"), lock.get("dependencies")) {
        (Some(packages), _) => {
            let packages = packages
                .as_object()
                .ok_or("has a `packages` that is not an object")?;
            for (key, entry) in packages {
                // "" is the app; keys outside node_modules are workspace
                // folders, the app's own code.
                let Some((_, name)) = key.rsplit_once("node_modules/") else {
                    continue;
                };
                if entry.get("link").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let name = entry.get("name").and_then(Value::as_str).unwrap_or(name);
                add(&mut found, name, entry, key)?;
            }
        }
        (None, Some(dependencies)) => version_1(&mut found, dependencies, "dependencies")?,
        (None, None) => {}
    }
    Ok(found.into_values().collect())
}

/// Lockfile version 1: `dependencies`, nested by what each requires.
fn version_1(
    found: &mut BTreeMap<String, AppPackage>,
    dependencies: &Value,
    at: &str,
) -> Result<(), String> {
    let dependencies = dependencies
        .as_object()
        .ok_or_else(|| format!("has a `{at}` that is not an object"))?;
    for (name, entry) in dependencies {
        let key = format!("{at}.{name}");
        add(found, name, entry, &key)?;
        if let Some(nested) = entry.get("dependencies") {
            version_1(found, nested, &format!("{key}.dependencies"))?;
        }
    }
    Ok(())
}

/// Records the package `name` described by `entry` (found at `key`).
fn add(
    found: &mut BTreeMap<String, AppPackage>,
    name: &str,
    entry: &Value,
    key: &str,
) -> Result<(), String> {
    if !entry.is_object() {
        return Err(format!("has an entry `{key}` that is not an object"));
    }
    let Some(version) = entry.get("version") else {
        // An entry with no version is one npm did not install (an optional
        // dependency for another platform, say).
        return Ok(());
    };
    let version = version
        .as_str()
        .ok_or_else(|| format!("has a `version` of `{key}` that is not a string"))?;
    let checksum = entry
        .get("integrity")
        .and_then(Value::as_str)
        .and_then(integrity);
    let package = npm_package(name, version, checksum)
        .map_err(|reason| format!("has a package at `{key}` that {reason}"))?;
    found.entry(package.purl.clone()).or_insert(package);
    Ok(())
}

/// The npm package `name` (`@scope/name` or `name`) at `version`; `Err`
/// (a phrase) when npm could not have such a name.
pub fn npm_package(
    name: &str,
    version: &str,
    checksum: Option<Checksum>,
) -> Result<AppPackage, String> {
    if name.is_empty() || name.len() > 214 {
        return Err(format!("is named `{name}`, which npm cannot have"));
    }
    let (namespace, bare) = match name.split_once('/') {
        Some((scope, bare)) if scope.starts_with('@') => (Some(scope), bare),
        _ => (None, name),
    };
    let mut package = super::package("npm", namespace, bare, version, checksum);
    package.name = name.to_string();
    Ok(package)
}

/// The strongest hash of a Subresource Integrity string (`sha512-<base64>`,
/// possibly several separated by spaces). Unknown or broken ones give none:
/// the checksum is extra information, never a reason to fail.
pub fn integrity(text: &str) -> Option<Checksum> {
    text.split_whitespace()
        .filter_map(|part| {
            let (algorithm, value) = part.split_once('-')?;
            let rank = ["sha1", "sha256", "sha384", "sha512"]
                .iter()
                .position(|a| *a == algorithm)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()?;
            Some((
                rank,
                Checksum {
                    algorithm: algorithm.to_ascii_uppercase(),
                    hex: hex::encode(bytes),
                },
            ))
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, checksum)| checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_lists_installed_packages_once() {
        let lock = br#"{"lockfileVersion":3,"packages":{
            "":{"name":"app","version":"1.0.0"},
            "node_modules/@types/node":{"version":"20.1.0","integrity":"sha512-AAEC"},
            "node_modules/a":{"version":"1.0.0","integrity":"sha1-AAEC sha512-AwQF"},
            "node_modules/b/node_modules/a":{"version":"1.0.0"},
            "node_modules/b":{"version":"2.0.0"},
            "node_modules/lib":{"resolved":"packages/lib","link":true},
            "packages/lib":{"version":"0.0.1"},
            "node_modules/fsevents":{"optional":true}
        }}"#;
        let found = packages(lock).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:npm/%40types/node@20.1.0",
                "pkg:npm/a@1.0.0",
                "pkg:npm/b@2.0.0"
            ]
        );
        let a = &found[1];
        assert_eq!(a.checksum.as_ref().unwrap().algorithm, "SHA512");
        assert_eq!(a.checksum.as_ref().unwrap().hex, "030405");
    }

    #[test]
    fn version_1_walks_nested_dependencies() {
        let lock = br#"{"lockfileVersion":1,"dependencies":{
            "a":{"version":"1.0.0","dependencies":{"b":{"version":"3.0.0"}}}
        }}"#;
        let names: Vec<String> = packages(lock)
            .unwrap()
            .into_iter()
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        assert_eq!(names, ["a@1.0.0", "b@3.0.0"]);
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_a_reason() {
        for (lock, reason) in [
            (&b"not json"[..], "not valid JSON"),
            (br#"{"packages":[]}"#, "`packages` that is not an object"),
            (br#"{"packages":{"node_modules/a":3}}"#, "not an object"),
            (
                br#"{"packages":{"node_modules/a":{"version":1}}}"#,
                "not a string",
            ),
            (
                br#"{"packages":{"node_modules/":{"version":"1"}}}"#,
                "npm cannot have",
            ),
            (
                br#"{"dependencies":{"a":{"version":"1","dependencies":7}}}"#,
                "not an object",
            ),
        ] {
            let err = packages(lock).unwrap_err().reason;
            assert!(err.contains(reason), "{err}");
        }
    }

    #[test]
    fn broken_integrity_is_left_out() {
        assert!(integrity("sha512-!!!").is_none());
        assert!(integrity("md5-AAEC").is_none());
    }
}
