//! A pulled base image (`buildImage`, `--base-image`, `start.runImage`):
//! its layers reused unchanged at the bottom of the image, and its files
//! unpacked once into kiln's cache as the sandbox's lowest folder.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_providers::plan::{DEBIAN_BASE_IMAGE, UBUNTU_BASE_IMAGE};
use kiln_providers::BuildPlan;
use oci_spec::image::Config;

use crate::cache::records;
use crate::layer::{Format, Layer};
use crate::registry::{self, Platform, PulledImage, PulledLayer, RegistryConfig};

/// Upstream's run image for slim images. Upstream starts from it only for
/// the certificates and a shell, which kiln's own base has, so it stands
/// for kiln's base the way upstream's default build images do.
pub const UPSTREAM_RUN_IMAGE: &str = "ubuntu:noble";

/// A base image, pulled and unpacked.
pub struct BaseImage {
    /// The reference it was pulled by.
    pub reference: String,
    /// `sha256:<hex>` of its manifest: what phase keys depend on.
    pub digest: String,
    /// Its runtime settings (environment, entrypoint, user, labels).
    pub config: Option<Config>,
    /// Its layers, ready to go at the bottom of the image unchanged.
    pub layers: Vec<Layer>,
    /// Its files, unpacked.
    pub root: PathBuf,
}

impl BaseImage {
    /// Whether the image has `apt-get`, so `aptPkgs` can be installed.
    pub fn has_apt(&self) -> bool {
        ["usr/bin/apt-get", "bin/apt-get"]
            .iter()
            .any(|p| self.root.join(p).symlink_metadata().is_ok())
    }
}

/// The image to build on: `--base-image`, else the plan's `buildImage`
/// unless it is one of upstream's own build images (which kiln's minimal
/// base replaces: they hold Nix and Ubuntu, which kiln's images do without).
pub fn build_base(plan: &BuildPlan, base_image: Option<&str>) -> Option<String> {
    let from_plan = plan
        .build_image
        .as_deref()
        .filter(|image| ![UBUNTU_BASE_IMAGE, DEBIAN_BASE_IMAGE].contains(image));
    base_image.or(from_plan).map(str::to_string)
}

/// The image the app runs in, when the plan asks for a separate one
/// (`start.runImage`): `None` when there is none, `Some(None)` for kiln's
/// minimal base standing in for upstream's, `Some(Some(reference))` for an
/// image to pull.
pub fn run_base(plan: &BuildPlan) -> Option<Option<String>> {
    let run_image = plan.start_phase.as_ref()?.run_image.as_deref()?;
    Some((run_image != UPSTREAM_RUN_IMAGE).then(|| run_image.to_string()))
}

