//! Pushing an OCI image layout to a registry: skip blobs the registry has,
//! mount blobs another repository of the same registry has, upload the rest
//! concurrently from their files, then the config, then the manifest under
//! every tag.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Reference, RegistryOperation};

use super::blob_stream::file_chunks;
use super::connect::{connect, parse_reference, Session, MONOLITHIC_MAX};
use super::error::RegistryError;
use super::layout::{LayoutBlob, LayoutImage};
use super::progress::{BlobFate, NoPushProgress, PushProgress};
use super::retry::with_retry;
use super::{runtime, RegistryConfig};

/// Read size for monolithic uploads.
const STREAM_CHUNK: usize = 256 << 10;
/// Chunk size of chunked uploads: `oci-client` sends one PATCH per 4 MiB, so
/// feeding it 4 MiB pieces keeps each PATCH full.
const UPLOAD_CHUNK: usize = 4 << 20;

/// What to push and where.
#[derive(Debug, Clone)]
pub struct PushRequest<'a> {
    /// The OCI image layout folder.
    pub layout: &'a Path,
    /// The tag of the image inside the layout (`None`: its only manifest).
    pub layout_tag: Option<&'a str>,
    /// Destination, `registry/name[:tag]` (a `docker://` prefix is allowed).
    pub destination: &'a str,
    /// More tags to put the manifest under (`--tag`).
    pub extra_tags: &'a [String],
    /// Repositories of the same registry that may already hold some blobs
    /// (the base image's), tried as cross-repository mount sources.
    pub mount_from: &'a [String],
}

/// The pushed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// `registry/repository`.
    pub name: String,
    /// `sha256:<hex>` of the manifest.
    pub digest: String,
    /// Tags the manifest was put under.
    pub tags: Vec<String>,
    /// Blobs sent over the wire.
    pub uploaded: Vec<String>,
    /// Blobs mounted from another repository.
    pub mounted: Vec<String>,
    /// Blobs the repository already had.
    pub present: Vec<String>,
}

impl std::fmt::Display for PushOutcome {
    /// `name@sha256:...`, the pinned reference of the pushed image.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.digest)
    }
}

/// Pushes the image tagged `request.layout_tag` in `request.layout` to
/// `request.destination` and every extra tag. Blobs stream from their files;
/// an interrupted push, run again, sends only what the registry lacks.
pub fn push_layout(
    config: &RegistryConfig,
    request: &PushRequest<'_>,
) -> Result<PushOutcome, RegistryError> {
    push_layout_with_progress(config, request, Arc::new(NoPushProgress))
}

/// [`push_layout`], telling `progress` of every blob and of the bytes
/// uploaded as they go. An `Arc` because upload streams must own what they
/// report to.
pub fn push_layout_with_progress(
    config: &RegistryConfig,
    request: &PushRequest<'_>,
    progress: Arc<dyn PushProgress>,
) -> Result<PushOutcome, RegistryError> {
    let image = LayoutImage::open(request.layout, request.layout_tag)?;
    push_image_with_progress(config, &image, &request.into(), progress)
}

/// Where an image goes and what else its push may use.
#[derive(Debug, Clone)]
pub struct PushTarget<'a> {
    /// Destination, `registry/name[:tag]` (a `docker://` prefix is allowed).
    pub destination: &'a str,
    /// More tags to put the manifest under (`--tag`).
    pub extra_tags: &'a [String],
    /// Repositories of the same registry that may already hold some blobs,
    /// tried as cross-repository mount sources.
    pub mount_from: &'a [String],
}

impl<'a> From<&PushRequest<'a>> for PushTarget<'a> {
    fn from(request: &PushRequest<'a>) -> PushTarget<'a> {
        PushTarget {
            destination: request.destination,
            extra_tags: request.extra_tags,
            mount_from: request.mount_from,
        }
    }
}

/// Pushes `image`, whose blobs are files already (a layout's, or kiln's
/// blob cache), to `target`, telling `progress` as it goes.
pub fn push_image_with_progress(
    config: &RegistryConfig,
    image: &LayoutImage,
    target: &PushTarget<'_>,
    progress: Arc<dyn PushProgress>,
) -> Result<PushOutcome, RegistryError> {
    let destination = parse_reference(target.destination)?;
    runtime()?.block_on(push(config, target, image, destination, &progress))
}

