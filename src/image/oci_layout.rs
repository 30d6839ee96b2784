//! `oci:DIR[:TAG]`: an OCI image layout folder (`oci-layout`, `index.json`
//! with one `org.opencontainers.image.ref.name` entry per tag,
//! `blobs/sha256/`). Writing into an existing layout keeps its other images
//! and moves the given tags to this one. The image's attachments (its SBOM)
//! are listed untagged, with their `artifactType`, as OCI 1.1 referrers.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use kiln_io::{write_atomically, AtomicFile};
use serde_json::{json, Value};

use super::referrer::MANIFEST_MEDIA_TYPE;
use super::{canonical_json, Image, ImageError};
use crate::layer::digest::sha256_hex;

/// Content of the `oci-layout` file.
pub const OCI_LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The annotation naming a tag in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Writes `image` into the layout at `dir` under every tag in `tags`.
pub fn write(image: &Image, dir: &Path, tags: &[String]) -> Result<(), ImageError> {
    let existing = existing_index(dir)?;
    let blobs = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).map_err(|e| ImageError::io(&blobs, e))?;
    let layout = dir.join("oci-layout");
    write_atomically(&layout, OCI_LAYOUT).map_err(|e| ImageError::io(&layout, e))?;

    for layer in &image.layers {
        copy_blob(&layer.blob, &blobs.join(hex(&layer.digest)), layer.size)?;
    }
    for (digest, bytes) in image.small_blobs() {
        let path = blobs.join(hex(digest));
        if !same_size(&path, bytes.len() as u64) {
            write_atomically(&path, bytes).map_err(|e| ImageError::io(&path, e))?;
        }
    }
    let index = index_with(existing, image, tags);
    let index_path = dir.join("index.json");
    write_atomically(&index_path, &index).map_err(|e| ImageError::io(&index_path, e))?;
    Ok(())
}

/// A fresh `index.json` naming `image` under `tags`.
pub fn index(image: &Image, tags: &[String]) -> Vec<u8> {
    index_with(None, image, tags)
}

fn index_with(existing: Option<Value>, image: &Image, tags: &[String]) -> Vec<u8> {
    let mut manifests: Vec<Value> = existing
        .as_ref()
        .and_then(|index| index["manifests"].as_array().cloned())
        .unwrap_or_default();
    manifests.retain(|m| {
        m["annotations"][REF_NAME]
            .as_str()
            .is_none_or(|name| !tags.iter().any(|t| t == name))
            && !image
                .attachments
                .iter()
                .any(|a| m["digest"].as_str() == Some(&a.manifest_digest))
    });
    for tag in tags {
        manifests.push(json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": image.manifest_digest,
            "size": image.manifest.len(),
            "annotations": { REF_NAME: tag },
        }));
    }
    // Untagged, with their artifactType: referrers, found by their subject.
    manifests.extend(image.attachments.iter().map(|a| a.descriptor()));
    canonical_json(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": manifests,
    }))
}

fn existing_index(dir: &Path) -> Result<Option<Value>, ImageError> {
    let index_path = dir.join("index.json");
    match fs::read(&index_path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| ImageError::Output {
            path: index_path.clone(),
            reason: format!("is not valid JSON ({e}); it is not an OCI layout kiln can add to, choose another folder"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let non_empty = fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
            if non_empty {
                return Err(ImageError::Output {
                    path: dir.to_path_buf(),
                    reason: "exists, is not empty and has no index.json, so it is not an OCI layout; choose an empty or new folder".into(),
                });
            }
            Ok(None)
        }
        Err(e) => Err(ImageError::io(&index_path, e)),
    }
}

fn copy_blob(from: &Path, to: &Path, size: u64) -> Result<(), ImageError> {
    if same_size(to, size) {
        return Ok(());
    }
    let mut temp = AtomicFile::beside(to).map_err(|e| ImageError::io(to, e))?;
    let mut source = File::open(from).map_err(|e| ImageError::io(from, e))?;
    // File to File, io::copy copies in the kernel (copy_file_range), never
    // through memory.
    io::copy(&mut source, temp.as_file_mut()).map_err(|e| ImageError::io(from, e))?;
    temp.commit(to).map_err(|e| ImageError::io(to, e))
}

fn same_size(path: &Path, size: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == size)
}

fn hex(digest: &str) -> PathBuf {
    PathBuf::from(sha256_hex(digest).expect("kiln makes sha256 digests"))
}
