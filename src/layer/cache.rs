//! The layer cache: blobs in `blobs/sha256/`, index entries in
//! `layers/<key>.json`. A cached layer is never re-tarred or recompressed.
//!
//! Keys: for store paths, their names (store paths never change) and the
//! pack settings; for folders and generated trees, the tar's diffID (found
//! by a tar-only pass, far cheaper than compressing) and the settings.
//! Entries are complete or absent: written to a temporary name in the same
//! folder, fsynced, renamed. A blob is reused only when its size matches.

use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_io::{write_atomically_held, AtomicFile, HashingWriter};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::compress::{BlockCompressor, Format};
use super::digest::{sha256_hex, KeyHasher};
use super::progress::{NoProgress, PackProgress, ReportingWriter};
use super::tree::Tree;
use super::{Layer, LayerError, PackSettings, StorePathSource};
use crate::cache::records;

/// Bumped when the tar or compression code changes its output, or the key
/// itself changes, so older index entries are not reused for a layer that
/// would now differ.
const LAYER_FORMAT_VERSION: &str = "kiln-layer-2";

/// Buffer between the compressor and the blob file.
const BLOB_BUFFER: usize = 1 << 20;

/// A layer cache rooted at a kiln cache folder.
#[derive(Debug, Clone)]
pub struct LayerCache {
    blobs: PathBuf,
    index: PathBuf,
    /// What each layer packed anew (not found in the cache) holds, for the
    /// build summary; shared by clones.
    packed: Arc<Mutex<Vec<String>>>,
}

/// One layer to make with [`pack_all`].
#[derive(Debug, Clone)]
pub enum LayerJob {
    /// One store path, or a group of them, in one layer.
    StorePaths(Vec<StorePathSource>),
    /// Generated files (base files, the profile), with what they are.
    Tree(Tree, String),
    /// A layer already at hand (found in a registry's build cache), used
    /// as it is.
    Ready(Layer),
    /// A folder placed at a prefix (`""` for the image root), with what it is.
    Folder {
        /// Where the folder's contents go in the image.
        prefix: String,
        /// The folder on disk.
        dir: PathBuf,
        /// What it holds, for the image history.
        description: String,
    },
}

/// Makes every job's layer, in parallel on the rayon pool; the result is in
/// job order.
pub fn pack_all(
    cache: &LayerCache,
    jobs: &[LayerJob],
    settings: &PackSettings,
) -> Result<Vec<Layer>, LayerError> {
    pack_all_with_progress(cache, jobs, settings, &NoProgress)
}

