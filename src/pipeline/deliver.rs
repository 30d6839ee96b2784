//! The output stage: an image written where each target says, in skopeo's
//! transport names: `oci:`, `oci-archive:`, `docker-archive:` through the
//! image writers, `docker://` (or `--push`) through the registry client.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;

use oci_spec::image::MediaType;

use crate::image::{self, Destination, DestinationError, Image};
use crate::layer::LayerCache;
use crate::registry::{
    self, LayoutBlob, LayoutImage, PushOutcome, PushProgress, PushTarget, RegistryConfig,
};
use crate::report::Progress;

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
                let pushed = push_image(image, &target, registry, cache, bar)?.to_string();
                progress.stage("push", format!("pushed {pushed}"));
                delivered.pushed.push(pushed);
            }
        }
    }
    Ok(delivered)
}

/// Pushes `image` straight from kiln's blob cache: the layers are there
/// already and the config is put beside them, so nothing is written out
/// or hashed again.
pub fn push_image(
    image: &Image,
    target: &PushTarget<'_>,
    registry: &RegistryConfig,
    cache: &LayerCache,
    progress: Arc<dyn PushProgress>,
) -> anyhow::Result<PushOutcome> {
    let config_blob = cache
        .put_blob(&image.config)
        .context("could not store the image config for pushing")?;
    let pushed = LayoutImage::from_blobs(
        image.manifest.clone(),
        image.manifest_digest.clone(),
        LayoutBlob {
            digest: image.config_digest.clone(),
            size: image.config.len() as u64,
            media_type: MediaType::ImageConfig.to_string(),
            path: config_blob,
        },
        image.layers.iter().map(LayoutBlob::from).collect(),
    );
    registry::push_image_with_progress(registry, &pushed, target, progress)
        .with_context(|| format!("could not push the image to {}", target.destination))
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
