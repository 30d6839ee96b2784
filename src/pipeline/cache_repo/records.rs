//! The records a registry build cache holds, and the checks every record
//! read back passes before kiln uses it: a cache repository is outside
//! input, written by other machines.
//!
//! Each record is the JSON config of an artifact tagged `<kind>-<key>`,
//! where the key is the one kiln's local caches use (the phase cache key,
//! the layer cache key, the package view key). The record names its kind
//! and key again, so a record copied under another tag is refused.

use serde::{Deserialize, Serialize};

use crate::layer::digest::sha256_hex;
use crate::layer::{BaseFinds, Format, Layer};

/// Media type of a record (the artifact's config blob).
pub const RECORD_MEDIA_TYPE: &str = "application/vnd.kiln.cache.record.v1+json";

/// Records bigger than this are refused unread (a package view of a big
/// closure is some tens of kilobytes).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// A layer as a record describes it: its blob is the artifact's only blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LayerFacts {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the tar.
    pub diff_id: String,
    /// Size of the blob.
    pub size: u64,
    /// Size of the tar.
    pub uncompressed_size: u64,
    /// Compression of the blob.
    pub format: Format,
}

impl From<&Layer> for LayerFacts {
    fn from(layer: &Layer) -> LayerFacts {
        LayerFacts {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            uncompressed_size: layer.uncompressed_size,
            format: layer.format,
        }
    }
}

/// One entry of the profile tree: a folder (no target) or a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileEntry {
    /// Path in the image, without the leading `/`.
    pub name: String,
    /// The link's target; `None` for a folder.
    pub target: Option<String>,
}

/// What a record says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum Record {
    /// A phase's diff: the phase cache entry of `key`.
    #[serde(rename_all = "camelCase")]
    Phase {
        /// The phase cache key.
        key: String,
        /// The phase's name.
        phase: String,
        /// Its diff as a layer.
        layer: LayerFacts,
    },
    /// A layer found by its layer cache key: one store path or a group
    /// of them, or generated files (base files, profile).
    #[serde(rename_all = "camelCase")]
    Layer {
        /// The layer cache key (store path names or the tar's diffID,
        /// compression, level, layer format version, `SOURCE_DATE_EPOCH`).
        key: String,
        /// The layer.
        layer: LayerFacts,
    },
    /// What a build reads from its packages' files: enough to key its
    /// phases and write its base and profile layers without them.
    #[serde(rename_all = "camelCase")]
    Packages {
        /// The package view key (the profile's packages and the closure).
        key: String,
        /// `bin` folders of the profile's packages.
        bin_dirs: Vec<String>,
        /// The packages' bash.
        bash: Option<String>,
        /// What the base files link to.
        base: BaseFinds,
        /// The profile's entries, in tree order.
        profile: Vec<ProfileEntry>,
    },
}

impl Record {
    /// The tag a record of `kind` and `key` is put under.
    pub fn tag(kind: &str, key: &str) -> String {
        format!("{kind}-{key}")
    }

    /// The kind word of this record, as in its tag.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Phase { .. } => "phase",
            Record::Layer { .. } => "layer",
            Record::Packages { .. } => "packages",
        }
    }

    /// The key it is recorded under.
    pub fn key(&self) -> &str {
        match self {
            Record::Phase { key, .. }
            | Record::Layer { key, .. }
            | Record::Packages { key, .. } => key,
        }
    }

    /// The record's bytes as stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialize")
    }

    /// Reads the record found under the tag of `kind` and `key`, refusing
    /// anything malformed, of another kind or key, or naming paths outside
    /// `/nix/store` and the profile.
    pub fn parse(bytes: &[u8], kind: &str, key: &str) -> Result<Record, String> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(format!("the record is {} bytes", bytes.len()));
        }
        let record: Record =
            serde_json::from_slice(bytes).map_err(|e| format!("unreadable record ({e})"))?;
        if record.kind() != kind || record.key() != key {
            return Err(format!(
                "the record is for {} {}, not {kind} {key}",
                record.kind(),
                record.key()
            ));
        }
        match &record {
            Record::Phase { phase, layer, .. } => {
                if phase.is_empty() {
                    return Err("the record names no phase".into());
                }
                check_layer(layer)?;
            }
            Record::Layer { layer, .. } => check_layer(layer)?,
            Record::Packages {
                bin_dirs,
                bash,
                base,
                profile,
                ..
            } => {
                let finds = [&base.bash, &base.sh, &base.env, &base.ca_bundle, bash];
                for path in bin_dirs.iter().chain(finds.into_iter().flatten()) {
                    check_store_file(path)?;
                }
                for entry in profile {
                    check_profile_entry(entry)?;
                }
            }
        }
        Ok(record)
    }
}

fn check_layer(layer: &LayerFacts) -> Result<(), String> {
    for digest in [&layer.digest, &layer.diff_id] {
        if sha256_hex(digest).is_none() {
            return Err(format!("`{digest}` is not a sha256 digest"));
        }
    }
    if layer.size == 0 || layer.uncompressed_size == 0 {
        return Err("the record gives a layer of size 0".into());
    }
    Ok(())
}

