//! Reading the image to push out of an OCI image layout folder
//! (`oci-layout`, `index.json`, `blobs/sha256/`), without loading layers.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::error::RegistryError;
use super::referrers;

/// The annotation that tags a manifest in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Manifests are small; anything bigger is not one.
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// Biggest artifact document (an SBOM) read from a layout.
const MAX_DOCUMENT_BYTES: u64 = 256 << 20;

/// One blob of a layout image: where it is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutBlob {
    /// `sha256:<hex>`.
    pub digest: String,
    /// Size in bytes, as the manifest says and the file has.
    pub size: u64,
    /// Media type from the manifest.
    pub media_type: String,
    /// The blob file.
    pub path: PathBuf,
}

impl From<&crate::layer::Layer> for LayoutBlob {
    /// A packed (or pulled) layer, pushed straight from its blob file.
    fn from(layer: &crate::layer::Layer) -> LayoutBlob {
        LayoutBlob {
            digest: layer.digest.clone(),
            size: layer.size,
            media_type: layer.media_type().to_string(),
            path: layer.blob.clone(),
        }
    }
}

/// A tagged image of an OCI layout, ready to push.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    /// The manifest exactly as stored; pushed byte for byte so its digest holds.
    pub manifest_bytes: Vec<u8>,
    /// Media type of the manifest.
    pub manifest_media_type: String,
    /// `sha256:<hex>` of the manifest.
    pub manifest_digest: String,
    /// The config blob.
    pub config: LayoutBlob,
    /// The layer blobs, in manifest order.
    pub layers: Vec<LayoutBlob>,
}

impl LayoutImage {
    /// Reads the manifest tagged `tag` in the layout at `dir` (or its only
    /// manifest when `tag` is `None`) and checks every blob it names is there
    /// with the right size.
    pub fn open(dir: &Path, tag: Option<&str>) -> Result<LayoutImage, RegistryError> {
        let bad = |reason: String| RegistryError::Layout {
            path: dir.to_path_buf(),
            reason,
        };
        let index_path = dir.join("index.json");
        let index_text = std::fs::read(&index_path).map_err(|e| {
            bad(format!(
                "cannot read index.json ({e}); is this an OCI image layout?"
            ))
        })?;
        let index: ImageIndex = serde_json::from_slice(&index_text)
            .map_err(|e| bad(format!("index.json is not an OCI image index: {e}")))?;
        let descriptor = pick_manifest(index.manifests(), tag).map_err(bad)?;
        let manifest_path = blob_path(dir, descriptor).map_err(bad)?;
        let manifest_bytes = read_small(&manifest_path, descriptor.size(), MAX_MANIFEST_BYTES)
            .map_err(|e| bad(format!("manifest {}: {e}", descriptor.digest())))?;
        let actual = crate::layer::digest::sha256_digest(&manifest_bytes);
        if actual != descriptor.digest().to_string() {
            return Err(bad(format!(
                "manifest {} has digest {actual}; the layout is corrupt",
                descriptor.digest()
            )));
        }
        let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            bad(format!(
                "manifest {} is not an image manifest: {e}",
                descriptor.digest()
            ))
        })?;
        let blob = |d: &Descriptor| -> Result<LayoutBlob, RegistryError> {
            let path = blob_path(dir, d).map_err(bad)?;
            let size = std::fs::metadata(&path)
                .map_err(|e| bad(format!("blob {} is missing ({e})", d.digest())))?
                .len();
            if size != d.size() {
                return Err(bad(format!(
                    "blob {} has {size} bytes, the manifest says {}",
                    d.digest(),
                    d.size()
                )));
            }
            Ok(LayoutBlob {
                digest: d.digest().to_string(),
                size,
                media_type: d.media_type().to_string(),
                path,
            })
        };
        let media_type = manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest)
            .to_string();
        Ok(LayoutImage {
            manifest_media_type: media_type,
            manifest_digest: actual,
            config: blob(manifest.config())?,
            layers: manifest
                .layers()
                .iter()
                .map(blob)
                .collect::<Result<_, _>>()?,
            manifest_bytes,
        })
    }

    /// An image whose manifest is `manifest_bytes` and whose blobs are
    /// already files (kiln's blob cache): pushed as they are, nothing
    /// written out or hashed again.
    pub fn from_blobs(
        manifest_bytes: Vec<u8>,
        manifest_digest: String,
        config: LayoutBlob,
        layers: Vec<LayoutBlob>,
    ) -> LayoutImage {
        LayoutImage {
            manifest_bytes,
            manifest_media_type: MediaType::ImageManifest.to_string(),
            manifest_digest,
            config,
            layers,
        }
    }

    /// Every blob to upload: layers first, then the config.
    pub fn blobs(&self) -> impl Iterator<Item = &LayoutBlob> {
        self.layers.iter().chain(std::iter::once(&self.config))
    }
}

