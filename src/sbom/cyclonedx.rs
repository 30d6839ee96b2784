//! The CycloneDX 1.5 JSON document (<https://cyclonedx.org/docs/1.5/json/>):
//! the image as the BOM's subject component, each store path and app
//! dependency as a component, Nix references as `dependencies`. Holds what
//! the SPDX document holds, for tools that read only CycloneDX.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::component::{image_purl, nix_component};
use super::{AppPackage, SbomInputs};
use crate::image::{canonical_json, rfc3339, ImageError};
use crate::layer::digest::{sha256_digest, sha256_hex};

/// Media type of a CycloneDX JSON document, as artifacts and referrers
/// name it.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

/// The image's own `bom-ref`.
const IMAGE_REF: &str = "image";

/// The CycloneDX document of `inputs`, as canonical JSON: the same inputs
/// give the same bytes.
pub fn cyclonedx_json(inputs: &SbomInputs<'_>) -> Result<Vec<u8>, ImageError> {
    let image_hex = sha256_hex(inputs.image_digest).unwrap_or(inputs.image_digest);
    // Store paths are known by their full path, unique in a closure.
    let known: BTreeSet<String> = inputs
        .store_paths
        .iter()
        .map(|p| p.path.to_string())
        .collect();
    let mut components = Vec::new();
    let mut dependencies = Vec::new();
    for path in inputs.store_paths {
        let bom_ref = path.path.to_string();
        components.push(store_path_component(path));
        // CycloneDX asks that `dependsOn` name components of the BOM, and
        // that each appears once; a path's reference to itself says nothing.
        let depends: BTreeSet<String> = path
            .references
            .iter()
            .map(|r| r.to_string())
            .filter(|r| *r != bom_ref && known.contains(r))
            .collect();
        dependencies.push(json!({"ref": bom_ref, "dependsOn": depends}));
    }
    let app_refs: BTreeSet<&str> = inputs.app.iter().map(|p| p.purl.as_str()).collect();
    for package in inputs.app {
        components.push(app_component(package));
    }
    components.sort_by(|a, b| a["bom-ref"].as_str().cmp(&b["bom-ref"].as_str()));
    components.dedup_by(|a, b| a["bom-ref"] == b["bom-ref"]);
    dependencies.sort_by(|a, b| a["ref"].as_str().cmp(&b["ref"].as_str()));
    dependencies.dedup_by(|a, b| a["ref"] == b["ref"]);
    let contained: BTreeSet<&str> = known.iter().map(String::as_str).chain(app_refs).collect();
    dependencies.insert(0, json!({"ref": IMAGE_REF, "dependsOn": contained}));
    let mut document = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(inputs.source_date_epoch)?,
            "tools": {"components": [{
                "type": "application",
                "name": "kiln",
                "version": env!("CARGO_PKG_VERSION"),
            }]},
            "component": {
                "type": "container",
                "bom-ref": IMAGE_REF,
                "name": inputs.name,
                "version": inputs.image_digest,
                "hashes": [{"alg": "SHA-256", "content": image_hex}],
                "purl": image_purl(inputs.name, inputs.image_digest),
            },
        },
        "components": components,
        "dependencies": dependencies,
    });
    document["serialNumber"] = json!(serial_number(&canonical_json(&document)));
    Ok(canonical_json(&document))
}

