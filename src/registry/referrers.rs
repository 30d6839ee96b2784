//! OCI 1.1 referrers on a registry: artifacts whose `subject` is an image
//! (its SBOM) pushed beside it and listed under the referrers tag schema,
//! `<algorithm>-<hex>` of the image's digest holding an image index of
//! them. Registries without the referrers API (distribution 2.8, the
//! `docker-registry` package) need the tag; ones with it answer the API
//! from the artifacts' `subject` and keep the tag as any other, so kiln
//! always writes it.

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};
use serde_json::{json, Value};

use super::connect::{connect, parse_reference, Session};
use super::error::RegistryError;
use super::pull::{bad, fetch_blob, too_big};
use super::retry::with_retry;
use super::{runtime, RegistryConfig};
use crate::layer::digest::sha256_digest;

/// Media type of the referrers index.
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Media types a referrers lookup accepts for an image manifest.
const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// Every manifest media type: what a tag may hold.
const ANY_MANIFEST: [&str; 4] = [
    INDEX_MEDIA_TYPE,
    MANIFEST_TYPES[0],
    MANIFEST_TYPES[1],
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Biggest document an artifact may carry: an SBOM of a large closure is
/// megabytes, never this.
const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

/// The referrers tag of `digest` (`sha256:<hex>` → `sha256-<hex>`).
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// Adds `descriptors` (of artifacts already pushed to `repository`,
/// `registry/name`) to the referrers index of `subject`, keeping the
/// entries already there. Returns the tag written.
pub fn add_referrers(
    config: &RegistryConfig,
    repository: &str,
    subject: &str,
    descriptors: &[Value],
) -> Result<String, RegistryError> {
    let tag = referrers_tag(subject);
    let reference = parse_reference(&format!("{repository}:{tag}"))?;
    runtime()?.block_on(async {
        let session = connect(config, reference, RegistryOperation::Push).await?;
        // Asked for as any manifest: a registry answers "unknown" for a
        // type the client does not accept, and what is under the tag
        // must be seen to be left alone.
        let existing = fetch_tag(&session, &ANY_MANIFEST).await?;
        let index = merged_index(existing.as_deref(), descriptors)
            .map_err(|reason| bad(&session, format!("the referrers tag {tag} {reason}")))?;
        let content_type = reqwest::header::HeaderValue::from_static(INDEX_MEDIA_TYPE);
        with_retry(
            session.backoff,
            &session.site,
            &format!("putting the referrers index under tag {tag}"),
            || {
                session.client.push_manifest_raw(
                    &session.reference,
                    index.clone(),
                    content_type.clone(),
                )
            },
        )
        .await?;
        Ok(tag)
    })
}

/// The index `existing` (the tag's current content, if any) with
/// `descriptors` added, entries sorted by digest so the same referrers
/// give the same bytes. `Err` when `existing` is not an image index: kiln
/// will not overwrite what someone else put under the tag.
fn merged_index(existing: Option<&[u8]>, descriptors: &[Value]) -> Result<Vec<u8>, String> {
    let mut manifests: Vec<Value> = match existing {
        None => Vec::new(),
        Some(bytes) => {
            serde_json::from_slice::<ImageIndex>(bytes).map_err(|e| {
                format!("holds something other than an OCI image index ({e}); remove the tag, or push with --no-sbom")
            })?;
            let value: Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
            value["manifests"].as_array().cloned().unwrap_or_default()
        }
    };
    manifests.retain(|m| !descriptors.iter().any(|d| d["digest"] == m["digest"]));
    manifests.extend(descriptors.iter().cloned());
    manifests.sort_by(|a, b| a["digest"].to_string().cmp(&b["digest"].to_string()));
    Ok(crate::image::canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    })))
}

/// The body under the session reference's tag, or `None` when the
/// registry has no such tag.
async fn fetch_tag(session: &Session, accepted: &[&str]) -> Result<Option<Vec<u8>>, RegistryError> {
    let reference = &session.reference;
    let answer = with_retry(
        session.backoff,
        &session.site,
        &format!("fetching tag {}", reference.tag().unwrap_or_default()),
        || async {
            match session
                .client
                .pull_manifest_raw(reference, &session.auth, accepted)
                .await
            {
                Ok((bytes, _)) => Ok(Some(bytes.to_vec())),
                Err(err) if is_not_found(&err) => Ok(None),
                Err(err) => Err(err),
            }
        },
    )
    .await?;
    if let Some(bytes) = &answer {
        too_big(session, "referrers index", "", bytes.len() as u64)?;
    }
    Ok(answer)
}