async fn push(
    config: &RegistryConfig,
    request: &PushTarget<'_>,
    image: &LayoutImage,
    destination: Reference,
    progress: &Arc<dyn PushProgress>,
) -> Result<PushOutcome, RegistryError> {
    let session = connect(config, destination, RegistryOperation::Push).await?;
    let mut outcome = PushOutcome {
        name: format!(
            "{}/{}",
            session.reference.registry(),
            session.reference.repository()
        ),
        digest: image.manifest_digest.clone(),
        tags: tags(&session.reference, request.extra_tags),
        uploaded: Vec::new(),
        mounted: Vec::new(),
        present: Vec::new(),
    };
    let mut seen = BTreeSet::new();
    let layers: Vec<&LayoutBlob> = image
        .layers
        .iter()
        .filter(|b| seen.insert(b.digest.clone()))
        .collect();
    progress.started(layers.len() + 1);
    let fates: Vec<(&LayoutBlob, BlobFate)> = futures_util::stream::iter(layers)
        .map(|blob| {
            let session = &session;
            async move {
                let fate = send_blob(session, blob, request.mount_from, progress).await?;
                Ok::<_, RegistryError>((blob, fate))
            }
        })
        .buffer_unordered(config.jobs.max(1))
        .try_collect()
        .await?;
    let config_fate = send_blob(&session, &image.config, request.mount_from, progress).await?;
    for (blob, fate) in fates.into_iter().chain([(&image.config, config_fate)]) {
        let list = match fate {
            BlobFate::Present => &mut outcome.present,
            BlobFate::Mounted => &mut outcome.mounted,
            BlobFate::Uploaded => &mut outcome.uploaded,
        };
        list.push(blob.digest.clone());
    }
    put_manifest(&session, image, &outcome.tags).await?;
    tracing::info!(image = %outcome, uploaded = outcome.uploaded.len(), mounted = outcome.mounted.len(), present = outcome.present.len(), "pushed");
    Ok(outcome)
}

/// Puts the manifest under every tag, or under its digest alone when
/// there is none.
async fn put_manifest(
    session: &Session,
    image: &LayoutImage,
    tags: &[String],
) -> Result<(), RegistryError> {
    let content_type =
        reqwest::header::HeaderValue::from_str(&image.manifest_media_type).map_err(|_| {
            RegistryError::Layout {
                path: image.manifest_digest.clone().into(),
                reason: format!(
                    "manifest media type `{}` is not a valid header",
                    image.manifest_media_type
                ),
            }
        })?;
    let reference = &session.reference;
    let targets: Vec<(Reference, String)> = if tags.is_empty() {
        vec![(
            reference.clone_with_digest(image.manifest_digest.clone()),
            "putting the manifest".to_string(),
        )]
    } else {
        tags.iter()
            .map(|tag| {
                let target = Reference::with_tag(
                    reference.registry().to_string(),
                    reference.repository().to_string(),
                    tag.clone(),
                );
                (target, format!("putting the manifest under tag {tag}"))
            })
            .collect()
    };
    for (target, operation) in &targets {
        with_retry(session.backoff, &session.site, operation, || {
            put_manifest_once(session, target, image, &content_type)
        })
        .await?;
    }
    Ok(())
}

/// How often a manifest put is repeated while a blob it names is still
/// being committed by another push (see [`is_blob_being_committed`]).
const BLOB_COMMIT_ATTEMPTS: u64 = 5;

