//! OCI 1.1 artifacts that refer to an image: an SBOM (or any document
//! about the image) in a manifest whose `subject` is the image's manifest,
//! so tools find it through the referrers API or the layout's index,
//! and the image's own digest does not change.

use serde_json::json;

use super::{canonical_json, rfc3339, Image, ImageError, CREATED_ANNOTATION};
use crate::layer::digest::sha256_digest;

/// Media type of an image manifest, which artifacts are too (OCI 1.1).
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// The config media type OCI 1.1 gives artifacts that have no config.
pub const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";

/// The empty config's bytes, `{}`.
pub const EMPTY_CONFIG: &[u8] = b"{}";

/// An artifact attached to an image.
#[derive(Debug, Clone)]
pub struct Attachment {
    /// What it is (`application/spdx+json`).
    pub artifact_type: String,
    /// Its manifest JSON.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`.
    pub manifest_digest: String,
    /// Its blobs: the empty config, then the document.
    pub blobs: Vec<AttachedBlob>,
    /// The manifest's annotations, which referrers indexes repeat.
    pub annotations: serde_json::Value,
}

/// One blob of an [`Attachment`], small enough to keep in memory.
#[derive(Debug, Clone)]
pub struct AttachedBlob {
    /// `sha256:<hex>` of `bytes`.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The content.
    pub bytes: Vec<u8>,
}

impl AttachedBlob {
    fn new(media_type: &str, bytes: Vec<u8>) -> AttachedBlob {
        AttachedBlob {
            digest: sha256_digest(&bytes),
            media_type: media_type.to_string(),
            bytes,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

impl Attachment {
    /// `document` (of media type `artifact_type`) as an artifact whose
    /// subject is `image`, created when the image was.
    pub fn new(
        image: &Image,
        artifact_type: &str,
        document: Vec<u8>,
    ) -> Result<Attachment, ImageError> {
        let config = AttachedBlob::new(EMPTY_MEDIA_TYPE, EMPTY_CONFIG.to_vec());
        let content = AttachedBlob::new(artifact_type, document);
        let annotations = json!({ CREATED_ANNOTATION: rfc3339(image.source_date_epoch)? });
        let manifest = canonical_json(&json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_MEDIA_TYPE,
            "artifactType": artifact_type,
            "config": config.descriptor(),
            "layers": [content.descriptor()],
            "subject": {
                "mediaType": MANIFEST_MEDIA_TYPE,
                "digest": image.manifest_digest,
                "size": image.manifest.len(),
            },
            "annotations": annotations,
        }));
        Ok(Attachment {
            artifact_type: artifact_type.to_string(),
            manifest_digest: sha256_digest(&manifest),
            manifest,
            blobs: vec![config, content],
            annotations,
        })
    }

    /// The descriptor an index lists this artifact by: with its
    /// `artifactType` and annotations, as the referrers API answers.
    pub fn descriptor(&self) -> serde_json::Value {
        json!({
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": self.manifest_digest,
            "size": self.manifest.len(),
            "artifactType": self.artifact_type,
            "annotations": self.annotations,
        })
    }

    /// The document the artifact carries.
    pub fn document(&self) -> &[u8] {
        &self.blobs[1].bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageBuilder;

    #[test]
    fn refers_to_the_image_and_leaves_its_digest_alone() {
        let image = ImageBuilder::new(1).build().unwrap();
        let before = image.manifest_digest.clone();
        let attachment = Attachment::new(&image, "application/spdx+json", b"{}".to_vec()).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&attachment.manifest).unwrap();
        assert_eq!(manifest["subject"]["digest"], before);
        assert_eq!(manifest["subject"]["size"], image.manifest.len());
        assert_eq!(manifest["config"]["mediaType"], EMPTY_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["mediaType"], "application/spdx+json");
        assert_eq!(
            attachment.manifest_digest,
            sha256_digest(&attachment.manifest)
        );
        assert_eq!(image.manifest_digest, before);
    }
}
