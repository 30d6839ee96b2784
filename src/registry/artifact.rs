//! Small OCI artifacts in one repository, each tagged by a name: a JSON
//! config blob and the blobs it describes as layers. kiln's registry build
//! cache (`--cache-repo`) keeps its records this way, because a tag works
//! on every registry (distribution 2.8 has no referrers API).
//!
//! An artifact's manifest is put last, after every blob it names, so a
//! reader sees a complete artifact or none.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{Descriptor, DescriptorBuilder, ImageManifest, MediaType};
use sha2::{Digest as _, Sha256};

use super::connect::{connect, parse_reference, Session};
use super::error::RegistryError;
use super::layout::{LayoutBlob, LayoutImage};
use super::progress::NoPushProgress;
use super::push::{push_image_with_progress, PushTarget};
use super::retry::with_retry;
use super::{pull, runtime, RegistryConfig};

/// The manifest annotation that says when an artifact was put.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// An artifact's manifest and config are a few kilobytes; more is refused
/// unread.
const MAX_ARTIFACT_BYTES: u64 = 1 << 20;

/// One repository that artifacts are read from and written to, over one
/// authenticated session.
pub struct ArtifactRepo {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) session: Session,
    config: RegistryConfig,
}

/// A blob an artifact names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactBlob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// An artifact read back: its config bytes (checked against their digest)
/// and the blobs it names.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// The config blob's bytes.
    pub config: Vec<u8>,
    /// The blobs, in order.
    pub layers: Vec<ArtifactBlob>,
}

impl ArtifactRepo {
    /// Connects to `repository` (`REGISTRY/NAME`) for reading, or for
    /// reading and writing.
    pub fn connect(
        config: &RegistryConfig,
        repository: &str,
        writable: bool,
    ) -> Result<ArtifactRepo, RegistryError> {
        let reference = parse_reference(repository)?;
        let runtime = runtime()?;
        let operation = match writable {
            true => RegistryOperation::Push,
            false => RegistryOperation::Pull,
        };
        let session = runtime.block_on(connect(config, reference, operation))?;
        Ok(ArtifactRepo {
            runtime,
            session,
            config: config.clone(),
        })
    }

    /// `REGISTRY/NAME` of the repository.
    pub fn name(&self) -> String {
        let reference = &self.session.reference;
        format!("{}/{}", reference.registry(), reference.repository())
    }

    /// The registry's `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        self.session.reference.registry()
    }

    /// The repository's name within its registry.
    pub fn repository(&self) -> &str {
        self.session.reference.repository()
    }

    pub(super) fn tagged(&self, tag: &str) -> Reference {
        let reference = &self.session.reference;
        Reference::with_tag(
            reference.registry().to_string(),
            reference.repository().to_string(),
            tag.to_string(),
        )
    }

    /// The artifact tagged `tag`, or `None` when there is no such tag.
    pub fn get(&self, tag: &str) -> Result<Option<Artifact>, RegistryError> {
        self.runtime.block_on(self.get_async(tag))
    }

    async fn get_async(&self, tag: &str) -> Result<Option<Artifact>, RegistryError> {
        let session = &self.session;
        let reference = self.tagged(tag);
        let accepted = [MediaType::ImageManifest.to_string()];
        let accepted: Vec<&str> = accepted.iter().map(String::as_str).collect();
        let found = with_retry(
            session.backoff,
            &session.site,
            &format!("fetching cache record {tag}"),
            || async {
                match session
                    .client
                    .pull_manifest_raw(&reference, &session.auth, &accepted)
                    .await
                {
                    Ok(found) => Ok(Some(found)),
                    Err(err) if is_not_found(&err) => Ok(None),
                    Err(err) => Err(err),
                }
            },
        )
        .await?;
        let Some((bytes, _digest)) = found else {
            return Ok(None);
        };
        let bad = |reason: String| RegistryError::BadManifest {
            registry: session.site.registry.clone(),
            repository: session.site.repository.clone(),
            reason: format!("cache record {tag}: {reason}"),
        };
        if bytes.len() as u64 > MAX_ARTIFACT_BYTES {
            return Err(bad(format!("its manifest is {} bytes", bytes.len())));
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| bad(format!("not an OCI manifest ({e})")))?;
        let config = manifest.config();
        if config.size() > MAX_ARTIFACT_BYTES {
            return Err(bad(format!("its config is {} bytes", config.size())));
        }
        let wire = oci_client::manifest::OciDescriptor {
            media_type: config.media_type().to_string(),
            digest: config.digest().to_string(),
            size: config.size() as i64,
            ..Default::default()
        };
        let config_bytes = with_retry(
            session.backoff,
            &session.site,
            &format!("fetching the config of cache record {tag}"),
            || async {
                let mut bytes = Vec::new();
                session
                    .client
                    .pull_blob(&reference, &wire, &mut bytes)
                    .await
                    .map(|()| bytes)
            },
        )
        .await?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&config_bytes)));
        if actual != config.digest().to_string() {
            return Err(bad(format!(
                "its config arrived with digest {actual}, not {}",
                config.digest()
            )));
        }
        let layers = manifest
            .layers()
            .iter()
            .map(|layer| ArtifactBlob {
                digest: layer.digest().to_string(),
                size: layer.size(),
                media_type: layer.media_type().to_string(),
            })
            .collect();
        Ok(Some(Artifact {
            config: config_bytes,
            layers,
        }))
    }

    /// Whether the repository has a manifest tagged `tag`: one `HEAD`
    /// (a `GET` too when the registry sends no digest header).
    pub fn has(&self, tag: &str) -> Result<bool, RegistryError> {
        let session = &self.session;
        let reference = self.tagged(tag);
        self.runtime.block_on(with_retry(
            session.backoff,
            &session.site,
            &format!("checking cache record {tag}"),
            || async {
                match session
                    .client
                    .fetch_manifest_digest(&reference, &session.auth)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(err) if is_not_found(&err) => Ok(false),
                    Err(err) => Err(err),
                }
            },
        ))
    }

    /// Downloads `blob` into `dir/<hex>` (unless there already), verified
    /// against its digest and size; returns the file.
    pub fn fetch_blob(&self, blob: &ArtifactBlob, dir: &Path) -> Result<PathBuf, RegistryError> {
        let descriptor = descriptor(blob)?;
        std::fs::create_dir_all(dir).map_err(|e| RegistryError::io("could not create", dir, e))?;
        self.runtime
            .block_on(pull::fetch_blob(&self.session, &descriptor, dir))
    }

    /// Whether the repository holds the blob `digest`.
    pub fn has_blob(&self, digest: &str) -> Result<bool, RegistryError> {
        let session = &self.session;
        self.runtime.block_on(with_retry(
            session.backoff,
            &session.site,
            &format!("checking blob {digest}"),
            || session.client.blob_exists(&session.reference, digest),
        ))
    }

    /// Puts an artifact under `tag`: its `layers` (files already, mounted
    /// from `mount_from`, repositories of the same registry, when they
    /// hold them), the config `config` of media type `config_type`, then
    /// the manifest, annotated with its creation time `created` (the
    /// only thing that differs between two puts of the same artifact).
    /// The config file must be named by its digest, as in kiln's blob
    /// cache.
    pub fn put(
        &self,
        tag: &str,
        config_type: &str,
        config: &Path,
        layers: Vec<LayoutBlob>,
        mount_from: &[String],
        created: SystemTime,
    ) -> Result<(), RegistryError> {
        let bytes =
            std::fs::read(config).map_err(|e| RegistryError::io("could not read", config, e))?;
        let config = LayoutBlob {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            size: bytes.len() as u64,
            media_type: config_type.to_string(),
            path: config.to_path_buf(),
        };
        let manifest = artifact_manifest(&config, &layers, created);
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&manifest)));
        let image = LayoutImage::from_blobs(manifest, digest, config, layers);
        let destination = format!("{}:{tag}", self.name());
        let target = PushTarget {
            destination: &destination,
            extra_tags: &[],
            mount_from,
        };
        push_image_with_progress(&self.config, &image, &target, Arc::new(NoPushProgress)).map(drop)
    }
}