/// Puts the manifest under `target` once, waiting for a blob that another
/// push is committing at the same moment.
async fn put_manifest_once(
    session: &Session,
    target: &Reference,
    image: &LayoutImage,
    content_type: &reqwest::header::HeaderValue,
) -> Result<String, OciDistributionError> {
    let mut attempt = 1;
    loop {
        let result = session
            .client
            .push_manifest_raw(target, image.manifest_bytes.clone(), content_type.clone())
            .await;
        match result {
            Err(err) if attempt < BLOB_COMMIT_ATTEMPTS && is_blob_being_committed(&err) => {
                tracing::warn!(%err, attempt, "a blob the manifest names is still being committed; putting the manifest again");
                tokio::time::sleep(std::time::Duration::from_millis(250 * attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A refusal of a manifest whose blobs this push has just sent or found:
/// the registry calls one unknown, or its digest invalid. docker-registry
/// answers so while another push commits the same blob at the same moment
/// (two builds of one app pushing the SBOM's `{}` config in
/// tests/cache_repo.rs got both codes at once); it settles in moments.
fn is_blob_being_committed(err: &OciDistributionError) -> bool {
    match err {
        OciDistributionError::ServerError {
            code: 400, message, ..
        } => message.contains("MANIFEST_BLOB_UNKNOWN") || message.contains("DIGEST_INVALID"),
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestBlobUnknown | OciErrorCode::DigestInvalid
            )
        }),
        _ => false,
    }
}

/// The destination's tag (`latest` when it names neither tag nor digest)
/// followed by the extra tags, without repeats.
fn tags(destination: &Reference, extra: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    match (destination.tag(), destination.digest()) {
        (Some(tag), _) => tags.push(tag.to_string()),
        (None, None) => tags.push("latest".to_string()),
        (None, Some(_)) => {}
    }
    for tag in extra {
        if !tags.contains(tag) {
            tags.push(tag.clone());
        }
    }
    tags
}

/// Makes `blob` present in the destination repository, doing as little as
/// possible: nothing, a mount, or an upload; then tells `progress`.
async fn send_blob(
    session: &Session,
    blob: &LayoutBlob,
    mount_from: &[String],
    progress: &Arc<dyn PushProgress>,
) -> Result<BlobFate, RegistryError> {
    let fate = place_blob(session, blob, mount_from, progress).await?;
    progress.finished(blob, fate);
    Ok(fate)
}

async fn place_blob(
    session: &Session,
    blob: &LayoutBlob,
    mount_from: &[String],
    progress: &Arc<dyn PushProgress>,
) -> Result<BlobFate, RegistryError> {
    let reference = &session.reference;
    let exists = with_retry(
        session.backoff,
        &session.site,
        &format!("checking blob {}", blob.digest),
        || session.client.blob_exists(reference, &blob.digest),
    )
    .await?;
    if exists {
        tracing::debug!(digest = %blob.digest, "already in the registry");
        return Ok(BlobFate::Present);
    }
    for repository in mount_from.iter().filter(|r| *r != reference.repository()) {
        let source = Reference::with_tag(
            reference.registry().to_string(),
            repository.clone(),
            "latest".to_string(),
        );
        match session
            .client
            .mount_blob(reference, &source, &blob.digest)
            .await
        {
            Ok(()) => {
                tracing::debug!(digest = %blob.digest, from = %repository, "mounted");
                return Ok(BlobFate::Mounted);
            }
            Err(err) => {
                tracing::debug!(digest = %blob.digest, from = %repository, %err, "mount refused")
            }
        }
    }
    with_retry(
        session.backoff,
        &session.site,
        &format!("uploading blob {}", blob.digest),
        || upload(session, blob, progress),
    )
    .await?;
    tracing::debug!(digest = %blob.digest, size = blob.size, "uploaded");
    Ok(BlobFate::Uploaded)
}

/// One upload attempt, streamed from the blob file: a single PUT for small
/// blobs, chunks for big ones (falling back to a single PUT when the registry
/// does not do chunked uploads properly).
async fn upload(
    session: &Session,
    blob: &LayoutBlob,
    progress: &Arc<dyn PushProgress>,
) -> Result<(), OciDistributionError> {
    let reference = &session.reference;
    if blob.size > MONOLITHIC_MAX {
        let chunks = reported(file_chunks(&blob.path, UPLOAD_CHUNK).await?, blob, progress);
        match session
            .chunked
            .push_blob_stream(reference, chunks, &blob.digest, None)
            .await
        {
            Err(OciDistributionError::SpecViolationError(violation)) => {
                tracing::debug!(%violation, "chunked upload refused; sending the blob whole");
            }
            other => return other.map(drop),
        }
    }
    let chunks = reported(file_chunks(&blob.path, STREAM_CHUNK).await?, blob, progress);
    session
        .client
        .push_blob_stream(reference, chunks, &blob.digest, Some(blob.size))
        .await
        .map(drop)
}

/// `chunks` of `blob`, telling `progress` the bytes taken from it so far as
/// the HTTP client takes each chunk.
fn reported<S>(
    chunks: S,
    blob: &LayoutBlob,
    progress: &Arc<dyn PushProgress>,
) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream<Item = Result<Bytes, OciDistributionError>> + Send + 'static,
{
    let blob = blob.clone();
    let progress = Arc::clone(progress);
    let mut sent = 0;
    chunks.inspect_ok(move |chunk| {
        sent += chunk.len() as u64;
        progress.sending(&blob, sent);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_default_to_latest_and_do_not_repeat() {
        let r = parse_reference("h:1/app").unwrap();
        assert_eq!(tags(&r, &["v1".into(), "latest".into()]), ["latest", "v1"]);
        let r = parse_reference("h:1/app:v2").unwrap();
        assert_eq!(tags(&r, &[]), ["v2"]);
    }

    #[test]
    fn only_a_blob_refusal_of_a_manifest_waits_for_a_concurrent_commit() {
        let refusal = |code: u16, message: &str| OciDistributionError::ServerError {
            code,
            url: "http://127.0.0.1:5000/v2/app/manifests/latest".into(),
            message: message.into(),
        };
        let seen = r#"{"errors":[{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"},{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"}]}"#;
        assert!(is_blob_being_committed(&refusal(400, seen)));
        assert!(is_blob_being_committed(&refusal(
            400,
            r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}"#
        )));
        assert!(!is_blob_being_committed(&refusal(
            400,
            r#"{"errors":[{"code":"MANIFEST_INVALID"}]}"#
        )));
        assert!(!is_blob_being_committed(&refusal(404, seen)));
        assert!(!is_blob_being_committed(
            &OciDistributionError::UnauthorizedError {
                url: "http://127.0.0.1:5000/v2/".into()
            }
        ));
    }
}
