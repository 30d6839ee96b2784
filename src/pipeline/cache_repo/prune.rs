//! `kiln cache prune --cache-repo`: finds the kiln records of a cache
//! repository older than an age and deletes their manifests.
//!
//! A record is recognised by its manifest (an OCI image manifest whose
//! config is a kiln record, with at most one layer and no subject), never
//! by its tag: images, indexes and other artifacts pushed to the same
//! repository are left alone, and so is a record another manifest there
//! points at (an index entry or a subject). Blobs are never deleted: a
//! record's blob may be an image's layer too, and the registry's garbage
//! collector frees what no manifest references any more.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::registry::{ArtifactRepo, RegistryError, CREATED_ANNOTATION};

use super::records::RECORD_MEDIA_TYPE;

/// More tags than this and the prune refuses to start: each one is a
/// manifest request.
pub const MAX_TAGS: usize = 100_000;

/// Manifests bigger than this are not read (distribution refuses to store
/// manifests over 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;

/// What one manifest of the repository is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A kiln record, written at `created` (`None`: no readable time), with
    /// `bytes` in its manifest, config and blob.
    Record {
        created: Option<SystemTime>,
        bytes: u64,
    },
    /// Anything else: an image, an index, another artifact; with the
    /// manifests it points at.
    Other { references: Vec<String> },
    /// Not a JSON object, or too big to read.
    Unreadable(String),
}

