//! `oci-archive:FILE[:TAG]`: the OCI image layout as one tar file, streamed
//! from the layer cache.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use super::archive::write_archive_atomically;
use super::oci_layout::{index, OCI_LAYOUT};
use super::{Image, ImageError};
use crate::layer::digest::sha256_hex;

enum Blob<'a> {
    Bytes(&'a [u8]),
    File(&'a Path, u64),
}

/// Writes `image` as an OCI archive at `file`, tagged `tags`.
pub fn write(image: &Image, file: &Path, tags: &[String]) -> Result<(), ImageError> {
    let mut blobs: BTreeMap<String, Blob> = BTreeMap::new();
    for layer in &image.layers {
        blobs.insert(layer.digest.clone(), Blob::File(&layer.blob, layer.size));
    }
    for (digest, bytes) in image.small_blobs() {
        blobs.insert(digest.to_string(), Blob::Bytes(bytes));
    }
    let index = index(image, tags);

    write_archive_atomically(file, image.source_date_epoch, |archive| {
        let io_err = |e| ImageError::io(file, e);
        archive.dir("blobs/").map_err(io_err)?;
        archive.dir("blobs/sha256/").map_err(io_err)?;
        for (digest, blob) in &blobs {
            let name = format!(
                "blobs/sha256/{}",
                sha256_hex(digest).expect("sha256 digest")
            );
            match blob {
                Blob::Bytes(bytes) => archive.bytes(&name, bytes).map_err(io_err)?,
                Blob::File(path, size) => {
                    let reader = File::open(path).map_err(|e| ImageError::io(path, e))?;
                    archive.stream(&name, *size, reader).map_err(io_err)?;
                }
            }
        }
        archive.bytes("index.json", &index).map_err(io_err)?;
        archive.bytes("oci-layout", OCI_LAYOUT).map_err(io_err)
    })
}