/// The newest document of one of `artifact_types` attached to the image
/// tagged `tag` (or the only image) in the layout at `dir`, checked against the
/// digests that name it.
pub fn layout_referrer(
    dir: &Path,
    tag: Option<&str>,
    artifact_types: &[&str],
) -> Result<Vec<u8>, RegistryError> {
    let read = |name: &str, limit: u64| -> Result<Vec<u8>, String> {
        let path = dir.join(name);
        let size = std::fs::metadata(&path)
            .map_err(|e| format!("cannot read {name} ({e})"))?
            .len();
        read_small(&path, size, limit).map_err(|e| format!("{name}: {e}"))
    };
    referrer_in(&read, tag, artifact_types).map_err(|reason| RegistryError::Layout {
        path: dir.to_path_buf(),
        reason,
    })
}

/// Reads a layout's file by its relative path, at most the limit given.
pub type ReadFile<'a> = &'a dyn Fn(&str, u64) -> Result<Vec<u8>, String>;

/// [`layout_referrer`] for a layout whose files `read` gives by their
/// relative path (`index.json`, `blobs/sha256/<hex>`), at most the limit
/// it is given: a folder, or a tar of one.
pub fn referrer_in(
    read: ReadFile<'_>,
    tag: Option<&str>,
    artifact_types: &[&str],
) -> Result<Vec<u8>, String> {
    let index_bytes = read("index.json", MAX_MANIFEST_BYTES)
        .map_err(|e| format!("{e}; is this an OCI image layout?"))?;
    let index: ImageIndex = serde_json::from_slice(&index_bytes)
        .map_err(|e| format!("index.json is not an OCI image index: {e}"))?;
    let image = pick_manifest(index.manifests(), tag)?;
    let subject = image.digest().to_string();
    let entry = referrers::pick(&index_bytes, artifact_types, &subject)
        .map_err(|reason| format!("index.json {reason}"))?;
    let artifact_type = referrers::entry_type(&entry);
    let manifest = read_blob(read, &entry, MAX_MANIFEST_BYTES)?;
    let content =
        referrers::artifact_content(&manifest, entry.digest().as_ref(), &subject, &artifact_type)?;
    read_blob(read, &content, MAX_DOCUMENT_BYTES)
}

