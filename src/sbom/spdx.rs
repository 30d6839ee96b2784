//! The SPDX 2.3 JSON document (<https://spdx.github.io/spdx-spec/v2.3/>):
//! the image as the described package, each store path and app
//! dependency as a package it contains, Nix references as `DEPENDS_ON`.

use serde_json::{json, Value};

use super::component::{image_purl, nix_component};
use super::{AppPackage, Checksum, SbomInputs};
use crate::image::{canonical_json, rfc3339, ImageError};
use crate::layer::digest::{sha256_digest, sha256_hex};

/// Media type of an SPDX JSON document, as artifacts and referrers name it.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// The image's own SPDX element.
const IMAGE_ID: &str = "SPDXRef-image";

/// The SPDX document of `inputs`, as canonical JSON: the same inputs give
/// the same bytes.
pub fn spdx_json(inputs: &SbomInputs<'_>) -> Result<Vec<u8>, ImageError> {
    let image_hex = sha256_hex(inputs.image_digest).unwrap_or(inputs.image_digest);
    let mut packages = vec![json!({
        "SPDXID": IMAGE_ID,
        "name": inputs.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": image_hex}],
        "externalRefs": [purl_ref(&image_purl(inputs.name, inputs.image_digest))],
    })];
    let mut relationships = vec![relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)];
    for path in inputs.store_paths {
        let id = store_path_id(&path.path);
        packages.push(store_path_package(path, &id));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &id));
        for reference in &path.references {
            relationships.push(relationship(&id, "DEPENDS_ON", &store_path_id(reference)));
        }
    }
    for package in inputs.app {
        let id = app_package_id(package);
        packages.push(app_package(package, &id));
        relationships.push(relationship(IMAGE_ID, "CONTAINS", &id));
    }
    packages.sort_by(|a, b| a["SPDXID"].as_str().cmp(&b["SPDXID"].as_str()));
    packages.dedup_by(|a, b| a["SPDXID"] == b["SPDXID"]);
    relationships.sort_by_key(|r| r.to_string());
    relationships.dedup();
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}@{}", inputs.name, inputs.image_digest),
        // Unique per image, as SPDX asks, and the same on every build of it.
        "documentNamespace": format!(
            "https://spdx.org/spdxdocs/kiln/{}-{image_hex}",
            purl_safe(inputs.name)
        ),
        "creationInfo": {
            "created": rfc3339(inputs.source_date_epoch)?,
            "creators": [format!("Tool: kiln-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    Ok(canonical_json(&document))
}

/// `SPDXRef-nix-<hash part>`: store path hashes are unique and fit SPDX's
/// id characters.
fn store_path_id(path: &kiln_store::StorePath) -> String {
    format!("SPDXRef-nix-{}", kiln_store::hash_part(path))
}

fn store_path_package(path: &kiln_store::ClosurePath, id: &str) -> Value {
    let component = nix_component(path);
    let mut package = json!({
        "SPDXID": id,
        "name": component.name,
        "packageFileName": path.path.to_string(),
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "checksums": [{
            "algorithm": component.hash_algorithm.to_ascii_uppercase(),
            "checksumValue": component.hash_hex,
        }],
        "externalRefs": [purl_ref(&component.purl)],
        "comment": format!("Nix store path; the checksum is the SHA-256 of its NAR serialization ({} bytes), as its narinfo states", path.nar_size),
    });
    if let Some(version) = component.version {
        package["versionInfo"] = json!(version);
    }
    package
}

/// `SPDXRef-<ecosystem>-<hash of the purl>`: purls hold characters SPDX
/// ids cannot, and a hash keeps the id unique and stable.
fn app_package_id(package: &AppPackage) -> String {
    let digest = sha256_digest(package.purl.as_bytes());
    let hex = sha256_hex(&digest).unwrap_or_default();
    format!("SPDXRef-{}-{}", package.ecosystem, &hex[..16])
}

fn app_package(package: &AppPackage, id: &str) -> Value {
    let mut value = json!({
        "SPDXID": id,
        "name": package.name,
        "versionInfo": package.version,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "externalRefs": [purl_ref(&package.purl)],
    });
    if let Some(Checksum { algorithm, hex }) = &package.checksum {
        value["checksums"] = json!([{"algorithm": algorithm, "checksumValue": hex}]);
    }
    value
}

fn purl_ref(purl: &str) -> Value {
    json!({
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    })
}

fn relationship(from: &str, kind: &str, to: &str) -> Value {
    json!({"spdxElementId": from, "relationshipType": kind, "relatedSpdxElement": to})
}

/// The image name with the characters a URI path may not hold replaced.
fn purl_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::test_support;
    use crate::sbom::SbomFormat;

    fn document() -> Value {
        test_support::document(SbomFormat::Spdx)
    }

    #[test]
    fn lists_store_paths_with_nar_hashes_and_references() {
        let doc = document();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["creationInfo"]["created"], "1970-01-01T00:00:01Z");
        let packages = doc["packages"].as_array().unwrap();
        let node = packages
            .iter()
            .find(|p| p["name"] == "nodejs")
            .expect("nodejs listed");
        assert_eq!(node["versionInfo"], "20.11.1");
        assert_eq!(node["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(node["checksums"][0]["checksumValue"], "ab".repeat(32));
        assert_eq!(
            node["externalRefs"][0]["referenceLocator"],
            "pkg:nix/nodejs@20.11.1"
        );
        let depends: Vec<&Value> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["relationshipType"] == "DEPENDS_ON")
            .collect();
        assert_eq!(depends.len(), 1);
        assert_eq!(depends[0]["spdxElementId"], node["SPDXID"]);
        let npm = packages.iter().find(|p| p["name"] == "@s/x").unwrap();
        assert_eq!(
            npm["externalRefs"][0]["referenceLocator"],
            "pkg:npm/%40s/x@1.0.0"
        );
        assert_eq!(npm["checksums"][0]["algorithm"], "SHA512");
    }

    #[test]
    fn the_same_inputs_give_the_same_bytes() {
        assert_eq!(document().to_string(), document().to_string());
    }
}
