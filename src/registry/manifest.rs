//! Manifests and indexes from a registry: outside data, checked before use.
//! Both Docker schema 2 and OCI media types are accepted.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

/// OCI image manifest.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every manifest media type kiln asks a registry for.
pub(crate) const ACCEPTED: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

const LAYER_TYPES: [&str; 4] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];

/// A platform to pick from an index, like `linux/amd64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`.
    pub os: String,
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `v8` for arm64 and the like, when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// The platform of the machine kiln runs on (kiln builds only for it).
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: architecture.to_string(),
            variant: None,
        }
    }

    fn matches(&self, descriptor: &Descriptor) -> bool {
        let Some(p) = descriptor.platform() else {
            return false;
        };
        p.os().to_string() == self.os
            && p.architecture().to_string() == self.architecture
            && (self.variant.is_none() || p.variant().as_deref() == self.variant.as_deref())
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A manifest document as a registry sent it.
#[derive(Debug, Clone)]
pub(crate) enum ManifestDocument {
    /// A single-platform image manifest.
    Image(Box<ImageManifest>),
    /// An index (manifest list) of per-platform manifests.
    Index(Box<ImageIndex>),
}

/// Parses `bytes` as a manifest or index, refusing other schema versions and
/// media types.
pub(crate) fn parse(bytes: &[u8]) -> Result<ManifestDocument, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Head {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let head: Head =
        serde_json::from_slice(bytes).map_err(|e| format!("the manifest is not JSON ({e})"))?;
    if head.schema_version != Some(2) {
        return Err(format!(
            "manifest schema version {} is not supported (only 2)",
            head.schema_version
                .map_or("missing".to_string(), |v| v.to_string())
        ));
    }
    let is_index = match head.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => {
            return Err(format!(
                "media type `{other}` is not an image manifest or index"
            ))
        }
        None => head.manifests.is_some(),
    };
    if is_index {
        serde_json::from_slice(bytes)
            .map(|index| ManifestDocument::Index(Box::new(index)))
            .map_err(|e| format!("the image index is malformed ({e})"))
    } else {
        let manifest: ImageManifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("the image manifest is malformed ({e})"))?;
        check_image(&manifest)?;
        Ok(ManifestDocument::Image(Box::new(manifest)))
    }
}

/// The entry of `index` for `platform`.
pub(crate) fn select<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
) -> Result<&'a Descriptor, String> {
    index
        .manifests()
        .iter()
        .find(|d| platform.matches(d))
        .ok_or_else(|| {
            let offered: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            format!(
                "the image has no {platform} variant (it offers: {})",
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            )
        })
}

/// The checks a pull makes of a manifest or index before it downloads
/// anything, as one call: `bytes` parsed and checked, and for an index the
/// entry for `platform` picked, by the same code a pull runs. The
/// error is the reason a pull would give. Public for the fuzz targets in
/// `tests/fuzz`, which feed it registry bytes no registry would send.
pub fn check_manifest(bytes: &[u8], platform: &Platform) -> Result<(), String> {
    match parse(bytes)? {
        ManifestDocument::Image(_) => Ok(()),
        ManifestDocument::Index(index) => select(&index, platform).map(drop),
    }
}

/// Parses `bytes` as the image config of a manifest with `layers` layers:
/// it must list one diff ID per layer. The error is the reason a pull gives.
pub fn parse_image_config(bytes: &[u8], layers: usize) -> Result<ImageConfiguration, String> {
    let config: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| format!("is malformed ({e})"))?;
    let diff_ids = config.rootfs().diff_ids().len();
    if diff_ids != layers {
        return Err(format!(
            "lists {diff_ids} diff IDs but the manifest has {layers} layers"
        ));
    }
    Ok(config)
}

