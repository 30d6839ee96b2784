//! Build provenance: an in-toto Statement v1 whose predicate is SLSA
//! provenance v1 (<https://slsa.dev/spec/v1.0/provenance>), saying how
//! kiln built an image: from which source and plan, with which nixpkgs and
//! lock, base images and binary caches, by which phase commands. Made from
//! what the build already knows, offline, with no wall-clock time: the
//! same build gives the same bytes.

mod git;

use std::path::Path;

use serde_json::{json, Value};

use crate::image::{canonical_json, ImageError};
use crate::layer::digest::{sha256_digest, sha256_hex};

pub use git::git_commit;

/// Media type of an in-toto statement, as artifacts and referrers name it.
pub const IN_TOTO_MEDIA_TYPE: &str = "application/vnd.in-toto+json";

/// The statement type of in-toto Statement v1.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";

/// The predicate type of SLSA provenance v1.
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";

/// kiln's build type: a Nixpacks plan built by kiln. A URN, since kiln has
/// no web address of its own to name it by; its parameters are described
/// in the README ("Provenance").
pub const BUILD_TYPE: &str = "urn:kiln:build-type:nixpacks-plan:v1";

/// kiln as a builder.
pub const BUILDER_ID: &str = "urn:kiln:builder";

/// What the provenance of one image says.
pub struct ProvenanceInputs<'a> {
    /// The image's name.
    pub name: &'a str,
    /// `sha256:<hex>` of the image manifest: the statement's subject.
    pub image_digest: &'a str,
    /// The app folder.
    pub app_dir: &'a Path,
    /// The git commit checked out in the app folder, if it is a checkout.
    pub git_commit: Option<String>,
    /// The plan as `kiln plan` prints it (without the final newline).
    pub plan_json: &'a str,
    /// The app's `kiln.lock`, if it has one.
    pub lock: Option<&'a [u8]>,
    /// Each phase's name and commands, in the order they ran.
    pub phases: Vec<(String, Vec<String>)>,
    /// Each base image: the reference it was pulled by and its digest.
    pub base_images: Vec<(String, String)>,
    /// The binary caches, with any credentials already removed.
    pub substituters: Vec<String>,
    /// Other artifacts attached to the image (SBOM): media type, digest.
    pub byproducts: Vec<(String, String)>,
}

/// The statement of `inputs`, as canonical JSON.
pub fn statement_json(inputs: &ProvenanceInputs<'_>) -> Result<Vec<u8>, ImageError> {
    // `kiln plan` JSON always parses; were it ever not to, the text itself
    // is still the parameter.
    let plan: Value = serde_json::from_str(inputs.plan_json)
        .unwrap_or_else(|_| Value::String(inputs.plan_json.to_string()));
    let plan_digest = sha256_digest(inputs.plan_json.as_bytes());
    let mut source = json!({"path": inputs.app_dir});
    if let Some(commit) = &inputs.git_commit {
        source["gitCommit"] = json!(commit);
    }
    let mut dependencies = vec![json!({
        "name": "plan",
        "mediaType": "application/json",
        "digest": digest(&plan_digest),
    })];
    if let Some(commit) = &inputs.git_commit {
        dependencies.push(json!({
            "name": "source",
            "uri": format!("git+file://{}", inputs.app_dir.display()),
            "digest": {"gitCommit": commit},
        }));
    }
    let mut nixpkgs = Vec::new();
    if let Some(lock) = inputs.lock {
        dependencies.push(json!({
            "name": "kiln.lock",
            "digest": digest(&sha256_digest(lock)),
            "content": base64_of(lock),
        }));
        nixpkgs = lock_archives(lock);
    }
    dependencies.extend(nixpkgs);
    for (reference, image_digest) in &inputs.base_images {
        dependencies.push(json!({
            "name": "base image",
            "uri": format!("docker://{reference}"),
            "digest": digest(image_digest),
        }));
    }
    let byproducts: Vec<Value> = inputs
        .byproducts
        .iter()
        .map(|(media_type, artifact)| {
            json!({"name": "attachment", "mediaType": media_type, "digest": digest(artifact)})
        })
        .collect();
    let phases: Vec<Value> = inputs
        .phases
        .iter()
        .map(|(name, cmds)| json!({"name": name, "cmds": cmds}))
        .collect();
    let statement = json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": inputs.name, "digest": digest(inputs.image_digest)}],
        "predicateType": SLSA_PROVENANCE_V1,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "source": source,
                    "plan": plan,
                    "planDigest": digest(&plan_digest),
                },
                "internalParameters": {
                    "phases": phases,
                    "substituters": inputs.substituters,
                },
                "resolvedDependencies": dependencies,
            },
            "runDetails": {
                "builder": {
                    "id": BUILDER_ID,
                    "version": {"kiln": env!("CARGO_PKG_VERSION")},
                },
                "metadata": {},
                "byproducts": byproducts,
            },
        },
    });
    Ok(canonical_json(&statement))
}