/// The blob `d` names, at most `limit` bytes, checked against its size
/// and digest.
fn read_blob(read: ReadFile<'_>, d: &Descriptor, limit: u64) -> Result<Vec<u8>, String> {
    let name = blob_path(Path::new(""), d)?;
    let bytes = read(&name.to_string_lossy(), limit.min(d.size()))?;
    let actual = crate::layer::digest::sha256_digest(&bytes);
    if bytes.len() as u64 != d.size() || actual != d.digest().to_string() {
        return Err(format!(
            "blob {} has digest {actual} and {} bytes; the layout is corrupt",
            d.digest(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

fn pick_manifest<'a>(
    manifests: &'a [Descriptor],
    tag: Option<&str>,
) -> Result<&'a Descriptor, String> {
    let tag_of = |d: &Descriptor| {
        d.annotations()
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    match tag {
        Some(tag) => manifests
            .iter()
            .find(|d| tag_of(d).as_deref() == Some(tag))
            .ok_or_else(|| {
                let tags: Vec<String> = manifests.iter().filter_map(tag_of).collect();
                format!(
                    "no manifest tagged `{tag}` in index.json (tags: {})",
                    tags.join(", ")
                )
            }),
        // Artifacts (an SBOM) are about an image, not images themselves.
        None => match manifests
            .iter()
            .filter(|d| d.artifact_type().is_none())
            .collect::<Vec<_>>()[..]
        {
            [only] => Ok(only),
            [] => Err("index.json lists no manifest".to_string()),
            ref images => Err(format!(
                "index.json lists {} manifests; name the tag to push",
                images.len()
            )),
        },
    }
}

/// `blobs/<algorithm>/<hex>` for a descriptor, refusing digests that would
/// name a path outside the layout.
fn blob_path(dir: &Path, d: &Descriptor) -> Result<PathBuf, String> {
    let digest = d.digest();
    let hex = digest.digest();
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("descriptor digest `{digest}` is not hexadecimal"));
    }
    if digest.algorithm().as_ref() != "sha256" {
        return Err(format!(
            "digest `{digest}`: only sha256 blobs are supported"
        ));
    }
    Ok(dir.join("blobs/sha256").join(hex))
}

/// The file at `path`, which must have `declared` bytes, at most `limit`.
fn read_small(path: &Path, declared: u64, limit: u64) -> std::io::Result<Vec<u8>> {
    if declared > limit {
        return Err(std::io::Error::other(format!(
            "declared size {declared} is more than the {limit} bytes kiln reads"
        )));
    }
    let bytes = std::fs::read(path)?;
    if bytes.len() as u64 != declared {
        return Err(std::io::Error::other(format!(
            "{} bytes on disk, {declared} declared",
            bytes.len()
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout with one layer and one config, tagged `t`.
    fn layout(dir: &Path) -> (String, Vec<u8>) {
        let blobs = dir.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let put = |data: &[u8]| {
            let digest = crate::layer::digest::sha256_digest(data);
            std::fs::write(blobs.join(&digest[7..]), data).unwrap();
            digest
        };
        let layer = put(b"layer bytes");
        let config_bytes =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config = put(config_bytes);
        let config_size = config_bytes.len();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config}","size":{config_size}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer}","size":11}}]}}"#
        );
        let manifest_digest = put(manifest.as_bytes());
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{manifest_digest}","size":{},"annotations":{{"org.opencontainers.image.ref.name":"t"}}}}]}}"#,
            manifest.len()
        );
        std::fs::write(dir.join("index.json"), &index).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        (manifest_digest, manifest.into_bytes())
    }

    #[test]
    fn opens_a_tagged_image_and_lists_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let (digest, bytes) = layout(dir.path());
        let image = LayoutImage::open(dir.path(), Some("t")).unwrap();
        assert_eq!(image.manifest_digest, digest);
        assert_eq!(image.manifest_bytes, bytes);
        assert_eq!(image.layers.len(), 1);
        assert_eq!(image.layers[0].size, 11);
        assert_eq!(image.blobs().count(), 2);
        assert!(LayoutImage::open(dir.path(), None).is_ok());
    }

    #[test]
    fn unknown_tag_names_the_tags_there_are() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        let err = LayoutImage::open(dir.path(), Some("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`nope`") && err.contains("tags: t"), "{err}");
    }

    #[test]
    fn a_truncated_blob_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        let layer = crate::layer::digest::sha256_digest(b"layer bytes");
        std::fs::write(dir.path().join("blobs/sha256").join(&layer[7..]), b"layer").unwrap();
        let err = LayoutImage::open(dir.path(), Some("t"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has 5 bytes"), "{err}");
    }

    #[test]
    fn hostile_index_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        layout(dir.path());
        for index in [
            "not json",
            r#"{"schemaVersion":2,"manifests":[]}"#,
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../etc/passwd","size":1}]}"#,
        ] {
            std::fs::write(dir.path().join("index.json"), index).unwrap();
            let err = LayoutImage::open(dir.path(), None).unwrap_err().to_string();
            assert!(err.contains(&dir.path().display().to_string()), "{err}");
        }
    }
}