/// Whether `err` says the manifest or repository does not exist.
pub(super) fn is_not_found(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::ServerError { code: 404, .. } => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().all(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
            )
        }),
        _ => false,
    }
}

/// `time` as RFC 3339 in UTC, whole seconds.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn descriptor(blob: &ArtifactBlob) -> Result<Descriptor, RegistryError> {
    let bad = |reason: String| RegistryError::BadManifest {
        registry: String::new(),
        repository: String::new(),
        reason,
    };
    let digest: oci_spec::image::Digest = blob
        .digest
        .parse()
        .map_err(|e| bad(format!("blob digest {}: {e}", blob.digest)))?;
    DescriptorBuilder::default()
        .media_type(MediaType::from(blob.media_type.as_str()))
        .digest(digest)
        .size(blob.size)
        .build()
        .map_err(|e| bad(format!("blob {}: {e}", blob.digest)))
}

/// The OCI manifest of an artifact with `config` and `layers`, made at
/// `created`; the config's media type names what it is, as OCI 1.0
/// registries expect.
fn artifact_manifest(config: &LayoutBlob, layers: &[LayoutBlob], created: SystemTime) -> Vec<u8> {
    let describe = |blob: &LayoutBlob| {
        serde_json::json!({
            "mediaType": blob.media_type,
            "digest": blob.digest,
            "size": blob.size,
        })
    };
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MediaType::ImageManifest.to_string(),
        "config": describe(config),
        "layers": layers.iter().map(describe).collect::<Vec<_>>(),
        "annotations": { CREATED_ANNOTATION: rfc3339(created) },
    }))
    .expect("a manifest serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tags_and_repositories_are_not_found_and_the_rest_is_an_error() {
        let envelope = |code: &str| {
            let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
            OciDistributionError::RegistryError {
                envelope: serde_json::from_str(&json).unwrap(),
                url: "u".into(),
            }
        };
        assert!(is_not_found(&envelope("MANIFEST_UNKNOWN")));
        assert!(is_not_found(&envelope("NAME_UNKNOWN")));
        assert!(!is_not_found(&envelope("DENIED")));
        assert!(!is_not_found(&OciDistributionError::ServerError {
            code: 500,
            url: "u".into(),
            message: String::new(),
        }));
    }

    #[test]
    fn manifests_name_config_and_layers() {
        let blob = |digest: &str, media_type: &str| LayoutBlob {
            digest: digest.into(),
            size: 3,
            media_type: media_type.into(),
            path: PathBuf::new(),
        };
        let (config, layer) = (
            format!("sha256:{}", "a".repeat(64)),
            format!("sha256:{}", "b".repeat(64)),
        );
        let bytes = artifact_manifest(
            &blob(&config, "application/vnd.kiln.x+json"),
            &[blob(&layer, "application/vnd.oci.image.layer.v1.tar+gzip")],
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400),
        );
        let manifest: ImageManifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest.layers().len(), 1);
        assert_eq!(
            manifest.config().media_type().to_string(),
            "application/vnd.kiln.x+json"
        );
        let created = &manifest.annotations().as_ref().unwrap()[CREATED_ANNOTATION];
        assert_eq!(created, "1970-01-02T00:00:00Z");
    }
}