/// A path inside a store path: `/nix/store/<name>/...` with no `..`.
fn check_store_file(path: &str) -> Result<(), String> {
    let inside = path
        .strip_prefix("/nix/store/")
        .is_some_and(|rest| !rest.is_empty() && clean(rest));
    match inside {
        true => Ok(()),
        false => Err(format!("`{path}` is not a path inside the Nix store")),
    }
}

fn check_profile_entry(entry: &ProfileEntry) -> Result<(), String> {
    let profile = &crate::layer::PROFILE_DIR[1..];
    let under = entry.name == profile
        || entry
            .name
            .strip_prefix(profile)
            .is_some_and(|rest| rest.starts_with('/'));
    if !under || !clean(&entry.name) {
        return Err(format!(
            "profile entry `{}` is outside the profile",
            entry.name
        ));
    }
    match &entry.target {
        Some(target) => check_store_file(target),
        None => Ok(()),
    }
}

/// No empty, `.` or `..` components, and no NUL.
fn clean(path: &str) -> bool {
    !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn layer() -> LayerFacts {
        LayerFacts {
            digest: DIGEST.into(),
            diff_id: DIGEST.into(),
            size: 10,
            uncompressed_size: 20,
            format: Format::Gzip,
        }
    }

    fn packages() -> Record {
        Record::Packages {
            key: KEY.into(),
            bin_dirs: vec!["/nix/store/x-bash/bin".into()],
            bash: Some("/nix/store/x-bash/bin/bash".into()),
            base: BaseFinds {
                bash: Some("/nix/store/x-bash/bin/bash".into()),
                ..BaseFinds::default()
            },
            profile: vec![
                ProfileEntry {
                    name: "nix/var/kiln/profile".into(),
                    target: None,
                },
                ProfileEntry {
                    name: "nix/var/kiln/profile/bin".into(),
                    target: Some("/nix/store/x-bash/bin".into()),
                },
            ],
        }
    }

    #[test]
    fn records_read_back_as_written() {
        let records = [
            Record::Phase {
                key: KEY.into(),
                phase: "install".into(),
                layer: layer(),
            },
            Record::Layer {
                key: KEY.into(),
                layer: layer(),
            },
            packages(),
        ];
        for record in records {
            let bytes = record.to_bytes();
            assert_eq!(Record::parse(&bytes, record.kind(), KEY).unwrap(), record);
        }
    }

    #[test]
    fn records_under_another_tag_are_refused() {
        let bytes = packages().to_bytes();
        assert!(Record::parse(&bytes, "phase", KEY).is_err());
        let other = KEY.replace('0', "1");
        let err = Record::parse(&bytes, "packages", &other).unwrap_err();
        assert!(err.contains("not packages"), "{err}");
    }

    #[test]
    fn hostile_records_are_refused() {
        let phase = |layer: LayerFacts| {
            Record::Phase {
                key: KEY.into(),
                phase: "build".into(),
                layer,
            }
            .to_bytes()
        };
        let bad_digest = LayerFacts {
            digest: "sha256:../../../etc/passwd".into(),
            ..layer()
        };
        let empty = LayerFacts { size: 0, ..layer() };
        let escaping_link = |target: &str| {
            let Record::Packages {
                key,
                bin_dirs,
                bash,
                base,
                mut profile,
            } = packages()
            else {
                unreachable!()
            };
            profile[1].target = Some(target.into());
            Record::Packages {
                key,
                bin_dirs,
                bash,
                base,
                profile,
            }
            .to_bytes()
        };
        let outside_profile = br#"{"kind":"packages","key":"KEY","binDirs":[],"bash":null,"base":{"bash":null,"sh":null,"env":null,"ca_bundle":null},"profile":[{"name":"etc/passwd","target":"/nix/store/x/y"}]}"#;
        let outside_profile = String::from_utf8_lossy(outside_profile).replace("KEY", KEY);
        let hostile: Vec<Vec<u8>> = vec![
            phase(bad_digest),
            phase(empty),
            escaping_link("/etc/shadow"),
            escaping_link("/nix/store/../../etc/shadow"),
            escaping_link("/nix/store/"),
            outside_profile.into_bytes(),
            b"{".to_vec(),
            b"null".to_vec(),
            br#"{"kind":"phase"}"#.to_vec(),
            br#"{"kind":"other","key":"k"}"#.to_vec(),
            vec![b' '; MAX_RECORD_BYTES + 1],
            format!(
                r#"{{"kind":"phase","key":"{KEY}","phase":"","layer":{}}}"#,
                serde_json::to_string(&layer()).unwrap()
            )
            .into_bytes(),
            format!(
                r#"{{"kind":"layer","key":"{KEY}","layer":{},"extra":1}}"#,
                serde_json::to_string(&layer()).unwrap()
            )
            .into_bytes(),
        ];
        for bytes in hostile {
            let kind = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["kind"].as_str().map(str::to_string))
                .unwrap_or_else(|| "phase".into());
            assert!(
                Record::parse(&bytes, &kind, KEY).is_err(),
                "accepted {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            );
        }
    }
}
