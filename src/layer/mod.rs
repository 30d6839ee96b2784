//! Layers: deterministic, content-addressed tar layers packed in parallel.
//!
//! A [`Layer`] is what go-containerregistry calls a layer: a compressed blob
//! in kiln's cache with its digest (sha256 of the blob), diffID (sha256 of
//! the tar), sizes and media type, and readers for both forms. Layers are
//! made by streaming a [`Tree`] through the tar writer, a sha256, the block
//! compressor and another sha256 into a temporary blob that is renamed to
//! its digest; nothing is held whole in memory.
//!
//! Entry points: [`LayerCache::pack_store_paths`] (one or a group of store
//! paths), [`LayerCache::pack_folder`] (app files, phase diffs),
//! [`LayerCache::pack_tree`] (generated files), [`pack_all`] (many at once
//! on the rayon pool; [`pack_all_with_progress`] reports as it goes), [`group_by_popularity`] (the `--max-layers` plan),
//! and the generated trees [`base_files`] and [`profile`].

mod base;
mod cache;
pub mod compress;
pub mod digest;
mod grouping;
mod profile;
mod progress;
mod tar;
#[cfg(test)]
pub(crate) mod test_support;
mod tree;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub use base::{base_files, find_base, BaseFiles, BaseFinds};
pub use cache::{pack_all, pack_all_with_progress, LayerCache, LayerJob};
pub use compress::{Compression, Format};
pub use grouping::group_by_popularity;
pub use profile::{profile, PROFILE_DIR};
pub use progress::{NoProgress, PackProgress};
pub use tree::{store_path_name, Content, Entry, Kind, Skipped, Tree};

/// Everything besides the files that decides a layer's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackSettings {
    /// Compression format and level.
    pub compression: Compression,
    /// mtime of every entry (`SOURCE_DATE_EPOCH`, default 1).
    pub source_date_epoch: u64,
}

impl PackSettings {
    /// `SOURCE_DATE_EPOCH` from the environment, else 1. A value that is not
    /// a number is an error naming it.
    pub fn source_date_epoch_from_env() -> Result<u64, LayerError> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(value) if !value.is_empty() => value
                .trim()
                .parse()
                .map_err(|_| LayerError::BadSourceDateEpoch { value }),
            _ => Ok(1),
        }
    }
}

/// A store path to pack: its name in the image and the folder holding its
/// files (kiln's store folder or the host's `/nix/store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePathSource {
    /// `/nix/store/<hash>-<name>`, where it appears in the image.
    pub store_path: String,
    /// Where its files are on this machine.
    pub local: PathBuf,
}

impl StorePathSource {
    /// A store path read in place from the host's `/nix/store`.
    pub fn in_place(store_path: &str) -> StorePathSource {
        StorePathSource {
            store_path: store_path.to_string(),
            local: PathBuf::from(store_path),
        }
    }
}

impl From<&kiln_store::ClosurePath> for StorePathSource {
    /// A realized path, read where the store put it.
    fn from(path: &kiln_store::ClosurePath) -> StorePathSource {
        StorePathSource {
            store_path: path.path.to_string(),
            local: path.location.clone(),
        }
    }
}

/// A packed layer: a blob in the cache and what describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `sha256:<hex>` of the compressed blob.
    pub digest: String,
    /// `sha256:<hex>` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the compressed blob in bytes.
    pub size: u64,
    /// Size of the uncompressed tar in bytes.
    pub uncompressed_size: u64,
    /// Compression of the blob.
    pub format: Format,
    /// The blob file.
    pub blob: PathBuf,
    /// What the layer holds, for the image history.
    pub description: String,
}

impl Layer {
    /// The OCI media type of the blob.
    pub fn media_type(&self) -> &'static str {
        self.format.media_type()
    }

    /// The compressed blob.
    pub fn open_compressed(&self) -> Result<File, LayerError> {
        File::open(&self.blob).map_err(|e| LayerError::io(&self.blob, e))
    }

    /// The tar, decompressed while read.
    pub fn open_uncompressed(&self) -> Result<Box<dyn Read>, LayerError> {
        compress::decompress(self.format, self.open_compressed()?)
            .map_err(|e| LayerError::io(&self.blob, e))
    }
}

/// Why a layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing the tar stream failed.
    #[error("writing a layer failed: {source}")]
    Write {
        /// The error.
        source: io::Error,
    },
    /// A file's name starts with `.wh.`, which OCI layers reserve for
    /// deletions.
    #[error("{}: names starting with `.wh.` mean \"deleted\" in image layers, so this file cannot be stored; rename it", path.display())]
    WhiteoutName {
        /// The file.
        path: PathBuf,
    },
    /// A file type an image layer cannot hold.
    #[error("{}: is {what}, which an image layer cannot hold; remove it", path.display())]
    UnsupportedFile {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// A file changed size between listing and packing.
    #[error("{}: changed while it was being packed; make sure nothing writes to it during the build", path.display())]
    ChangedWhilePacking {
        /// The file.
        path: PathBuf,
    },
    /// Not of the form `/nix/store/<hash>-<name>`.
    #[error("`{path}` is not a Nix store path (`/nix/store/<hash>-<name>`)")]
    NotAStorePath {
        /// What was given.
        path: String,
    },
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error("SOURCE_DATE_EPOCH=`{value}` is not a number of seconds since 1970; unset it or set it to an integer")]
    BadSourceDateEpoch {
        /// The value.
        value: String,
    },
}

impl LayerError {
    fn io(path: &Path, source: io::Error) -> LayerError {
        LayerError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
