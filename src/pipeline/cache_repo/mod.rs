//! A build cache in a registry (`--cache-repo`), shared by every machine
//! that builds with it: phase diffs, store path layers and package views
//! as small artifacts tagged by the keys kiln's local caches use (see
//! [`records`]). Looked up when the local cache misses; written after the
//! build, unless read-only.
//!
//! The cache only ever saves work: a record that cannot be read, does not
//! match its blob, or whose blob is gone is ignored with a warning, and a
//! registry that stops answering makes the build carry on without it.
//! Only a cache repository the user must fix (a bad reference, refused
//! credentials, an untrusted certificate) stops the build.

pub mod prune;
pub mod records;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::image::Image;
use crate::layer::{Layer, LayerCache, PackSettings};
use crate::registry::{
    unpack_layers, ArtifactBlob, ArtifactRepo, LayoutBlob, PulledLayer, RegistryConfig,
    RegistryError,
};
use records::{LayerFacts, ProfileEntry, Record, RECORD_MEDIA_TYPE};

use super::build_packages::PackageView;
use super::deliver::{Delivery, Target};
use super::phase_cache::PhaseCache;

/// `--cache-repo` and `--cache-repo-read-only`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheRepoOptions {
    /// `REGISTRY/REPOSITORY` holding the records.
    pub repository: String,
    /// Read records, never write them.
    pub read_only: bool,
}

/// An open registry build cache.
pub struct RemoteCache {
    repo: ArtifactRepo,
    writable: bool,
    settings: PackSettings,
    /// The push destinations, read-only, when every target is a push: a
    /// layer they all hold (or can mount from the cache repository) need
    /// not be on this machine at all.
    destinations: Option<Vec<ArtifactRepo>>,
    /// Tags of the records this build asked the repository for. A build
    /// publishes only what the repository did not give it, so such a
    /// record was absent or unusable and is written without asking again;
    /// any other (a local cache hit) is first checked with one `HEAD`, so
    /// a warm build writes nothing the repository holds.
    looked_up: Mutex<HashSet<String>>,
}

