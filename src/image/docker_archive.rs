//! `docker-archive:FILE[:NAME:TAG]`: the tar `docker save` writes and
//! `docker load` / `podman load` read: `manifest.json`, the config, and
//! each layer as an uncompressed tar named by its diffID (decompressed from
//! the cache while written).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::json;

use super::archive::write_archive_atomically;
use super::{canonical_json, Image, ImageError};
use crate::layer::digest::sha256_hex;

/// Writes `image` as a docker archive at `file`, named `reference`
/// (`NAME:TAG`) when given.
pub fn write(image: &Image, file: &Path, reference: Option<&str>) -> Result<(), ImageError> {
    let config_name = format!(
        "{}.json",
        sha256_hex(&image.config_digest).expect("sha256 digest")
    );
    let layer_names: Vec<String> = image
        .layers
        .iter()
        .map(|layer| format!("{}.tar", sha256_hex(&layer.diff_id).expect("sha256 diffID")))
        .collect();
    let repo_tags: Vec<&str> = reference.into_iter().collect();
    let manifest = canonical_json(&json!([{
        "Config": config_name,
        "RepoTags": repo_tags,
        "Layers": layer_names,
    }]));

    write_archive_atomically(file, image.source_date_epoch, |archive| {
        let io_err = |e| ImageError::io(file, e);
        archive.bytes(&config_name, &image.config).map_err(io_err)?;
        let mut written = BTreeSet::new();
        for (layer, name) in image.layers.iter().zip(&layer_names) {
            if !written.insert(name) {
                continue;
            }
            let tar = layer.open_uncompressed()?;
            archive
                .stream(name, layer.uncompressed_size, tar)
                .map_err(|e| ImageError::io(&layer.blob, e))?;
        }
        archive.bytes("manifest.json", &manifest).map_err(io_err)
    })
}
