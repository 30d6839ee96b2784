//! Pulling a base image: resolve a reference to the manifest for one
//! platform (through an index when needed), then download its config and
//! layers into a content-addressed blob folder, verifying every digest.

use std::io::Write;
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use kiln_io::{AtomicFile, HashingWriter};
use oci_client::errors::{DigestError, OciDistributionError};
use oci_client::manifest::OciDescriptor;
use oci_client::{Reference, RegistryOperation};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};

use super::connect::{connect, parse_reference, Session};
use super::error::RegistryError;
use super::manifest::{self, ManifestDocument, Platform};
use super::retry::with_retry;
use super::{runtime, RegistryConfig};

/// Manifests, indexes and configs are small JSON (kilobytes); anything
/// bigger than this is refused. It is the limit distribution puts on
/// manifests and skopeo on configs.
const MAX_DOCUMENT_BYTES: u64 = 4 << 20;

/// One layer of a pulled image, as the build reuses it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledLayer {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar, from the config.
    pub diff_id: String,
    /// The layer's media type (OCI or Docker).
    pub media_type: String,
    /// Size of the blob in bytes.
    pub size: u64,
    /// The verified blob file in the blob folder.
    pub path: PathBuf,
}

impl PulledLayer {
    /// The OCI media type of the same bytes: what an OCI manifest that
    /// reuses this layer must say (Docker's gzip type is not allowed there;
    /// the digest does not change).
    pub fn oci_media_type(&self) -> &str {
        match self.media_type.as_str() {
            "application/vnd.docker.image.rootfs.diff.tar.gzip" => {
                "application/vnd.oci.image.layer.v1.tar+gzip"
            }
            other => other,
        }
    }
}

/// A pulled image: its manifest, config and layers on disk.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// `registry/repository@sha256:...` of the platform manifest.
    pub pinned: String,
    /// `sha256:<hex>` of the platform manifest.
    pub manifest_digest: String,
    /// The platform manifest.
    pub manifest: ImageManifest,
    /// The image config.
    pub config: ImageConfiguration,
    /// The config descriptor's digest.
    pub config_digest: String,
    /// The config blob file.
    pub config_path: PathBuf,
    /// The layers, base first.
    pub layers: Vec<PulledLayer>,
}

/// Pulls `reference` for `platform` into `blob_dir` (`<blob_dir>/sha256/<hex>`).
/// Blobs already in the folder are not downloaded again; a download whose
/// digest does not match is deleted and reported.
pub fn pull_image(
    config: &RegistryConfig,
    reference: &str,
    platform: &Platform,
    blob_dir: &Path,
) -> Result<PulledImage, RegistryError> {
    let reference = parse_reference(reference)?;
    runtime()?.block_on(pull(config, reference, platform, blob_dir))
}

async fn pull(
    config: &RegistryConfig,
    reference: Reference,
    platform: &Platform,
    blob_dir: &Path,
) -> Result<PulledImage, RegistryError> {
    let session = connect(config, reference, RegistryOperation::Pull).await?;
    let (manifest, manifest_digest) = resolve_manifest(&session, platform).await?;
    let dir = blob_dir.join("sha256");
    std::fs::create_dir_all(&dir).map_err(|e| RegistryError::io("could not create", &dir, e))?;

    let config_descriptor = manifest.config();
    // Refused before reading: the download stops at the size it declares.
    too_big(
        &session,
        "config",
        config_descriptor.digest().as_ref(),
        config_descriptor.size(),
    )?;
    let config_path = fetch_blob(&session, config_descriptor, &dir).await?;
    let config_bytes = std::fs::read(&config_path)
        .map_err(|e| RegistryError::io("could not read", &config_path, e))?;
    let image_config = manifest::parse_image_config(&config_bytes, manifest.layers().len())
        .map_err(|reason| {
            bad(
                &session,
                format!("image config {} {reason}", config_descriptor.digest()),
            )
        })?;
    let diff_ids = image_config.rootfs().diff_ids();

    let paths: Vec<PathBuf> = futures_util::stream::iter(manifest.layers())
        .map(|layer| fetch_blob(&session, layer, &dir))
        .buffered(config.jobs.max(1))
        .try_collect()
        .await?;
    let layers = manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .zip(paths)
        .map(|((layer, diff_id), path)| PulledLayer {
            digest: layer.digest().to_string(),
            diff_id: diff_id.clone(),
            media_type: layer.media_type().to_string(),
            size: layer.size(),
            path,
        })
        .collect();
    Ok(PulledImage {
        pinned: format!(
            "{}/{}@{manifest_digest}",
            session.reference.registry(),
            session.reference.repository()
        ),
        manifest_digest,
        config_digest: config_descriptor.digest().to_string(),
        config: image_config,
        config_path,
        layers,
        manifest,
    })
}