impl RemoteCache {
    /// Connects to the cache repository of `options` (and the push
    /// destinations of `delivery`) with the push's settings. `None`, with
    /// a warning, when the registry cannot be reached.
    pub fn open(
        options: &CacheRepoOptions,
        registry: &RegistryConfig,
        delivery: &Delivery,
        settings: PackSettings,
    ) -> anyhow::Result<Option<RemoteCache>> {
        let repository = &options.repository;
        let repo = match ArtifactRepo::connect(registry, repository, !options.read_only) {
            Ok(repo) => repo,
            Err(err @ RegistryError::Unreachable { .. }) => {
                tracing::warn!("cache repo {repository}: {err}; building without it");
                return Ok(None);
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!(
                    "could not use the cache repo {repository} (--cache-repo, KILN_CACHE_REPO)"
                )))
            }
        };
        let destinations = delivery
            .targets
            .iter()
            .map(|target| match target {
                Target::Push(reference) => ArtifactRepo::connect(registry, reference, false)
                    .map_err(|err| tracing::debug!(%reference, %err, "destination not checked"))
                    .ok(),
                Target::Write(_) => None,
            })
            .collect::<Option<Vec<_>>>()
            .filter(|repos| !repos.is_empty());
        Ok(Some(RemoteCache {
            repo,
            writable: !options.read_only,
            settings,
            destinations,
            looked_up: Mutex::default(),
        }))
    }

    /// Repositories of the cache's registry a push may mount blobs from:
    /// the cache repository itself.
    pub fn mount_sources(&self) -> Vec<String> {
        vec![self.repo.repository().to_string()]
    }

    /// The record of `kind` and `key` and the blobs its artifact names;
    /// `None` when there is none, or it is unusable (with a warning).
    fn record(&self, kind: &str, key: &str) -> Option<(Record, Vec<ArtifactBlob>)> {
        let tag = Record::tag(kind, key);
        self.looked_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(tag.clone());
        let artifact = match self.repo.get(&tag) {
            Ok(found) => found?,
            Err(err) => {
                tracing::warn!("cache repo {}: {err}; not using it", self.repo.name());
                return None;
            }
        };
        match Record::parse(&artifact.config, kind, key) {
            Ok(record) => Some((record, artifact.layers)),
            Err(reason) => {
                tracing::warn!(
                    "cache repo {}: record {tag} ignored: {reason}",
                    self.repo.name()
                );
                None
            }
        }
    }

    /// The package view recorded under `key`.
    pub fn view(&self, key: &str) -> Option<PackageView> {
        let Some((
            Record::Packages {
                bin_dirs,
                bash,
                base,
                profile,
                ..
            },
            _,
        )) = self.record("packages", key)
        else {
            return None;
        };
        let entries: Vec<(String, Option<String>)> =
            profile.into_iter().map(|e| (e.name, e.target)).collect();
        Some(PackageView {
            bin_dirs,
            bash,
            base,
            profile: PackageView::profile_from(&entries),
        })
    }

    /// The diff of phase `name` recorded under `key`: downloaded, checked
    /// against the record, unpacked into `work` and moved into the local
    /// phase cache (its layer into the layer cache). `None`, saying why,
    /// when the record is missing or unusable: the phase runs.
    pub fn phase(
        &self,
        key: &str,
        name: &str,
        phases: &PhaseCache,
        layers: &LayerCache,
        work: &Path,
    ) -> Option<PathBuf> {
        let (Record::Phase { layer: facts, .. }, blobs) = self.record("phase", key)? else {
            return None;
        };
        let ignored = |why: String| {
            tracing::warn!(
                "phase {name}: the cache repo's record {} is not used ({why}); running the phase",
                Record::tag("phase", key)
            );
        };
        let Some(blob) = matching_blob(&facts, &blobs) else {
            ignored("it does not match its blob".into());
            return None;
        };
        let path = match self.repo.fetch_blob(blob, layers.blobs_dir()) {
            Ok(path) => path,
            Err(err) => {
                ignored(format!("its blob could not be fetched: {err}"));
                return None;
            }
        };
        let dir = work.join(format!("cache-repo-{}", &key[..12]));
        let pulled = PulledLayer {
            digest: facts.digest.clone(),
            diff_id: facts.diff_id.clone(),
            media_type: blob.media_type.clone(),
            size: facts.size,
            path: path.clone(),
        };
        let unpacked = unpack_layers(&[pulled], &dir)
            .map_err(|err| err.to_string())
            .and_then(|_| {
                layers
                    .folder_diff_id(&dir, &self.settings)
                    .map_err(|err| err.to_string())
            });
        match unpacked {
            Ok(diff_id) if diff_id == facts.diff_id => {}
            Ok(diff_id) => {
                ignored(format!(
                    "its diff unpacks to {diff_id}, not the recorded {}",
                    facts.diff_id
                ));
                let _ = kiln_store::nar::remove_tree(&dir);
                return None;
            }
            Err(err) => {
                ignored(format!("its diff could not be unpacked: {err}"));
                let _ = kiln_store::nar::remove_tree(&dir);
                return None;
            }
        }
        if facts.format == self.settings.compression.format {
            let layer = layer_of(&facts, path, format!("phase {name}"));
            let key = layers.tree_key(&facts.diff_id, &self.settings);
            if let Err(err) = layers.adopt(&key, &layer) {
                tracing::debug!(%err, "phase layer not recorded");
            }
        }
        match phases.record(key, name, &dir) {
            Ok(upper) => Some(upper),
            Err(err) => {
                ignored(format!("its diff could not be kept: {err:#}"));
                None
            }
        }
    }

    /// The layer (of store paths, or generated files) recorded under the
    /// layer cache key `key`, described as `description`: its blob stays
    /// in the registry when every push destination has it or can mount
    /// it, else it is downloaded into `layers` (and recorded there).
    pub fn layer(&self, key: &str, description: &str, layers: &LayerCache) -> Option<Layer> {
        let (Record::Layer { layer: facts, .. }, blobs) = self.record("layer", key)? else {
            return None;
        };
        let Some(blob) = matching_blob(&facts, &blobs) else {
            tracing::warn!(
                "{description}: the cache repo's record {} does not match its blob; packing it",
                Record::tag("layer", key)
            );
            return None;
        };
        let path = layers.blob_path(&facts.digest)?;
        let layer = layer_of(&facts, path, description.to_string());
        if self.destinations_have(&facts.digest) {
            return Some(layer);
        }
        match self.repo.fetch_blob(blob, layers.blobs_dir()) {
            Ok(_) => {
                if let Err(err) = layers.adopt(key, &layer) {
                    tracing::debug!(%err, "layer not recorded");
                }
                Some(layer)
            }
            Err(err) => {
                tracing::warn!("{description}: its blob in the cache repo could not be fetched ({err}); packing it");
                None
            }
        }
    }

    /// Whether every push destination holds `digest`, or can mount it from
    /// the cache repository.
    fn destinations_have(&self, digest: &str) -> bool {
        let Some(destinations) = &self.destinations else {
            return false;
        };
        let mut in_cache_repo = None;
        destinations.iter().all(|destination| {
            if destination.has_blob(digest).unwrap_or(false) {
                return true;
            }
            destination.registry() == self.repo.registry()
                && *in_cache_repo.get_or_insert_with(|| self.repo.has_blob(digest).unwrap_or(false))
        })
    }

    /// Records what this build made that the cache repository did not
    /// give it: the package view, each phase's diff, each store path and
    /// generated layer (see [`Published`]), but none the repository holds
    /// already. Each record's manifest says when it was written, for
    /// `kiln cache prune --cache-repo`. Failures are warnings: the image
    /// is built.
    pub fn publish(&self, work: &Published<'_>, image: &Image, layers: &LayerCache) {
        if !self.writable {
            return;
        }
        let mount_from: Vec<String> = self
            .destinations
            .iter()
            .flatten()
            .filter(|d| d.registry() == self.repo.registry())
            .map(|d| d.repository().to_string())
            .collect();
        let looked_up = self
            .looked_up
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        let put = |record: Record, blob: Option<&Layer>| {
            let tag = Record::tag(record.kind(), record.key());
            if !looked_up.contains(&tag) && self.repo.has(&tag).unwrap_or(false) {
                tracing::debug!(%tag, "the cache repo holds this record already");
                return;
            }
            let result = layers
                .put_blob(&record.to_bytes())
                .map_err(anyhow::Error::new)
                .and_then(|config| {
                    let blobs = blob.map(LayoutBlob::from).into_iter().collect();
                    self.repo
                        .put(
                            &tag,
                            RECORD_MEDIA_TYPE,
                            &config,
                            blobs,
                            &mount_from,
                            SystemTime::now(),
                        )
                        .map_err(anyhow::Error::new)
                });
            if let Err(err) = result {
                tracing::warn!(
                    "cache repo {}: record {tag} not written: {err:#}",
                    self.repo.name()
                );
            }
        };
        if let Some((key, view)) = work.view {
            match view.profile_entries() {
                Some(entries) => put(
                    Record::Packages {
                        key: key.to_string(),
                        bin_dirs: view.bin_dirs.clone(),
                        bash: view.bash.clone(),
                        base: view.base.clone(),
                        profile: entries
                            .into_iter()
                            .map(|(name, target)| ProfileEntry { name, target })
                            .collect(),
                    },
                    None,
                ),
                None => tracing::debug!("profile names are not UTF-8; package view not recorded"),
            }
        }
        for (name, key) in work.phases {
            let description = format!("phase {name}");
            let Some(layer) = image.layers.iter().find(|l| l.description == description) else {
                continue;
            };
            put(
                Record::Phase {
                    key: key.clone(),
                    phase: name.clone(),
                    layer: LayerFacts::from(layer),
                },
                Some(layer),
            );
        }
        for (key, layer) in work.store_layers {
            put(
                Record::Layer {
                    key: key.clone(),
                    layer: LayerFacts::from(layer),
                },
                Some(layer),
            );
        }
    }
}

/// What a build made that the cache repository lacks.
pub struct Published<'a> {
    /// The package view and its key, when it was read from the files.
    pub view: Option<(&'a str, &'a PackageView)>,
    /// Phases that ran or came from the local phase cache: name, key.
    pub phases: &'a [(String, String)],
    /// Store path and generated layers packed or found locally: key,
    /// layer.
    pub store_layers: &'a [(String, Layer)],
}

/// The artifact's blob, when it is exactly the one the record describes.
fn matching_blob<'a>(facts: &LayerFacts, blobs: &'a [ArtifactBlob]) -> Option<&'a ArtifactBlob> {
    match blobs {
        [blob] if blob.digest == facts.digest && blob.size == facts.size => Some(blob),
        _ => None,
    }
}

fn layer_of(facts: &LayerFacts, blob: PathBuf, description: String) -> Layer {
    Layer {
        digest: facts.digest.clone(),
        diff_id: facts.diff_id.clone(),
        size: facts.size,
        uncompressed_size: facts.uncompressed_size,
        format: facts.format,
        blob,
        description,
    }
}