/// Reads a manifest's bytes as a record or something else.
pub fn classify(bytes: &[u8]) -> Found {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Found::Unreadable(format!("its manifest is {} bytes", bytes.len()));
    }
    let manifest: Value = match serde_json::from_slice(bytes) {
        Ok(value @ Value::Object(_)) => value,
        Ok(_) => return Found::Unreadable("its manifest is not a JSON object".into()),
        Err(err) => return Found::Unreadable(format!("its manifest is not JSON ({err})")),
    };
    let mut references: Vec<String> = manifest["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| entry["digest"].as_str().map(str::to_string))
        .collect();
    references.extend(manifest["subject"]["digest"].as_str().map(str::to_string));
    let is_record = references.is_empty()
        && manifest["schemaVersion"] == 2
        && matches!(
            manifest["mediaType"].as_str(),
            None | Some("application/vnd.oci.image.manifest.v1+json")
        )
        && matches!(
            manifest["artifactType"].as_str(),
            None | Some(RECORD_MEDIA_TYPE)
        )
        && manifest["config"]["mediaType"] == RECORD_MEDIA_TYPE
        && manifest["layers"].as_array().is_some_and(|l| l.len() <= 1);
    if !is_record {
        return Found::Other { references };
    }
    let size = |descriptor: &Value| descriptor["size"].as_u64().unwrap_or(0);
    let layers: u64 = manifest["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(size)
        .sum();
    let created = manifest["annotations"][CREATED_ANNOTATION]
        .as_str()
        .and_then(parse_time);
    Found::Record {
        created,
        bytes: bytes.len() as u64 + size(&manifest["config"]) + layers,
    }
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let time =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    let seconds = u64::try_from(time.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

/// What the prune does with a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Old enough: removed, or would be with `--dry-run`.
    Remove,
    /// Younger than the age asked for.
    Younger,
    /// Another manifest of the repository (the tag named) points at it.
    Referenced(String),
}

/// One record of the repository.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its tag.
    pub tag: String,
    /// `phase`, `layer`, `packages`, or `record` for a tag of another shape.
    pub kind: String,
    /// The cache key from its tag.
    pub key: String,
    /// Its manifest's digest.
    pub digest: String,
    /// How old it is; `None` when it says no time.
    pub age: Option<Duration>,
    /// Bytes of its manifest, config and blob.
    pub bytes: u64,
    /// What the prune does with it.
    pub action: Action,
}

/// What a prune found and did.
#[derive(Debug, Default)]
pub struct Pruned {
    /// Every record, in tag order.
    pub records: Vec<Entry>,
    /// Tags of other manifests, left alone.
    pub others: usize,
    /// Tags whose manifest could not be read, and why; left alone.
    pub unreadable: Vec<(String, String)>,
    /// Whether the records to remove were removed (not `--dry-run`).
    pub removed: bool,
}

/// Lists the records of `repo`, decides for each (see [`Action`]) and,
/// unless `dry_run`, deletes the manifests of those older than
/// `older_than` at `now`. A record with no creation time was written
/// before records carried one and counts as old: removing a record costs
/// at most one re-run of its work.
pub fn prune(
    repo: &ArtifactRepo,
    older_than: Duration,
    now: SystemTime,
    dry_run: bool,
) -> Result<Pruned, RegistryError> {
    let mut pruned = Pruned::default();
    let mut records = Vec::new();
    let mut referenced: HashMap<String, String> = HashMap::new();
    let mut tags = repo.tags(MAX_TAGS)?;
    tags.sort();
    for tag in tags {
        let Some(manifest) = repo.manifest(&tag)? else {
            continue;
        };
        match classify(&manifest.bytes) {
            Found::Record { created, bytes } => {
                records.push((tag, manifest.digest, created, bytes))
            }
            Found::Other { references } => {
                pruned.others += 1;
                for digest in references {
                    referenced.entry(digest).or_insert_with(|| tag.clone());
                }
            }
            Found::Unreadable(why) => pruned.unreadable.push((tag, why)),
        }
    }
    for (tag, digest, created, bytes) in records {
        let age = created.map(|t| now.duration_since(t).unwrap_or_default());
        let action = match referenced.get(&digest) {
            Some(by) => Action::Referenced(by.clone()),
            None if age.is_some_and(|age| age < older_than) => Action::Younger,
            None => Action::Remove,
        };
        let (kind, key) = match tag.split_once('-') {
            Some((kind @ ("phase" | "layer" | "packages"), key)) => (kind.to_string(), key),
            _ => ("record".to_string(), tag.as_str()),
        };
        pruned.records.push(Entry {
            kind,
            key: key.to_string(),
            tag: tag.clone(),
            digest,
            age,
            bytes,
            action,
        });
    }
    if !dry_run {
        for entry in pruned.records.iter().filter(|e| e.action == Action::Remove) {
            repo.delete_manifest(&entry.digest)?;
        }
        pruned.removed = true;
    }
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"{RECORD_MEDIA_TYPE}","digest":"sha256:{a}","size":100}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{b}","size":1000}}]{extra}}}"#,
            a = "a".repeat(64),
            b = "b".repeat(64),
        )
    }

    #[test]
    fn records_give_their_time_and_size() {
        let text =
            record(r#","annotations":{"org.opencontainers.image.created":"1970-01-03T00:00:00Z"}"#);
        let Found::Record { created, bytes } = classify(text.as_bytes()) else {
            panic!("not a record");
        };
        assert_eq!(
            created,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(2 * 86_400))
        );
        assert_eq!(bytes, text.len() as u64 + 1100);
        let Found::Record { created, .. } = classify(record("").as_bytes()) else {
            panic!("an old record without a time is still a record");
        };
        assert_eq!(created, None);
        let garbled = record(r#","annotations":{"org.opencontainers.image.created":"yesterday"}"#);
        assert!(matches!(
            classify(garbled.as_bytes()),
            Found::Record { created: None, .. }
        ));
    }

    #[test]
    fn images_indexes_and_other_artifacts_are_not_records() {
        let image = record("").replace(
            RECORD_MEDIA_TYPE,
            "application/vnd.oci.image.config.v1+json",
        );
        assert_eq!(
            classify(image.as_bytes()),
            Found::Other { references: vec![] }
        );
        let docker = record("").replace(
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        );
        assert!(matches!(classify(docker.as_bytes()), Found::Other { .. }));
        let typed = record(r#","artifactType":"application/spdx+json""#);
        assert!(matches!(classify(typed.as_bytes()), Found::Other { .. }));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
            "manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{c}","size":1}}]}}"#,
            c = "c".repeat(64)
        );
        assert_eq!(
            classify(index.as_bytes()),
            Found::Other {
                references: vec![format!("sha256:{}", "c".repeat(64))]
            }
        );
        // A record-looking manifest with a subject is someone else's.
        let subject = record(&format!(
            r#","subject":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{d}","size":1}}"#,
            d = "d".repeat(64)
        ));
        assert_eq!(
            classify(subject.as_bytes()),
            Found::Other {
                references: vec![format!("sha256:{}", "d".repeat(64))]
            }
        );
        let two_layers = record("").replace(r#""layers":["#, r#""layers":[{"size":1},"#);
        assert!(matches!(
            classify(two_layers.as_bytes()),
            Found::Other { .. }
        ));
    }

    #[test]
    fn garbage_is_unreadable() {
        for bytes in [
            b"{".to_vec(),
            b"null".to_vec(),
            b"[1,2]".to_vec(),
            vec![0xff, 0xfe],
            vec![b' '; MAX_MANIFEST_BYTES + 1],
        ] {
            assert!(
                matches!(classify(&bytes), Found::Unreadable(_)),
                "{:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(40)])
            );
        }
    }
}
