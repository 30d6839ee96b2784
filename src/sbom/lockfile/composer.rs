//! `composer.lock`: the PHP packages Composer installs for the app.

use serde::Deserialize;

use super::{hex_checksum, package, Problem};
use crate::sbom::AppPackage;

#[derive(Deserialize)]
struct Lock {
    #[serde(default)]
    packages: Vec<Package>,
    #[serde(default, rename = "packages-dev")]
    packages_dev: Vec<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    version: String,
    dist: Option<Dist>,
}

#[derive(Deserialize)]
struct Dist {
    shasum: Option<String>,
}

/// The packages `lock` pins, development ones too: the PHP provider's
/// `composer install` installs both. A dist `shasum` (SHA-1 of the
/// archive) is the checksum when Composer recorded one.
pub fn packages(lock: &[u8]) -> Result<Vec<AppPackage>, Problem> {
    let lock: Lock = serde_json::from_slice(lock)
        .map_err(|e| Problem::at(e.line().max(1), format!("is not a composer.lock ({e})")))?;
    let mut found = Vec::new();
    for p in lock.packages.iter().chain(&lock.packages_dev) {
        let (vendor, name) = p.name.split_once('/').unwrap_or(("", &p.name));
        if vendor.is_empty() || name.is_empty() {
            return Err(Problem::whole(format!(
                "names a package `{}`, not `vendor/name`",
                p.name
            )));
        }
        let checksum = p
            .dist
            .as_ref()
            .and_then(|d| d.shasum.as_deref())
            .and_then(|s| hex_checksum("SHA1", s));
        found.push(package(
            "composer",
            Some(vendor),
            name,
            &p.version,
            checksum,
        ));
    }
    Ok(super::unique(found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::lockfile::test_support::survives;

    #[test]
    fn lists_packages_and_dev_packages() {
        let lock = format!(
            r#"{{"packages":[{{"name":"laravel/framework","version":"v10.48.4","dist":{{"shasum":"{}"}}}}],
               "packages-dev":[{{"name":"phpunit/php unit","version":"10.5.0","dist":{{"shasum":""}}}}]}}"#,
            "ab".repeat(20)
        );
        let found = packages(lock.as_bytes()).unwrap();
        let purls: Vec<&str> = found.iter().map(|p| p.purl.as_str()).collect();
        assert_eq!(
            purls,
            [
                "pkg:composer/laravel/framework@v10.48.4",
                "pkg:composer/phpunit/php%20unit@10.5.0"
            ]
        );
        assert_eq!(found[0].name, "laravel/framework");
        assert_eq!(found[0].checksum.as_ref().unwrap().algorithm, "SHA1");
        assert!(found[1].checksum.is_none());
    }

    #[test]
    fn hostile_lockfiles_are_refused_with_their_line() {
        let bad = b"{\n\"packages\": [\n{\"name\": 1, \"version\": \"1\"}]}";
        assert_eq!(packages(bad).unwrap_err().line, Some(3));
        let no_vendor = br#"{"packages":[{"name":"solo","version":"1"}]}"#;
        assert!(packages(no_vendor)
            .unwrap_err()
            .reason
            .contains("vendor/name"));
        assert!(survives(packages, &[bad, no_vendor]) >= 10);
    }
}
