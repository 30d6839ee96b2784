//! Images: the OCI image config and manifest built from a list of layers,
//! and writers for each output transport.
//!
//! [`ImageBuilder`] is what the build and `kiln pack` call: give it the
//! layers in order plus the runtime config, get an [`Image`] (config and
//! manifest bytes with their digests, and the layers). [`write`] puts it
//! where a [`Destination`] says: `oci:DIR[:TAG]` ([`oci_layout`]),
//! `oci-archive:FILE[:TAG]` ([`oci_archive`]) or
//! `docker-archive:FILE[:NAME:TAG]` ([`docker_archive`]). Layer blobs are
//! streamed from the layer cache, never held in memory.

mod archive;
mod destination;
pub mod docker_archive;
pub mod oci_archive;
pub mod oci_layout;
pub mod referrer;

use std::collections::BTreeMap;
use std::path::PathBuf;

use oci_spec::image::{
    Arch, Config, ConfigBuilder, DescriptorBuilder, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageManifest, ImageManifestBuilder, MediaType, Os, RootFsBuilder,
};
use serde_json::Value;

use crate::layer::digest::sha256_digest;
use crate::layer::{Layer, LayerError};

pub use destination::{Destination, DestinationError};
pub use referrer::Attachment;

/// Folder the start command runs in, as in Nixpacks images.
pub const WORKING_DIR: &str = "/app";

/// The login shell Nixpacks images start their command with.
pub const LOGIN_SHELL: [&str; 3] = ["/bin/bash", "-l", "-c"];

/// The manifest annotation holding the creation time.
const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";

/// An image ready to write: config and manifest bytes and the layers.
#[derive(Debug, Clone)]
pub struct Image {
    /// The image config JSON.
    pub config: Vec<u8>,
    /// `sha256:<hex>` of `config`.
    pub config_digest: String,
    /// The image manifest JSON.
    pub manifest: Vec<u8>,
    /// `sha256:<hex>` of `manifest`: the image's digest.
    pub manifest_digest: String,
    /// The layers, first to last.
    pub layers: Vec<Layer>,
    /// `SOURCE_DATE_EPOCH` the image was made with, for archive mtimes.
    pub source_date_epoch: u64,
    /// Artifacts about the image (its SBOM), written and pushed beside it.
    pub attachments: Vec<Attachment>,
}

impl Image {
    /// Sum of the compressed layer sizes.
    pub fn compressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Sum of the layers' tar sizes.
    pub fn uncompressed_size(&self) -> u64 {
        self.layers.iter().map(|l| l.uncompressed_size).sum()
    }

    /// Every blob held in memory, as `(digest, bytes)`: the config and
    /// manifest, then each attachment's manifest and blobs.
    pub fn small_blobs(&self) -> Vec<(&str, &[u8])> {
        let mut blobs: Vec<(&str, &[u8])> = vec![
            (&self.config_digest, &self.config),
            (&self.manifest_digest, &self.manifest),
        ];
        for attachment in &self.attachments {
            blobs.push((&attachment.manifest_digest, &attachment.manifest));
            blobs.extend(
                attachment
                    .blobs
                    .iter()
                    .map(|b| (b.digest.as_str(), b.bytes.as_slice())),
            );
        }
        blobs
    }
}

/// Builds an [`Image`] from layers and runtime settings.
#[derive(Debug, Clone)]
pub struct ImageBuilder {
    layers: Vec<Layer>,
    env: Vec<(String, String)>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: String,
    user: Option<String>,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
    source_date_epoch: u64,
}

/// Why an image could not be made or written.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// `SOURCE_DATE_EPOCH` is outside the range a date can show.
    #[error("SOURCE_DATE_EPOCH={0} is not a representable date")]
    BadEpoch(u64),
    /// oci-spec refused a value.
    #[error("building the image {what} failed: {source}")]
    Spec {
        /// config, manifest, ...
        what: &'static str,
        /// The error.
        source: oci_spec::OciSpecError,
    },
    /// Reading a layer or writing the output failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The output exists and is not something kiln may write into.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The output path.
        path: PathBuf,
        /// What is wrong and what to do.
        reason: String,
    },
}