/// Whether the registry said it has no such manifest.
fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

/// The newest document of one of `artifact_types` attached to the image
/// `reference` (`registry/name[:tag|@digest]`), from its referrers tag: its
/// bytes, checked against the digests that name them.
pub fn fetch_referrer(
    config: &RegistryConfig,
    reference: &str,
    artifact_types: &[&str],
) -> Result<Vec<u8>, RegistryError> {
    let reference = parse_reference(reference)?;
    runtime()?.block_on(async {
        let session = connect(config, reference.clone(), RegistryOperation::Pull).await?;
        let image = fetch_tag(&session, &MANIFEST_TYPES).await?.ok_or_else(|| {
            bad(&session, format!("has no image {}", reference.whole()))
        })?;
        let subject = sha256_digest(&image);
        let tag = referrers_tag(&subject);
        let tagged = Reference::with_tag(
            reference.registry().to_string(),
            reference.repository().to_string(),
            tag.clone(),
        );
        let index_session = Session {
            reference: tagged,
            ..session
        };
        let index = fetch_tag(&index_session, &ANY_MANIFEST)
            .await?
            .unwrap_or_else(|| br#"{"schemaVersion":2,"manifests":[]}"#.to_vec());
        let entry = pick(&index, artifact_types, &subject)
            .map_err(|reason| bad(&index_session, format!("the referrers tag {tag} {reason}")))?;
        let artifact_type = entry_type(&entry);
        let artifact_ref = index_session
            .reference
            .clone_with_digest(entry.digest().to_string());
        let artifact_session = Session {
            reference: artifact_ref,
            ..index_session
        };
        too_big(&artifact_session, "artifact manifest", entry.digest().as_ref(), entry.size())?;
        let manifest = fetch_tag(&artifact_session, &MANIFEST_TYPES[..1])
            .await?
            .ok_or_else(|| bad(&artifact_session, format!("lists artifact {} but does not have it", entry.digest())))?;
        let content = artifact_content(&manifest, entry.digest().as_ref(), &subject, &artifact_type)
            .map_err(|reason| bad(&artifact_session, reason))?;
        if content.size() > MAX_DOCUMENT_BYTES {
            return Err(bad(
                &artifact_session,
                format!("the {artifact_type} document is {} bytes, more than the {MAX_DOCUMENT_BYTES} kiln reads", content.size()),
            ));
        }
        let dir = tempfile::tempdir().map_err(|e| RegistryError::io("could not create", std::env::temp_dir(), e))?;
        let path = fetch_blob(&artifact_session, &content, dir.path()).await?;
        std::fs::read(&path).map_err(|e| RegistryError::io("could not read", &path, e))
    })
}

/// The newest entry of `index` of one of `artifact_types` (by its creation
/// annotation, then digest).
pub(crate) fn pick(
    index: &[u8],
    artifact_types: &[&str],
    subject: &str,
) -> Result<Descriptor, String> {
    let index: ImageIndex =
        serde_json::from_slice(index).map_err(|e| format!("is not an OCI image index ({e})"))?;
    let created = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get("org.opencontainers.image.created").cloned())
            .unwrap_or_default()
    };
    index
        .manifests()
        .iter()
        .filter(|d| artifact_types.contains(&entry_type(d).as_str()))
        .max_by_key(|d| (created(d), d.digest().to_string()))
        .cloned()
        .ok_or_else(|| format!("lists no {} artifact for {subject}; was the image built by kiln without --no-sbom?", artifact_types.join(" or ")))
}