/// [`pack_all`], telling `progress` of the bytes written and of each layer
/// as it is ready.
pub fn pack_all_with_progress(
    cache: &LayerCache,
    jobs: &[LayerJob],
    settings: &PackSettings,
    progress: &dyn PackProgress,
) -> Result<Vec<Layer>, LayerError> {
    jobs.par_iter()
        .map(|job| {
            let layer = match job {
                LayerJob::StorePaths(paths) => cache.store_paths_layer(paths, settings, progress),
                LayerJob::Ready(layer) => Ok(layer.clone()),
                LayerJob::Tree(tree, description) => {
                    cache.tree_layer(tree, settings, description, progress)
                }
                LayerJob::Folder {
                    prefix,
                    dir,
                    description,
                } => cache
                    .folder_layer(prefix, dir, settings, description, progress)
                    .map(|(layer, _)| layer),
            }?;
            progress.finished(&layer);
            Ok(layer)
        })
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IndexEntry {
    digest: String,
    diff_id: String,
    size: u64,
    uncompressed_size: u64,
    format: Format,
}

impl LayerCache {
    /// The cache under `cache_root` (kiln's cache folder), creating its
    /// folders.
    pub fn open(cache_root: &Path) -> Result<LayerCache, LayerError> {
        let cache = LayerCache {
            blobs: cache_root.join("blobs").join("sha256"),
            index: cache_root.join("layers"),
            packed: Arc::default(),
        };
        for dir in [&cache.blobs, &cache.index] {
            fs::create_dir_all(dir).map_err(|e| LayerError::io(dir, e))?;
        }
        Ok(cache)
    }

    /// Stores `bytes` (an image config, say) as a content-addressed blob
    /// beside the layers, so every blob of an image is a file a writer or
    /// the pusher streams from; returns its path.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<PathBuf, LayerError> {
        let blob = self.blobs.join(hex::encode(Sha256::digest(bytes)));
        if fs::metadata(&blob).is_ok_and(|m| m.len() == bytes.len() as u64)
            && records::use_entry(&blob)
        {
            return Ok(blob);
        }
        let held = write_atomically_held(&blob, bytes).map_err(|e| LayerError::io(&blob, e))?;
        records::keep(&blob, held);
        Ok(blob)
    }

    /// What each layer packed anew by this cache (and its clones) holds,
    /// in the order they were finished; layers found in the cache are not
    /// in it.
    pub fn packed(&self) -> Vec<String> {
        self.packed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The folder of content-addressed blobs (`blobs/sha256`).
    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// The layer of one or more store paths (several when grouped beyond
    /// `--max-layers`), from the cache when it was packed before.
    pub fn pack_store_paths(
        &self,
        paths: &[StorePathSource],
        settings: &PackSettings,
    ) -> Result<Layer, LayerError> {
        self.store_paths_layer(paths, settings, &NoProgress)
    }

    /// The key of the layer of `paths`: their names (store paths never
    /// change) and the settings. A registry's build cache records store
    /// path layers under it too.
    pub fn store_paths_key(&self, paths: &[StorePathSource], settings: &PackSettings) -> String {
        let names: Vec<&str> = paths.iter().map(|p| p.store_path.as_str()).collect();
        self.key("store-paths", &names.join("\n"), settings)
    }

    /// What the layer of `paths` is described as in the image history.
    pub fn store_paths_description(paths: &[StorePathSource]) -> String {
        let names: Vec<&str> = paths.iter().map(|p| p.store_path.as_str()).collect();
        format!("store paths: {}", names.join(" "))
    }

    /// The key of a generated tree's or folder's layer whose tar has
    /// `diff_id`.
    pub fn tree_key(&self, diff_id: &str, settings: &PackSettings) -> String {
        self.key("tree", diff_id, settings)
    }

    /// The key of the layer of the generated `tree`: a tar-only pass
    /// finds its diffID, nothing is compressed or written.
    pub fn tree_layer_key(
        &self,
        tree: &Tree,
        settings: &PackSettings,
    ) -> Result<String, LayerError> {
        Ok(self.tree_key(&diff_id(tree, settings)?, settings))
    }

    /// The layer under `key` when this cache has it.
    pub fn cached(&self, key: &str, description: &str) -> Result<Option<Layer>, LayerError> {
        self.lookup(key, description)
    }

    /// The diffID the layer of the folder `dir` would have: a tar-only
    /// pass, nothing compressed or written.
    pub fn folder_diff_id(
        &self,
        dir: &Path,
        settings: &PackSettings,
    ) -> Result<String, LayerError> {
        let mut tree = Tree::new();
        tree.add_folder("", dir)?;
        diff_id(&tree, settings)
    }

    /// Records `layer`, whose blob is in this cache's blob folder already
    /// (downloaded and verified), under `key`, so the next lookup finds it.
    pub fn adopt(&self, key: &str, layer: &Layer) -> Result<(), LayerError> {
        if !records::use_entry(&layer.blob) {
            return Err(LayerError::io(
                &layer.blob,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        self.record(key, layer)
    }

    /// The path a blob of `digest` has in this cache (whether or not it is
    /// there); `None` for a digest that is not `sha256:<hex>`.
    pub fn blob_path(&self, digest: &str) -> Option<PathBuf> {
        sha256_hex(digest).map(|hex| self.blobs.join(hex))
    }

    fn store_paths_layer(
        &self,
        paths: &[StorePathSource],
        settings: &PackSettings,
        progress: &dyn PackProgress,
    ) -> Result<Layer, LayerError> {
        let description = Self::store_paths_description(paths);
        let key = self.store_paths_key(paths, settings);
        if let Some(layer) = self.lookup(&key, &description)? {
            return Ok(layer);
        }
        let mut tree = Tree::new();
        for path in paths {
            tree.add_store_path(&path.store_path, &path.local)?;
        }
        let layer = self.write_blob(&tree, settings, description, progress)?;
        self.record(&key, &layer)?;
        Ok(layer)
    }

    /// The layer of the folder `dir` placed at `prefix`, with overlay
    /// whiteouts converted. Skipped files (sockets) are logged as warnings
    /// and returned.
    pub fn pack_folder(
        &self,
        prefix: &str,
        dir: &Path,
        settings: &PackSettings,
        description: &str,
    ) -> Result<(Layer, Vec<super::Skipped>), LayerError> {
        self.folder_layer(prefix, dir, settings, description, &NoProgress)
    }

    fn folder_layer(
        &self,
        prefix: &str,
        dir: &Path,
        settings: &PackSettings,
        description: &str,
        progress: &dyn PackProgress,
    ) -> Result<(Layer, Vec<super::Skipped>), LayerError> {
        let mut tree = Tree::new();
        let skipped = tree.add_folder(prefix, dir)?;
        for skip in &skipped {
            tracing::warn!("skipped {}: {}", skip.path.display(), skip.reason);
        }
        Ok((
            self.tree_layer(&tree, settings, description, progress)?,
            skipped,
        ))
    }

    /// The layer of a tree of entries, keyed by its diffID.
    pub fn pack_tree(
        &self,
        tree: &Tree,
        settings: &PackSettings,
        description: &str,
    ) -> Result<Layer, LayerError> {
        self.tree_layer(tree, settings, description, &NoProgress)
    }

    fn tree_layer(
        &self,
        tree: &Tree,
        settings: &PackSettings,
        description: &str,
        progress: &dyn PackProgress,
    ) -> Result<Layer, LayerError> {
        let key = self.tree_layer_key(tree, settings)?;
        if let Some(layer) = self.lookup(&key, description)? {
            return Ok(layer);
        }
        let layer = self.write_blob(tree, settings, description.to_string(), progress)?;
        self.record(&key, &layer)?;
        Ok(layer)
    }

    fn key(&self, kind: &str, content: &str, settings: &PackSettings) -> String {
        let mut hasher = KeyHasher::new();
        for part in [
            LAYER_FORMAT_VERSION,
            kind,
            content,
            &settings.compression.key(),
            &settings.source_date_epoch.to_string(),
        ] {
            hasher.field(part.as_bytes());
        }
        hasher.hex()
    }

    fn index_path(&self, key: &str) -> PathBuf {
        self.index.join(format!("{key}.json"))
    }

    fn lookup(&self, key: &str, description: &str) -> Result<Option<Layer>, LayerError> {
        let path = self.index_path(key);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LayerError::io(&path, e)),
        };
        let entry: IndexEntry = match serde_json::from_slice(&text) {
            Ok(entry) => entry,
            Err(e) => {
                tracing::warn!(
                    "{}: unreadable layer cache entry ({e}); packing again",
                    path.display()
                );
                return Ok(None);
            }
        };
        let Some(hex) = sha256_hex(&entry.digest) else {
            tracing::warn!(
                "{}: layer cache entry has a malformed digest; packing again",
                path.display()
            );
            return Ok(None);
        };
        let blob = self.blobs.join(hex);
        // Held from here to the end of the process, so a prune running now
        // leaves both alone; one that took them first makes this a miss.
        let held = records::use_entry(&path) && records::use_entry(&blob);
        match fs::metadata(&blob) {
            Ok(meta) if held && meta.len() == entry.size => {}
            _ => {
                tracing::debug!(
                    "{}: blob missing or of the wrong size; packing again",
                    blob.display()
                );
                return Ok(None);
            }
        }
        Ok(Some(Layer {
            digest: entry.digest,
            diff_id: entry.diff_id,
            size: entry.size,
            uncompressed_size: entry.uncompressed_size,
            format: entry.format,
            blob,
            description: description.to_string(),
        }))
    }

    fn write_blob(
        &self,
        tree: &Tree,
        settings: &PackSettings,
        description: String,
        progress: &dyn PackProgress,
    ) -> Result<Layer, LayerError> {
        let io_err = |e| LayerError::io(&self.blobs, e);
        let temp = AtomicFile::new_in(&self.blobs).map_err(io_err)?;

        // Reporting below the buffer costs one call per megabyte, not per write.
        let compressed = HashingWriter::new(BufWriter::with_capacity(
            BLOB_BUFFER,
            ReportingWriter::new(temp.as_file(), progress),
        ));
        let compressor = BlockCompressor::new(settings.compression, compressed);
        let tar_stream = HashingWriter::new(compressor);
        let tar_stream = super::tar::write_tree(tree, settings.source_date_epoch, tar_stream)?;
        let (compressor, diff_id, uncompressed_size) = tar_stream.finish();
        let compressed = compressor.finish().map_err(io_err)?;
        let (buffer, digest, size) = compressed.finish();
        buffer.into_inner().map_err(|e| io_err(e.into_error()))?;

        let hex = sha256_hex(&digest).expect("HashingWriter makes sha256 digests");
        let blob = self.blobs.join(hex);
        let held = temp
            .commit_held(&blob)
            .map_err(|e| LayerError::io(&blob, e))?;
        records::keep(&blob, held);
        self.packed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(description.clone());
        Ok(Layer {
            digest,
            diff_id,
            size,
            uncompressed_size,
            format: settings.compression.format,
            blob,
            description,
        })
    }

    fn record(&self, key: &str, layer: &Layer) -> Result<(), LayerError> {
        let entry = IndexEntry {
            digest: layer.digest.clone(),
            diff_id: layer.diff_id.clone(),
            size: layer.size,
            uncompressed_size: layer.uncompressed_size,
            format: layer.format,
        };
        let path = self.index_path(key);
        let json = serde_json::to_vec_pretty(&entry).expect("index entries serialize");
        let held = write_atomically_held(&path, &json).map_err(|e| LayerError::io(&path, e))?;
        records::keep(&path, held);
        Ok(())
    }
}

/// The diffID of `tree`'s layer: a tar-only pass, far cheaper than
/// compressing.
fn diff_id(tree: &Tree, settings: &PackSettings) -> Result<String, LayerError> {
    let hashing = super::tar::write_tree(
        tree,
        settings.source_date_epoch,
        HashingWriter::new(io::sink()),
    )?;
    Ok(hashing.finish().1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Compression;
    use std::io::Read;

    fn settings(format: Format) -> PackSettings {
        PackSettings {
            compression: Compression::new(format, None).unwrap(),
            source_date_epoch: 1,
        }
    }

    fn store_path(dir: &Path) -> StorePathSource {
        let local = dir.join("0123456789abcdfghijklmnpqrsvwxyz-demo");
        fs::create_dir_all(local.join("bin")).unwrap();
        fs::write(local.join("bin/demo"), vec![7u8; 3000]).unwrap();
        StorePathSource {
            store_path: "/nix/store/0123456789abcdfghijklmnpqrsvwxyz-demo".into(),
            local,
        }
    }

    #[test]
    fn blob_is_named_by_its_digest_and_decompresses_to_its_diff_id() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&root.path().join("cache")).unwrap();
        let path = store_path(root.path());
        for format in [Format::Gzip, Format::Zstd] {
            let layer = cache
                .pack_store_paths(std::slice::from_ref(&path), &settings(format))
                .unwrap();
            let blob = fs::read(&layer.blob).unwrap();
            assert_eq!(blob.len() as u64, layer.size);
            assert_eq!(super::super::digest::sha256_digest(&blob), layer.digest);
            let mut tar = Vec::new();
            layer
                .open_uncompressed()
                .unwrap()
                .read_to_end(&mut tar)
                .unwrap();
            assert_eq!(tar.len() as u64, layer.uncompressed_size);
            assert_eq!(super::super::digest::sha256_digest(&tar), layer.diff_id);
        }
        let leftovers: Vec<_> = fs::read_dir(cache.blobs_dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn cached_layers_are_reused_and_checked_by_size() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&root.path().join("cache")).unwrap();
        let path = store_path(root.path());
        let first = cache
            .pack_store_paths(std::slice::from_ref(&path), &settings(Format::Gzip))
            .unwrap();
        // Changing the source proves the second call never re-reads it.
        fs::write(path.local.join("bin/demo"), b"changed").unwrap();
        let again = cache
            .pack_store_paths(std::slice::from_ref(&path), &settings(Format::Gzip))
            .unwrap();
        assert_eq!(first, again);

        // A truncated blob is not trusted: the layer is packed again.
        fs::write(&first.blob, b"short").unwrap();
        let repacked = cache
            .pack_store_paths(&[path], &settings(Format::Gzip))
            .unwrap();
        assert_ne!(repacked.digest, first.digest);
        assert_eq!(fs::metadata(&repacked.blob).unwrap().len(), repacked.size);
    }

    #[test]
    fn settings_are_part_of_the_key() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&root.path().join("cache")).unwrap();
        let path = store_path(root.path());
        let gzip = cache
            .pack_store_paths(std::slice::from_ref(&path), &settings(Format::Gzip))
            .unwrap();
        let zstd = cache
            .pack_store_paths(std::slice::from_ref(&path), &settings(Format::Zstd))
            .unwrap();
        assert_ne!(gzip.digest, zstd.digest);
        assert_eq!(gzip.diff_id, zstd.diff_id);
        let mut later = settings(Format::Gzip);
        later.source_date_epoch = 1_700_000_000;
        let later = cache.pack_store_paths(&[path], &later).unwrap();
        assert_ne!(later.diff_id, gzip.diff_id);
    }

    #[derive(Default)]
    struct Counter {
        bytes: std::sync::atomic::AtomicU64,
        layers: std::sync::atomic::AtomicUsize,
    }

    impl PackProgress for Counter {
        fn wrote(&self, bytes: u64) {
            self.bytes
                .fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        }

        fn finished(&self, _layer: &Layer) {
            self.layers
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[test]
    fn progress_counts_every_layer_and_only_new_blob_bytes() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&root.path().join("cache")).unwrap();
        let folder = root.path().join("folder");
        fs::create_dir_all(&folder).unwrap();
        fs::write(folder.join("data"), vec![3u8; 100_000]).unwrap();
        let mut tree = Tree::new();
        tree.add_file("etc/hostname", 0o644, b"kiln\n".to_vec());
        let jobs = [
            LayerJob::StorePaths(vec![store_path(root.path())]),
            LayerJob::Tree(tree, "hostname".into()),
            LayerJob::Folder {
                prefix: String::new(),
                dir: folder,
                description: "folder".into(),
            },
        ];
        let settings = settings(Format::Gzip);

        let fresh = Counter::default();
        let layers = pack_all_with_progress(&cache, &jobs, &settings, &fresh).unwrap();
        assert_eq!(fresh.layers.into_inner(), 3);
        let sizes: u64 = layers.iter().map(|l| l.size).sum();
        assert_eq!(fresh.bytes.into_inner(), sizes);

        assert_eq!(cache.packed().len(), 3);

        let cached = Counter::default();
        let reopened = LayerCache::open(&root.path().join("cache")).unwrap();
        let again = pack_all_with_progress(&reopened, &jobs, &settings, &cached).unwrap();
        assert_eq!(again, layers);
        assert_eq!(cached.layers.into_inner(), 3);
        assert_eq!(cached.bytes.into_inner(), 0);
        assert!(reopened.packed().is_empty(), "nothing packed anew");
    }

    #[test]
    fn broken_index_entries_are_packed_again() {
        let root = tempfile::tempdir().unwrap();
        let cache = LayerCache::open(&root.path().join("cache")).unwrap();
        let mut tree = Tree::new();
        tree.add_file("etc/hostname", 0o644, b"kiln\n".to_vec());
        let first = cache
            .pack_tree(&tree, &settings(Format::Gzip), "hostname")
            .unwrap();
        for entry in fs::read_dir(root.path().join("cache/layers")).unwrap() {
            fs::write(entry.unwrap().path(), br#"{"digest":"sha256:../../x","diffId":"","size":1,"uncompressedSize":1,"format":"gzip"}"#).unwrap();
        }
        let again = cache
            .pack_tree(&tree, &settings(Format::Gzip), "hostname")
            .unwrap();
        assert_eq!(first, again);
    }
}