/// Refuses a manifest, index or config of `size` bytes above the limit.
pub(crate) fn too_big(
    session: &Session,
    what: &str,
    digest: &str,
    size: u64,
) -> Result<(), RegistryError> {
    if size <= MAX_DOCUMENT_BYTES {
        return Ok(());
    }
    Err(bad(
        session,
        format!(
            "{what} {digest} is {size} bytes, more than the {MAX_DOCUMENT_BYTES} kiln accepts; refused"
        ),
    ))
}

pub(crate) fn bad(session: &Session, reason: String) -> RegistryError {
    RegistryError::BadManifest {
        registry: session.site.registry.clone(),
        repository: session.site.repository.clone(),
        reason,
    }
}

/// The image manifest of the reference for `platform`, and its digest.
async fn resolve_manifest(
    session: &Session,
    platform: &Platform,
) -> Result<(ImageManifest, String), RegistryError> {
    let mut reference = session.reference.clone();
    // An index entry points at a manifest, never at another index: at most
    // one hop.
    for _ in 0..2 {
        let (bytes, digest) = with_retry(
            session.backoff,
            &session.site,
            "fetching the manifest",
            || {
                session
                    .client
                    .pull_manifest_raw(&reference, &session.auth, &manifest::ACCEPTED)
            },
        )
        .await?;
        // oci-client has read the body by now; this keeps it from going further.
        too_big(session, "manifest", &digest, bytes.len() as u64)?;
        match manifest::parse(&bytes).map_err(|reason| bad(session, reason))? {
            ManifestDocument::Image(image) => return Ok((*image, digest)),
            ManifestDocument::Index(index) => {
                let entry =
                    manifest::select(&index, platform).map_err(|reason| bad(session, reason))?;
                too_big(session, "manifest", entry.digest().as_ref(), entry.size())?;
                reference = session
                    .reference
                    .clone_with_digest(entry.digest().to_string());
            }
        }
    }
    Err(bad(
        session,
        "an index entry points at another index".to_string(),
    ))
}

/// Makes the blob of `descriptor` present and verified at `dir/<hex>`.
pub(crate) async fn fetch_blob(
    session: &Session,
    descriptor: &Descriptor,
    dir: &Path,
) -> Result<PathBuf, RegistryError> {
    let digest = descriptor.digest().to_string();
    let hex = descriptor.digest().digest();
    if descriptor.digest().algorithm().as_ref() != "sha256"
        || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err(bad(session, format!("blob digest {digest} is not sha256")));
    }
    let path = dir.join(hex);
    if path.exists() {
        return Ok(path);
    }
    let wire = OciDescriptor {
        media_type: descriptor.media_type().to_string(),
        digest: digest.clone(),
        size: descriptor.size() as i64,
        ..OciDescriptor::default()
    };
    let verdict = with_retry(
        session.backoff,
        &session.site,
        &format!("downloading blob {digest}"),
        || download(session, &wire, &path),
    )
    .await?;
    if let Err(Mismatch { actual, bytes }) = verdict {
        return Err(RegistryError::DigestMismatch {
            registry: session.site.registry.clone(),
            repository: session.site.repository.clone(),
            expected: digest,
            actual,
            bytes,
        });
    }
    Ok(path)
}

/// A download whose bytes do not hash to the digest asked for.
struct Mismatch {
    actual: String,
    bytes: u64,
}

/// One download attempt: stream into a temporary file next to `path`,
/// hashing as it goes; commit it only when digest and size match, so the
/// blob folder holds complete, verified blobs or nothing. Wire errors are
/// retried by the caller; a mismatch is final.
async fn download(
    session: &Session,
    descriptor: &OciDescriptor,
    path: &Path,
) -> Result<Result<(), Mismatch>, OciDistributionError> {
    let mut temp = HashingWriter::new(AtomicFile::beside(path)?);
    let mut stream = session
        .client
        .pull_blob_stream(&session.reference, descriptor)
        .await?;
    let expected_size = descriptor.size as u64;
    // Counts the chunk that overflows too, which is never written.
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            // oci-client checks the digest itself at the end of the stream;
            // kiln's own hash below says what arrived instead.
            Err(e) if e.get_ref().is_some_and(|inner| inner.is::<DigestError>()) => break,
            Err(e) => return Err(OciDistributionError::IoError(e)),
        };
        bytes += chunk.len() as u64;
        if bytes > expected_size {
            break;
        }
        temp.write_all(&chunk)?;
    }
    if bytes < expected_size {
        // Cut short on the way (a dropped connection, a proxy's wrong
        // `Content-Length`): another download may be whole, so this is a
        // wire error, not a mismatch. The temporary file goes with `temp`.
        return Err(OciDistributionError::IoError(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            format!("the blob ended after {bytes} of its {expected_size} bytes"),
        )));
    }
    let (temp, actual, _) = temp.finish();
    if actual != descriptor.digest || bytes != expected_size {
        return Ok(Err(Mismatch { actual, bytes }));
    }
    temp.commit(path)?;
    Ok(Ok(()))
}