/// Pulls `reference` into kiln's blob cache and unpacks it (once per
/// manifest) under `<cache_root>/bases/`.
pub fn pull(
    reference: &str,
    registry: &RegistryConfig,
    cache_root: &Path,
) -> anyhow::Result<BaseImage> {
    let pull = || {
        registry::pull_image(
            registry,
            reference,
            &Platform::host(),
            &cache_root.join("blobs"),
        )
        .with_context(|| format!("could not pull the base image {reference}"))
    };
    let mut pulled = pull()?;
    // Held for the build, so a prune leaves them alone; one that removed
    // a blob between the pull and here makes the pull fetch it again.
    if !hold_blobs(&pulled) {
        pulled = pull()?;
        if !hold_blobs(&pulled) {
            bail!("the blobs of the base image {reference} were removed while pulling it (a `kiln cache prune` running meanwhile?); build again");
        }
    }
    let root = unpacked_root(&pulled, cache_root)
        .with_context(|| format!("could not unpack the base image {reference}"))?;
    let layers = pulled
        .layers
        .iter()
        .enumerate()
        .map(|(index, layer)| {
            reused_layer(
                layer,
                root.sizes.get(index).copied().unwrap_or(0),
                &format!(
                    "base image {reference}, layer {} of {}",
                    index + 1,
                    pulled.layers.len()
                ),
            )
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(BaseImage {
        reference: reference.to_string(),
        digest: pulled.manifest_digest.clone(),
        config: pulled.config.config().clone(),
        layers,
        root: root.dir,
    })
}

/// Holds the pulled image's config and layer blobs for this process.
fn hold_blobs(pulled: &PulledImage) -> bool {
    std::iter::once(&pulled.config_path)
        .chain(pulled.layers.iter().map(|layer| &layer.path))
        .all(|blob| records::use_entry(blob))
}

struct Unpacked {
    dir: PathBuf,
    /// Uncompressed size of each layer.
    sizes: Vec<u64>,
}

/// The image's files under `bases/<hex>/root`, with `bases/<hex>/sizes.json`
/// and the blobs they came from in `bases/<hex>/digests.json` (what a prune
/// keeps with them);
/// unpacked into a temporary folder and renamed into place, so a folder
/// there is always complete. Two kilns unpacking at once both succeed: the
/// second rename fails and its copy is dropped.
fn unpacked_root(pulled: &PulledImage, cache_root: &Path) -> anyhow::Result<Unpacked> {
    let bases = cache_root.join("bases");
    let hex = pulled
        .manifest_digest
        .strip_prefix("sha256:")
        .unwrap_or(&pulled.manifest_digest);
    let done = bases.join(hex);
    let read = |dir: &Path| -> Option<Unpacked> {
        let sizes = serde_json::from_slice(&std::fs::read(dir.join("sizes.json")).ok()?).ok()?;
        Some(Unpacked {
            dir: dir.join("root"),
            sizes,
        })
    };
    if records::use_entry(&done) {
        if let Some(unpacked) = read(&done) {
            return Ok(unpacked);
        }
    }
    // Private: the unpacked files belong to the builder, and a base image
    // may carry programs that should not be reachable by other users.
    crate::cache::create_private_dir(&bases)
        .with_context(|| format!("could not create {}", bases.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(&bases)
        .with_context(|| format!("could not create a folder in {}", bases.display()))?;
    // Held from now on: a prune leaves the unpacking, and the entry it
    // becomes, alone.
    if !records::use_entry(temp.path()) {
        bail!("{} was removed while unpacking into it (a `kiln cache prune` running meanwhile?); build again", temp.path().display());
    }
    let sizes = registry::unpack_layers(&pulled.layers, &temp.path().join("root"))?;
    let digests: Vec<&str> = std::iter::once(pulled.config_digest.as_str())
        .chain(pulled.layers.iter().map(|layer| layer.digest.as_str()))
        .collect();
    // Plainly written: nothing reads the folder before commit_dir syncs it.
    for (name, json) in [
        ("digests.json", serde_json::to_vec(&digests)?),
        ("sizes.json", serde_json::to_vec(&sizes)?),
    ] {
        let path = temp.path().join(name);
        std::fs::write(&path, json)
            .with_context(|| format!("could not write {}", path.display()))?;
    }
    let temp = temp.keep();
    if let Err(err) = kiln_io::commit_dir(&temp, &done) {
        let _ = std::fs::remove_dir_all(&temp);
        if read(&done).is_none() {
            return Err(err).with_context(|| format!("could not move {}", done.display()));
        }
    }
    read(&done).with_context(|| format!("{} is incomplete", done.display()))
}

/// A pulled layer as a layer of the new image: the same blob, digest and
/// diff ID, its media type in OCI spelling.
fn reused_layer(
    pulled: &PulledLayer,
    uncompressed_size: u64,
    description: &str,
) -> anyhow::Result<Layer> {
    let media_type = pulled.oci_media_type();
    let format = if media_type == Format::Gzip.media_type() {
        Format::Gzip
    } else if media_type == Format::Zstd.media_type() {
        Format::Zstd
    } else {
        bail!(
            "base image layer {} has media type {}; kiln reuses gzip and zstd layers only",
            pulled.digest,
            pulled.media_type
        );
    };
    Ok(Layer {
        digest: pulled.digest.clone(),
        diff_id: pulled.diff_id.clone(),
        size: pulled.size,
        uncompressed_size,
        format,
        blob: pulled.path.clone(),
        description: description.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn unpacked_bases_are_private_to_the_builder() {
        let cache = tempfile::tempdir().unwrap();
        let bases = cache.path().join("bases");
        std::fs::create_dir(&bases).unwrap();
        std::fs::set_permissions(&bases, std::fs::Permissions::from_mode(0o755)).unwrap();
        let pulled = PulledImage {
            pinned: "localhost/base@sha256:00".into(),
            manifest_digest: "sha256:00".into(),
            manifest: oci_spec::image::ImageManifestBuilder::default()
                .schema_version(2u32)
                .config(
                    oci_spec::image::DescriptorBuilder::default()
                        .media_type(oci_spec::image::MediaType::ImageConfig)
                        .digest(
                            format!("sha256:{}", "0".repeat(64))
                                .parse::<oci_spec::image::Digest>()
                                .unwrap(),
                        )
                        .size(2u64)
                        .build()
                        .unwrap(),
                )
                .layers(Vec::new())
                .build()
                .unwrap(),
            config: Default::default(),
            config_digest: "sha256:01".into(),
            config_path: cache.path().join("config.json"),
            layers: Vec::new(),
        };
        let unpacked = unpacked_root(&pulled, cache.path()).unwrap();
        assert!(unpacked.dir.is_dir());
        let mode = std::fs::metadata(&bases).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "bases/ must not be reachable by other users");
    }
}