/// The artifact type an index entry names (empty when it names none).
pub(crate) fn entry_type(entry: &Descriptor) -> String {
    entry
        .artifact_type()
        .as_ref()
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The one layer of the artifact manifest `bytes` (digest `digest`),
/// which must refer to `subject` and be of `artifact_type`.
pub(crate) fn artifact_content(
    bytes: &[u8],
    digest: &str,
    subject: &str,
    artifact_type: &str,
) -> Result<Descriptor, String> {
    let actual = sha256_digest(bytes);
    if actual != digest {
        return Err(format!(
            "artifact manifest {digest} arrived with digest {actual}"
        ));
    }
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("artifact {digest} is not an OCI manifest ({e})"))?;
    match manifest.subject() {
        Some(s) if s.digest().to_string() == subject => {}
        _ => return Err(format!("artifact {digest} does not refer to {subject}")),
    }
    match manifest.layers().as_slice() {
        [layer] if layer.media_type().to_string() == artifact_type => Ok(layer.clone()),
        _ => Err(format!(
            "artifact {digest} does not hold one {artifact_type} document"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(digest: char) -> Value {
        json!({"mediaType": MANIFEST_TYPES[0], "digest": format!("sha256:{}", digest.to_string().repeat(64)), "size": 1, "artifactType": "application/spdx+json"})
    }

    #[test]
    fn merging_keeps_other_referrers_and_sorts() {
        let first = merged_index(None, &[descriptor('b')]).unwrap();
        let second = merged_index(Some(&first), &[descriptor('a'), descriptor('b')]).unwrap();
        let index: Value = serde_json::from_slice(&second).unwrap();
        let digests: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| &m["digest"].as_str().unwrap()[7..8])
            .collect();
        assert_eq!(digests, ["a", "b"]);
        assert_eq!(
            merged_index(Some(&second), &[descriptor('a')]).unwrap(),
            second
        );
    }

    #[test]
    fn a_broken_referrers_index_is_not_overwritten() {
        for existing in [&b"not json"[..], br#"{"schemaVersion":2,"config":{}}"#] {
            let err = merged_index(Some(existing), &[descriptor('a')]).unwrap_err();
            assert!(err.contains("remove the tag"), "{err}");
        }
    }

    #[test]
    fn hostile_artifacts_are_refused() {
        let subject = format!("sha256:{}", "1".repeat(64));
        let manifest = |subject: &str, layers: &str| {
            format!(
                r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:{}","size":2}},"layers":{layers},"subject":{{"mediaType":"{}","digest":"{subject}","size":1}}}}"#,
                MANIFEST_TYPES[0],
                "4".repeat(64),
                MANIFEST_TYPES[0]
            )
        };
        let layer = format!(
            r#"[{{"mediaType":"application/spdx+json","digest":"sha256:{}","size":3}}]"#,
            "5".repeat(64)
        );
        let good = manifest(&subject, &layer);
        let digest = sha256_digest(good.as_bytes());
        assert!(
            artifact_content(good.as_bytes(), &digest, &subject, "application/spdx+json").is_ok()
        );
        let cases = [
            (
                good.clone(),
                format!("sha256:{}", "0".repeat(64)),
                "arrived with digest",
            ),
            (
                manifest(&format!("sha256:{}", "2".repeat(64)), &layer),
                String::new(),
                "does not refer",
            ),
            (manifest(&subject, "[]"), String::new(), "does not hold one"),
            ("[]".to_string(), String::new(), "not an OCI manifest"),
        ];
        for (bytes, claimed, reason) in cases {
            let claimed = if claimed.is_empty() {
                sha256_digest(bytes.as_bytes())
            } else {
                claimed
            };
            let err = artifact_content(
                bytes.as_bytes(),
                &claimed,
                &subject,
                "application/spdx+json",
            )
            .unwrap_err();
            assert!(err.contains(reason), "{err}");
        }
        let index = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(pick(index, &["application/spdx+json"], &subject)
            .unwrap_err()
            .contains("--no-sbom"));
        assert!(pick(b"{", &["application/spdx+json"], &subject)
            .unwrap_err()
            .contains("not an OCI image index"));
    }

    #[test]
    fn picks_the_newest_of_the_types_asked_for() {
        let subject = format!("sha256:{}", "1".repeat(64));
        let entry = |digest: char, kind: &str, created: &str| {
            let mut d = descriptor(digest);
            d["artifactType"] = json!(kind);
            d["annotations"] = json!({"org.opencontainers.image.created": created});
            d
        };
        let index = json!({"schemaVersion": 2, "manifests": [
            entry('a', "application/spdx+json", "2024-01-01T00:00:00Z"),
            entry('b', "application/vnd.cyclonedx+json", "2025-01-01T00:00:00Z"),
            entry('c', "application/vnd.in-toto+json", "2026-01-01T00:00:00Z"),
        ]})
        .to_string();
        let picked = |types: &[&str]| {
            pick(index.as_bytes(), types, &subject)
                .unwrap()
                .digest()
                .to_string()
        };
        let sboms = ["application/spdx+json", "application/vnd.cyclonedx+json"];
        assert_eq!(picked(&sboms), format!("sha256:{}", "b".repeat(64)));
        assert_eq!(picked(&sboms[..1]), format!("sha256:{}", "a".repeat(64)));
        let err = pick(index.as_bytes(), &["text/plain"], &subject).unwrap_err();
        assert!(err.contains("no text/plain artifact"), "{err}");
    }
}
