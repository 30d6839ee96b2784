//! The output stage: an image written where each target says, in skopeo's
//! transport names: `oci:`, `oci-archive:`, `docker-archive:` through the
//! image writers, `docker://` (or `--push`) through the registry client.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;

use oci_spec::image::MediaType;

use crate::image::{self, Destination, DestinationError, Image};
use crate::layer::digest::sha256_digest;
use crate::layer::LayerCache;
use crate::registry::{
    self, LayoutBlob, LayoutImage, NoPushProgress, PushOutcome, PushProgress, PushTarget,
    RegistryConfig,
};
use crate::report::Progress;
use crate::sign::{Key, PAYLOAD_MEDIA_TYPE};

/// One place an image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A file or folder on this machine.
    Write(Destination),
    /// A registry reference (`registry/name[:tag]`).
    Push(String),
}

impl FromStr for Target {
    type Err = DestinationError;

    /// `docker://REFERENCE` pushes, as in skopeo; anything else is a
    /// [`Destination`].
    fn from_str(text: &str) -> Result<Target, DestinationError> {
        match text.strip_prefix("docker://") {
            Some("") => Err(DestinationError::NoPath(text.to_string())),
            Some(reference) => Ok(Target::Push(reference.to_string())),
            None => text.parse().map(Target::Write),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Write(destination) => destination.fmt(f),
            Target::Push(reference) => write!(f, "docker://{reference}"),
        }
    }
}

/// Where an image goes, and the tags it gets besides each target's own.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Every target, in order.
    pub targets: Vec<Target>,
    /// More tags (`--tag`).
    pub tags: Vec<String>,
    /// Key to sign pushed images and their attachments with (`--sign-key`).
    pub sign_key: Option<Arc<Key>>,
}

/// Where an image went.
#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// The files and folders written, as targets name them.
    pub written: Vec<String>,
    /// `registry/name@sha256:...` of each push.
    pub pushed: Vec<String>,
}

/// Writes or pushes `image` to every target of `delivery`; a push mounts
/// blobs it lacks from the repositories `mount_from` of its registry.
pub fn deliver(
    image: &Image,
    delivery: &Delivery,
    registry: &RegistryConfig,
    cache: &LayerCache,
    mount_from: &[String],
    progress: &Progress,
) -> anyhow::Result<Delivered> {
    let mut delivered = Delivered::default();
    for target in &delivery.targets {
        match target {
            Target::Write(destination) => {
                let spinner = progress.spinner(&format!("output: writing {destination}"));
                image::write(image, destination, &delivery.tags)
                    .with_context(|| format!("could not write the image to {destination}"))?;
                drop(spinner);
                progress.stage("output", format!("wrote {destination}"));
                delivered.written.push(destination.to_string());
            }
            Target::Push(reference) => {
                let target = PushTarget {
                    destination: reference,
                    extra_tags: &delivery.tags,
                    mount_from,
                };
                let bar = Arc::new(progress.push_bar());
                let outcome = push_image(image, &target, registry, cache, bar)?;
                if let Some(key) = &delivery.sign_key {
                    push_signatures(image, &outcome.name, key, registry, cache)?;
                    progress.stage("sign", format!("signed {outcome}"));
                }
                let pushed = outcome.to_string();
                progress.stage("push", format!("pushed {pushed}"));
                delivered.pushed.push(pushed);
            }
        }
    }
    Ok(delivered)
}

/// Pushes `image` straight from kiln's blob cache: the layers are there
/// already and the config is put beside them, so nothing is written out
/// or hashed again. Its attachments follow, by digest, listed under the
/// image's referrers tag.
pub fn push_image(
    image: &Image,
    target: &PushTarget<'_>,
    registry: &RegistryConfig,
    cache: &LayerCache,
    progress: Arc<dyn PushProgress>,
) -> anyhow::Result<PushOutcome> {
    let config = cached_blob(
        cache,
        &image.config_digest,
        MediaType::ImageConfig.as_ref(),
        &image.config,
    )?;
    let pushed = LayoutImage::from_blobs(
        image.manifest.clone(),
        image.manifest_digest.clone(),
        config,
        image.layers.iter().map(LayoutBlob::from).collect(),
    );
    let outcome = registry::push_image_with_progress(registry, &pushed, target, progress)
        .with_context(|| format!("could not push the image to {}", target.destination))?;
    push_attachments(image, &outcome.name, registry, cache)?;
    Ok(outcome)
}