impl ImageError {
    /// Reading or writing `path` failed.
    fn io(path: &std::path::Path, source: std::io::Error) -> ImageError {
        ImageError::Layer(LayerError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl ImageBuilder {
    /// An empty image created at `source_date_epoch`, working in `/app`.
    pub fn new(source_date_epoch: u64) -> ImageBuilder {
        ImageBuilder {
            layers: Vec::new(),
            env: Vec::new(),
            entrypoint: None,
            cmd: None,
            working_dir: WORKING_DIR.to_string(),
            user: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            source_date_epoch,
        }
    }

    /// Starts from a base image's runtime settings, as a Dockerfile's
    /// `FROM` does: its environment, labels, user, and entrypoint and
    /// command. Later calls override them; the working folder stays `/app`.
    pub fn inherit(mut self, base: &oci_spec::image::Config) -> Self {
        for pair in base.env().iter().flatten() {
            if let Some((key, value)) = pair.split_once('=') {
                self = self.env(key, value);
            }
        }
        for (key, value) in base.labels().iter().flatten() {
            self = self.label(key, value);
        }
        self.user = base.user().clone().filter(|u| !u.is_empty());
        self.entrypoint = base.entrypoint().clone();
        self.cmd = base.cmd().clone();
        self
    }

    /// Appends layers, bottom first.
    pub fn layers(mut self, layers: impl IntoIterator<Item = Layer>) -> Self {
        self.layers.extend(layers);
        self
    }

    /// Sets an environment variable; a later value for a key replaces the
    /// earlier one in place.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        match self.env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => self.env.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// The entrypoint, exec form.
    pub fn entrypoint(mut self, entrypoint: Vec<String>) -> Self {
        self.entrypoint = Some(entrypoint);
        self
    }

    /// The command, exec form.
    pub fn cmd(mut self, cmd: Vec<String>) -> Self {
        self.cmd = Some(cmd);
        self
    }

    /// Starts `command` the way Nixpacks images do: entrypoint
    /// `/bin/bash -l -c`, the command as the one argument.
    pub fn start_command(self, command: &str) -> Self {
        self.entrypoint(LOGIN_SHELL.iter().map(|s| s.to_string()).collect())
            .cmd(vec![command.to_string()])
    }

    /// The working folder (default `/app`).
    pub fn working_dir(mut self, dir: &str) -> Self {
        self.working_dir = dir.to_string();
        self
    }

    /// The user the command runs as (`name`, `uid`, `uid:gid`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_string());
        self
    }

    /// A config label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_string(), value.to_string());
        self
    }

    /// A manifest annotation (`org.opencontainers.image.source`, ...).
    pub fn annotation(mut self, key: &str, value: &str) -> Self {
        self.annotations.insert(key.to_string(), value.to_string());
        self
    }

    /// The config and manifest, serialized deterministically.
    pub fn build(self) -> Result<Image, ImageError> {
        let created = rfc3339(self.source_date_epoch)?;
        let config = canonical_json(&self.image_config(&created)?);
        let config_digest = sha256_digest(&config);
        let manifest = canonical_json(&self.manifest(&config, &config_digest, created)?);
        let manifest_digest = sha256_digest(&manifest);
        Ok(Image {
            config,
            config_digest,
            manifest,
            manifest_digest,
            layers: self.layers,
            source_date_epoch: self.source_date_epoch,
            attachments: Vec::new(),
        })
    }

    /// The image config: runtime settings, one history entry and one diffID
    /// per layer.
    fn image_config(&self, created: &str) -> Result<ImageConfiguration, ImageError> {
        let config = self.runtime_config()?;
        let history = self
            .layers
            .iter()
            .map(|layer| {
                HistoryBuilder::default()
                    .created(created.to_string())
                    .created_by(format!("kiln: {}", layer.description))
                    .build()
                    .map_err(spec("history"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rootfs = RootFsBuilder::default()
            .typ("layers")
            .diff_ids(
                self.layers
                    .iter()
                    .map(|l| l.diff_id.clone())
                    .collect::<Vec<_>>(),
            )
            .build()
            .map_err(spec("rootfs"))?;
        ImageConfigurationBuilder::default()
            .created(created.to_string())
            .architecture(Arch::default())
            .os(Os::Linux)
            .config(config)
            .rootfs(rootfs)
            .history(history)
            .build()
            .map_err(spec("config"))
    }

    /// What the container runs and how: environment, entrypoint, command,
    /// working folder, user and labels.
    fn runtime_config(&self) -> Result<Config, ImageError> {
        let mut config = ConfigBuilder::default()
            .env(
                self.env
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>(),
            )
            .working_dir(self.working_dir.clone());
        if let Some(entrypoint) = &self.entrypoint {
            config = config.entrypoint(entrypoint.clone());
        }
        if let Some(cmd) = &self.cmd {
            config = config.cmd(cmd.clone());
        }
        if let Some(user) = &self.user {
            config = config.user(user.clone());
        }
        if !self.labels.is_empty() {
            config = config.labels(
                self.labels
                    .clone()
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            );
        }
        config.build().map_err(spec("config"))
    }

    /// The manifest naming the config (`config` bytes with `config_digest`)
    /// and the layers, annotated with the creation time unless an
    /// annotation already says it.
    fn manifest(
        &self,
        config: &[u8],
        config_digest: &str,
        created: String,
    ) -> Result<ImageManifest, ImageError> {
        let config_descriptor = DescriptorBuilder::default()
            .media_type(MediaType::ImageConfig)
            .digest(parse_digest(config_digest))
            .size(config.len() as u64)
            .build()
            .map_err(spec("config descriptor"))?;
        let layer_descriptors = self
            .layers
            .iter()
            .map(|layer| {
                DescriptorBuilder::default()
                    .media_type(MediaType::from(layer.media_type()))
                    .digest(parse_digest(&layer.digest))
                    .size(layer.size)
                    .build()
                    .map_err(spec("layer descriptor"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut annotations = self.annotations.clone();
        annotations
            .entry(CREATED_ANNOTATION.to_string())
            .or_insert(created);
        ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_descriptor)
            .layers(layer_descriptors)
            .annotations(
                annotations
                    .into_iter()
                    .collect::<std::collections::HashMap<_, _>>(),
            )
            .build()
            .map_err(spec("manifest"))
    }
}

/// Turns an oci-spec builder error into an [`ImageError`] naming `what`
/// was being built.
fn spec(what: &'static str) -> impl Fn(oci_spec::OciSpecError) -> ImageError {
    move |source| ImageError::Spec { what, source }
}

/// Writes `image` to `destination`, tagged with the destination's tag and
/// `extra_tags`.
pub fn write(
    image: &Image,
    destination: &Destination,
    extra_tags: &[String],
) -> Result<(), ImageError> {
    match destination {
        Destination::OciLayout { dir, tag } => {
            oci_layout::write(image, dir, &tags(tag.as_deref(), extra_tags))
        }
        Destination::OciArchive { file, tag } => {
            oci_archive::write(image, file, &tags(tag.as_deref(), extra_tags))
        }
        Destination::DockerArchive { file, reference } => {
            docker_archive::write(image, file, reference.as_deref())
        }
    }
}

fn tags(tag: Option<&str>, extra: &[String]) -> Vec<String> {
    let mut tags: Vec<String> = tag.into_iter().map(str::to_string).collect();
    tags.extend(extra.iter().cloned());
    if tags.is_empty() {
        tags.push("latest".to_string());
    }
    tags.dedup();
    tags
}

fn parse_digest(digest: &str) -> oci_spec::image::Digest {
    digest
        .parse()
        .expect("kiln makes well-formed sha256 digests")
}

/// `epoch` as an RFC 3339 date (`1970-01-01T00:00:01Z`), as image configs
/// and SBOMs write their creation time.
pub fn rfc3339(epoch: u64) -> Result<String, ImageError> {
    let seconds = i64::try_from(epoch).map_err(|_| ImageError::BadEpoch(epoch))?;
    time::OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .ok_or(ImageError::BadEpoch(epoch))
}

/// JSON with object keys sorted and no whitespace, so the same value always
/// gives the same bytes (oci-spec keeps labels and annotations in hash maps).
pub fn canonical_json(value: &impl serde::Serialize) -> Vec<u8> {
    let value = serde_json::to_value(value).expect("image JSON serializes");
    serde_json::to_vec(&sorted(value)).expect("JSON values serialize")
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Format;

    fn layer(n: u8) -> Layer {
        Layer {
            digest: sha256_digest(&[n]),
            diff_id: sha256_digest(&[n, n]),
            size: 10 + n as u64,
            uncompressed_size: 1024,
            format: Format::Gzip,
            blob: PathBuf::from("/nonexistent"),
            description: format!("layer {n}"),
        }
    }

    fn image(epoch: u64) -> Image {
        ImageBuilder::new(epoch)
            .layers([layer(1), layer(2)])
            .env("PATH", "/bin")
            .env("A", "1")
            .env("PATH", "/usr/bin:/bin")
            .start_command("node server.js")
            .label("b", "2")
            .label("a", "1")
            .annotation("org.opencontainers.image.revision", "abc")
            .build()
            .unwrap()
    }

    #[test]
    fn config_says_what_nixpacks_images_say() {
        let image = image(1);
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["created"], "1970-01-01T00:00:01Z");
        assert_eq!(config["os"], "linux");
        assert_eq!(
            config["config"]["Env"],
            serde_json::json!(["PATH=/usr/bin:/bin", "A=1"])
        );
        assert_eq!(config["config"]["WorkingDir"], "/app");
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/bin/bash", "-l", "-c"])
        );
        assert_eq!(
            config["config"]["Cmd"],
            serde_json::json!(["node server.js"])
        );
        assert_eq!(config["rootfs"]["diff_ids"][1], layer(2).diff_id);
        assert_eq!(config["history"][0]["created_by"], "kiln: layer 1");
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], image.config_digest);
        assert_eq!(
            manifest["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
        assert_eq!(
            manifest["annotations"][CREATED_ANNOTATION],
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(sha256_digest(&image.manifest), image.manifest_digest);
    }

    #[test]
    fn same_input_same_digest_other_epoch_other_digest() {
        let digests: Vec<String> = (0..5).map(|_| image(1).manifest_digest).collect();
        assert!(digests.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(image(2).manifest_digest, digests[0]);
    }

    #[test]
    fn canonical_json_sorts_keys() {
        let value = serde_json::json!({"b": {"z": 1, "a": [{"y": 1, "x": 2}]}, "a": 0});
        assert_eq!(
            canonical_json(&value),
            br#"{"a":0,"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }

    #[test]
    fn default_tag_is_latest() {
        assert_eq!(tags(None, &[]), ["latest"]);
        assert_eq!(tags(Some("v1"), &["v2".into()]), ["v1", "v2"]);
    }
}