/// `urn:uuid:...` from the SHA-256 of the rest of the document: unique per
/// image and SBOM content, as CycloneDX asks, and the same on every build.
/// The version nibble says 5 (name-based) because the 1.5 schema admits
/// only versions 1 to 5; the hash is SHA-256 rather than v5's SHA-1 of a
/// namespace, which the schema cannot tell and nothing relies on.
fn serial_number(document: &[u8]) -> String {
    let digest = sha256_digest(document);
    let mut bytes = hex::decode(&digest[7..39]).expect("a sha256 digest is hex");
    bytes[6] = (bytes[6] & 0x0f) | 0x50;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn store_path_component(path: &kiln_store::ClosurePath) -> Value {
    let component = nix_component(path);
    let mut value = json!({
        "type": "library",
        "bom-ref": path.path.to_string(),
        "name": component.name,
        "purl": component.purl,
        "properties": [
            {"name": "nix:store_path", "value": path.path.to_string()},
            {"name": "nix:nar_size", "value": path.nar_size.to_string()},
        ],
    });
    if let Some(hash) = hash(component.hash_algorithm, component.hash_hex) {
        value["hashes"] = json!([hash]);
    }
    if let Some(version) = component.version {
        value["version"] = json!(version);
    }
    value
}

fn app_component(package: &AppPackage) -> Value {
    let mut value = json!({
        "type": "library",
        "bom-ref": package.purl,
        "name": package.name,
        "version": package.version,
        "purl": package.purl,
    });
    if let Some(hash) = package
        .checksum
        .as_ref()
        .and_then(|c| hash(&c.algorithm, &c.hex))
    {
        value["hashes"] = json!([hash]);
    }
    value
}

/// A CycloneDX hash of `hex` by `algorithm` (named the Nix or SPDX way:
/// `sha256`, `SHA512`). `None` for an algorithm CycloneDX does not list or
/// a digest of the wrong length (a lockfile's truncated integrity): the
/// hash is then left out rather than mislabelled or refused by the schema.
fn hash(algorithm: &str, hex: &str) -> Option<Value> {
    let (name, bytes) = match algorithm.to_ascii_uppercase().replace('-', "").as_str() {
        "MD5" => ("MD5", 16),
        "SHA1" => ("SHA-1", 20),
        "SHA256" => ("SHA-256", 32),
        "SHA384" => ("SHA-384", 48),
        "SHA512" => ("SHA-512", 64),
        _ => return None,
    };
    let whole = hex.len() == bytes * 2 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    whole.then(|| json!({"alg": name, "content": hex}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sbom::test_support::{self, closure};
    use crate::sbom::SbomFormat;

    fn document() -> Value {
        test_support::document(SbomFormat::CycloneDx)
    }

    #[test]
    fn lists_store_paths_with_nar_hashes_and_references() {
        let doc = document();
        assert_eq!(doc["specVersion"], "1.5");
        assert_eq!(doc["metadata"]["timestamp"], "1970-01-01T00:00:01Z");
        assert_eq!(doc["metadata"]["component"]["type"], "container");
        let components = doc["components"].as_array().unwrap();
        let node = components.iter().find(|c| c["name"] == "nodejs").unwrap();
        assert_eq!(node["version"], "20.11.1");
        assert_eq!(node["purl"], "pkg:nix/nodejs@20.11.1");
        assert_eq!(node["hashes"][0]["alg"], "SHA-256");
        assert_eq!(node["hashes"][0]["content"], "ab".repeat(32));
        let glibc = components.iter().find(|c| c["name"] == "glibc").unwrap();
        let node_deps = doc["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["ref"] == node["bom-ref"])
            .unwrap();
        assert_eq!(node_deps["dependsOn"], json!([glibc["bom-ref"]]));
        let npm = components.iter().find(|c| c["name"] == "@s/x").unwrap();
        assert_eq!(npm["purl"], "pkg:npm/%40s/x@1.0.0");
        assert_eq!(npm["hashes"][0]["alg"], "SHA-512");
        let image = &doc["dependencies"][0];
        assert_eq!(image["ref"], IMAGE_REF);
        assert_eq!(image["dependsOn"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn the_serial_number_is_a_uuid_of_the_content() {
        let doc = document();
        let serial = doc["serialNumber"].as_str().unwrap();
        let uuid = serial.strip_prefix("urn:uuid:").unwrap();
        let parts: Vec<usize> = uuid.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12]);
        assert_eq!(&uuid[14..15], "5");
        assert!("89ab".contains(&uuid[19..20]), "{uuid}");
        assert_eq!(document(), doc);
        let other = cyclonedx_json(&SbomInputs {
            name: "team/app",
            image_digest: &format!("sha256:{}", "ef".repeat(32)),
            store_paths: &closure(),
            app: &[],
            source_date_epoch: 1,
        })
        .unwrap();
        let other: Value = serde_json::from_slice(&other).unwrap();
        assert_ne!(other["serialNumber"], doc["serialNumber"]);
    }

    #[test]
    fn hashes_cyclonedx_cannot_hold_are_left_out() {
        let sha256 = "ab".repeat(32);
        assert_eq!(hash("sha256", &sha256).unwrap()["alg"], "SHA-256");
        assert_eq!(hash("SHA512", &"0".repeat(128)).unwrap()["alg"], "SHA-512");
        assert_eq!(hash("blake3", &sha256), None);
        assert_eq!(hash("SHA512", "000102"), None);
        assert_eq!(hash("sha256", &"zz".repeat(32)), None);
    }
}