/// Config and layer media types kiln can use as a base.
fn check_image(manifest: &ImageManifest) -> Result<(), String> {
    let config_type = manifest.config().media_type().to_string();
    if !CONFIG_TYPES.contains(&config_type.as_str()) {
        return Err(format!(
            "config media type `{config_type}` is not an image config (is this an artifact, not an image?)"
        ));
    }
    for layer in manifest.layers() {
        let media_type = layer.media_type().to_string();
        if !LAYER_TYPES.contains(&media_type.as_str()) {
            return Err(format!(
                "layer {} has media type `{media_type}`, which kiln cannot unpack",
                layer.digest()
            ));
        }
        if layer.digest().algorithm().as_ref() != "sha256" {
            return Err(format!(
                "layer digest {}: only sha256 is supported",
                layer.digest()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn manifest(media_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{media_type}","config":{{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"{D}","size":3}},"layers":[{{"mediaType":"{layer_type}","digest":"{D}","size":3}}]}}"#
        )
    }

    fn index(entries: &[(&str, &str)]) -> String {
        let entries: Vec<String> = entries
            .iter()
            .map(|(os, arch)| {
                format!(
                    r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":3,"platform":{{"os":"{os}","architecture":"{arch}"}}}}"#
                )
            })
            .collect();
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_LIST}","manifests":[{}]}}"#,
            entries.join(",")
        )
    }

    #[test]
    fn docker_schema_2_and_oci_manifests_are_accepted() {
        for (mt, lt) in [
            (
                DOCKER_MANIFEST,
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar+zstd"),
        ] {
            assert!(matches!(
                parse(manifest(mt, lt).as_bytes()),
                Ok(ManifestDocument::Image(_))
            ));
        }
    }

    #[test]
    fn an_index_resolves_to_the_platform_entry() {
        let doc = parse(index(&[("linux", "arm64"), ("linux", "amd64")]).as_bytes()).unwrap();
        let ManifestDocument::Index(index) = doc else {
            panic!("not an index")
        };
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let entry = select(&index, &amd64).unwrap();
        assert_eq!(
            entry
                .platform()
                .as_ref()
                .unwrap()
                .architecture()
                .to_string(),
            "amd64"
        );
    }

    #[test]
    fn an_index_without_the_platform_says_what_it_offers() {
        let ManifestDocument::Index(index) =
            parse(index(&[("linux", "arm64")]).as_bytes()).unwrap()
        else {
            panic!("not an index")
        };
        let err = select(&index, &Platform::host()).unwrap_err();
        assert!(err.contains("linux/arm64"), "{err}");
    }

    #[test]
    fn hostile_documents_are_refused_with_a_reason() {
        let cases = [
            ("{", "not JSON"),
            ("[]", "not JSON"),
            (r#"{"schemaVersion":1,"name":"x"}"#, "schema version 1"),
            (r#"{"mediaType":"x"}"#, "schema version missing"),
            (
                &manifest("application/vnd.oci.artifact.manifest.v1+json", "x"),
                "not an image manifest",
            ),
            (
                &manifest(
                    OCI_MANIFEST,
                    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                ),
                "cannot unpack",
            ),
            (
                &manifest(OCI_MANIFEST, "application/vnd.oci.image.layer.v1.tar")
                    .replace(D, "sha256:zz"),
                "malformed",
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{}}"#,
                "malformed",
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":7}"#,
                "malformed",
            ),
        ];
        for (text, expected) in cases {
            let err = parse(text.as_bytes()).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn check_manifest_answers_as_a_pull_would() {
        let amd64 = Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        };
        let image = manifest(OCI_MANIFEST, LAYER_TYPES[1]);
        assert_eq!(check_manifest(image.as_bytes(), &amd64), Ok(()));
        let both = index(&[("linux", "arm64"), ("linux", "amd64")]);
        assert_eq!(check_manifest(both.as_bytes(), &amd64), Ok(()));
        let err = check_manifest(index(&[("linux", "arm64")]).as_bytes(), &amd64).unwrap_err();
        assert!(err.contains("no linux/amd64 variant"), "{err}");
    }

    #[test]
    fn an_image_config_needs_one_diff_id_per_layer() {
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let parsed = parse_image_config(config.as_bytes(), 1).unwrap();
        assert_eq!(parsed.rootfs().diff_ids(), &[D.to_string()]);
        let err = parse_image_config(config.as_bytes(), 2).unwrap_err();
        assert_eq!(err, "lists 1 diff IDs but the manifest has 2 layers");
        let err = parse_image_config(b"{\"rootfs\":7}", 0).unwrap_err();
        assert!(err.starts_with("is malformed"), "{err}");
    }

    /// Bounded fuzz target: a registry's manifest or index is outside data,
    /// so arbitrary text and a valid manifest or index with a few bytes
    /// changed must parse or give a reason, never panic; a parsed index
    /// must also answer `select` without panicking.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use kiln_harness::mutate::mutated;

        fn parse_and_select(bytes: &[u8]) {
            if let Ok(ManifestDocument::Index(index)) = parse(bytes) {
                let _ = select(&index, &Platform::host());
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_text_never_panics(text in any::<String>()) {
                parse_and_select(text.as_bytes());
            }

            #[test]
            fn mutated_manifests_never_panic(
                bytes in mutated(manifest(OCI_MANIFEST, LAYER_TYPES[0]).into_bytes())
            ) {
                parse_and_select(&bytes);
            }

            #[test]
            fn mutated_indexes_never_panic(
                bytes in mutated(
                    index(&[("linux", "amd64"), ("linux", "arm64"), ("windows", "amd64")])
                        .into_bytes()
                )
            ) {
                parse_and_select(&bytes);
            }
        }

        #[test]
        fn the_seeds_parse() {
            assert!(matches!(
                parse(manifest(OCI_MANIFEST, LAYER_TYPES[0]).as_bytes()),
                Ok(ManifestDocument::Image(_))
            ));
            assert!(matches!(
                parse(index(&[("linux", "amd64")]).as_bytes()),
                Ok(ManifestDocument::Index(_))
            ));
        }
    }
}