/// `{"sha256": hex}` of a `sha256:<hex>` digest, as in-toto writes digests.
fn digest(sha256: &str) -> Value {
    json!({"sha256": sha256_hex(sha256).unwrap_or(sha256)})
}

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The nixpkgs and overlay archives a `kiln.lock` pins, with their
/// sha256. A lock kiln cannot read gives none: the build itself already
/// refused or ignored it, and its bytes are recorded whole anyway.
fn lock_archives(lock: &[u8]) -> Vec<Value> {
    let Ok(lock) = crate::resolve::Lock::parse(lock, Path::new(crate::resolve::LOCK_FILE)) else {
        return Vec::new();
    };
    let mut archives = Vec::new();
    for entry in &lock.entries {
        let mut nixpkgs = json!({"name": "nixpkgs", "uri": entry.nixpkgs_archive});
        if let Some(sha256) = &entry.nixpkgs_sha256 {
            nixpkgs["digest"] = json!({"sha256": sha256});
        }
        archives.push(nixpkgs);
        for (url, sha256) in &entry.overlay_sha256 {
            archives.push(json!({"name": "overlay", "uri": url, "digest": {"sha256": sha256}}));
        }
    }
    archives.sort_by_key(|a| a.to_string());
    archives.dedup();
    archives
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(lock: Option<&[u8]>) -> Vec<u8> {
        statement_json(&ProvenanceInputs {
            name: "team/app",
            image_digest: &format!("sha256:{}", "cd".repeat(32)),
            app_dir: Path::new("/src/app"),
            git_commit: Some("a".repeat(40)),
            plan_json: "{\"phases\":{}}",
            lock,
            phases: vec![("install".into(), vec!["npm ci".into()])],
            base_images: vec![("r/base:1".into(), format!("sha256:{}", "ef".repeat(32)))],
            substituters: vec!["https://***@cache.example.invalid".into()],
            byproducts: vec![(
                "application/spdx+json".into(),
                format!("sha256:{}", "01".repeat(32)),
            )],
        })
        .unwrap()
    }

    #[test]
    fn names_the_image_plan_source_and_builder() {
        let statement: Value = serde_json::from_slice(&inputs(None)).unwrap();
        assert_eq!(statement["_type"], STATEMENT_TYPE);
        assert_eq!(statement["predicateType"], SLSA_PROVENANCE_V1);
        assert_eq!(statement["subject"][0]["digest"]["sha256"], "cd".repeat(32));
        let definition = &statement["predicate"]["buildDefinition"];
        assert_eq!(
            definition["externalParameters"]["planDigest"]["sha256"],
            sha256_hex(&sha256_digest(b"{\"phases\":{}}")).unwrap()
        );
        assert_eq!(
            definition["externalParameters"]["source"]["gitCommit"],
            "a".repeat(40)
        );
        assert_eq!(
            definition["internalParameters"]["phases"][0]["cmds"][0],
            "npm ci"
        );
        let base = definition["resolvedDependencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == "base image")
            .unwrap();
        assert_eq!(base["uri"], "docker://r/base:1");
        assert_eq!(
            statement["predicate"]["runDetails"]["builder"]["version"]["kiln"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(inputs(None), inputs(None));
    }

    #[test]
    fn a_lock_is_recorded_whole_with_its_archives() {
        let sha256 = "0f".repeat(32);
        let lock = format!(
            r#"{{"version":1,"entries":[{{"nixpkgsArchive":"https://x/n.tar.gz","overlays":[],"system":"x86_64-linux","packages":{{}},"nixpkgsSha256":"{sha256}"}}]}}"#
        );
        let lock = lock.as_bytes();
        let statement: Value = serde_json::from_slice(&inputs(Some(lock))).unwrap();
        let dependencies = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        let nixpkgs = dependencies
            .iter()
            .find(|d| d["name"] == "nixpkgs")
            .unwrap();
        assert_eq!(nixpkgs["uri"], "https://x/n.tar.gz");
        assert_eq!(nixpkgs["digest"]["sha256"], sha256);
        let recorded = dependencies
            .iter()
            .find(|d| d["name"] == "kiln.lock")
            .unwrap();
        assert_eq!(recorded["content"], base64_of(lock));
        let garbage: Value = serde_json::from_slice(&inputs(Some(b"not a lock"))).unwrap();
        let dependencies = garbage["predicate"]["buildDefinition"]["resolvedDependencies"]
            .as_array()
            .unwrap();
        assert!(dependencies.iter().any(|d| d["name"] == "kiln.lock"));
        assert!(!dependencies.iter().any(|d| d["name"] == "nixpkgs"));
    }
}