/// Pushes each attachment of `image` to `repository` by its digest, then
/// lists them all in the image's referrers tag.
fn push_attachments(
    image: &Image,
    repository: &str,
    registry: &RegistryConfig,
    cache: &LayerCache,
) -> anyhow::Result<()> {
    if image.attachments.is_empty() {
        return Ok(());
    }
    for attachment in &image.attachments {
        let mut blobs = attachment
            .blobs
            .iter()
            .map(|b| cached_blob(cache, &b.digest, &b.media_type, &b.bytes));
        let config = blobs.next().expect("an attachment has a config")?;
        let artifact = LayoutImage::from_blobs(
            attachment.manifest.clone(),
            attachment.manifest_digest.clone(),
            config,
            blobs.collect::<anyhow::Result<_>>()?,
        );
        let destination = format!("{repository}@{}", attachment.manifest_digest);
        push_small(registry, &artifact, &destination, &attachment.artifact_type)?;
    }
    let descriptors: Vec<_> = image.attachments.iter().map(|a| a.descriptor()).collect();
    registry::add_referrers(registry, repository, &image.manifest_digest, &descriptors)
        .with_context(|| {
            format!(
                "the image and its attachments are pushed to {repository}, but listing them under its referrers tag failed"
            )
        })?;
    Ok(())
}

/// Signs the manifest of `image` and of each attachment pushed to
/// `repository`, and pushes each signature under its `sha256-<hex>.sig`
/// tag, replacing what was there.
fn push_signatures(
    image: &Image,
    repository: &str,
    key: &Key,
    registry: &RegistryConfig,
    cache: &LayerCache,
) -> anyhow::Result<()> {
    let digests = std::iter::once(&image.manifest_digest)
        .chain(image.attachments.iter().map(|a| &a.manifest_digest));
    for digest in digests {
        let signature = key.sign(repository, digest);
        let config = cached_blob(
            cache,
            &sha256_digest(&signature.config),
            MediaType::ImageConfig.as_ref(),
            &signature.config,
        )?;
        let payload = cached_blob(
            cache,
            &sha256_digest(&signature.payload),
            PAYLOAD_MEDIA_TYPE,
            &signature.payload,
        )?;
        let pushed = LayoutImage::from_blobs(
            signature.manifest.clone(),
            sha256_digest(&signature.manifest),
            config,
            vec![payload],
        );
        let destination = format!("{repository}:{}", signature.tag);
        push_small(registry, &pushed, &destination, "signature")?;
    }
    Ok(())
}

/// Pushes `manifest` (an attachment or signature of an image pushed
/// already, `what`) to `destination`, with no progress bar: it is small.
fn push_small(
    registry: &RegistryConfig,
    manifest: &LayoutImage,
    destination: &str,
    what: &str,
) -> anyhow::Result<()> {
    let target = PushTarget {
        destination,
        extra_tags: &[],
        mount_from: &[],
    };
    registry::push_image_with_progress(registry, manifest, &target, Arc::new(NoPushProgress))
        .with_context(|| {
            format!("the image is pushed, but its {what} could not be: {destination}")
        })?;
    Ok(())
}

/// `bytes` in kiln's blob cache, described for a push.
fn cached_blob(
    cache: &LayerCache,
    digest: &str,
    media_type: &str,
    bytes: &[u8],
) -> anyhow::Result<LayoutBlob> {
    let path = cache
        .put_blob(bytes)
        .with_context(|| format!("could not store blob {digest} for pushing"))?;
    Ok(LayoutBlob {
        digest: digest.to_string(),
        size: bytes.len() as u64,
        media_type: media_type.to_string(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_references_push_and_the_rest_are_written() {
        assert_eq!(
            "docker://localhost:5000/app:1".parse::<Target>().unwrap(),
            Target::Push("localhost:5000/app:1".into())
        );
        assert!(matches!(
            "oci:out:1".parse::<Target>().unwrap(),
            Target::Write(Destination::OciLayout { .. })
        ));
        assert!("docker://".parse::<Target>().is_err());
        assert!("docker-daemon:app".parse::<Target>().is_err());
        for text in ["docker://h/app:1", "oci:out:1", "oci-archive:a.tar"] {
            assert_eq!(text.parse::<Target>().unwrap().to_string(), text);
        }
    }
}
