//! NAR download to files on disk, in one streaming pass: decompress, hash,
//! restore. Memory stays bounded by buffers and directory depth, whatever the
//! NAR's size.
//!
//! Decoding is `nix-archive`'s streaming reader (`decode_events_reader`),
//! which refuses entry names that are empty, `.`, `..` or contain `/`,
//! duplicates and unsorted entries, and trailing bytes. This module adds the
//! restore itself, the hash and size check against the narinfo and Nix's
//! canonical modes and mtimes.
//!
//! `pipeline` hands the decompressed NAR from its thread to the restore,
//! `restore` recreates the tree as the decoder reads it, `write` puts each
//! file on disk and `remove` takes a restored tree away again.

mod compression;
mod pipeline;
mod remove;
mod restore;
mod write;

#[cfg(test)]
mod tests;

use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc;

use nix_narinfo::Compression;

pub use compression::decompress;
use pipeline::{produce, restore_from_chunks, CountingReader, PIPELINE_CHUNKS};
pub use remove::remove_tree;

/// Why a NAR could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum NarError {
    /// The narinfo names a compression kiln cannot read.
    #[error("unsupported compression `{0}`")]
    UnsupportedCompression(String),
    /// The NAR is malformed, truncated or hostile.
    #[error("{0}")]
    Malformed(#[from] nix_archive::nar::Error),
    /// The NAR is longer than its narinfo's `NarSize`.
    #[error("the NAR is longer than its NarSize of {expected} bytes")]
    TooLong {
        /// The narinfo's `NarSize`.
        expected: u64,
    },
    /// The NAR's size differs from `NarSize`.
    #[error("the NAR is {found} bytes, its narinfo says NarSize {expected}")]
    SizeMismatch {
        /// The narinfo's `NarSize`.
        expected: u64,
        /// Bytes read.
        found: u64,
    },
    /// The NAR's sha256 differs from `NarHash`.
    #[error("the NAR hashes to sha256:{found}, its narinfo says {expected}")]
    HashMismatch {
        /// The narinfo's `NarHash`, as written there.
        expected: String,
        /// What the bytes hash to, in Nix's base32.
        found: String,
    },
    /// The narinfo's `NarHash` is not sha256.
    #[error("NarHash {0} is not sha256, the only hash Nix writes for NARs")]
    NotSha256(String),
    /// Setting modes or times on the restored files failed.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// What the narinfo promises about a NAR.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// The `NarHash`.
    pub nar_hash: &'a nix_derivation::NixHash,
    /// The `NarSize`.
    pub nar_size: u64,
    /// The `Compression`.
    pub compression: &'a Compression,
}

/// Restores the NAR read (compressed) from `download` at `destination`,
/// which must not exist, then checks it against `expected` and gives it
/// Nix's canonical modes and mtime. On error `destination` may hold a
/// partial tree: the caller removes it.
pub fn restore_verified(
    download: impl Read + Send,
    expected: &Expected<'_>,
    destination: &Path,
) -> Result<(), NarError> {
    if expected.nar_hash.algorithm() != nix_derivation::HashAlgorithm::Sha256 {
        return Err(NarError::NotSha256(
            expected.nar_hash.to_nix_nixbase32_string(),
        ));
    }
    let nar = decompress(expected.compression, download)?;
    let mut counting = CountingReader {
        inner: nar,
        read: 0,
        limit: expected.nar_size,
    };
    // Decompressing runs on its own thread, ahead of the hashing and the
    // restore by at most PIPELINE_CHUNKS chunks: xz decoding alone takes
    // about as long as all the rest, so the two halves overlap.
    let (sender, receiver) = mpsc::sync_channel::<io::Result<Vec<u8>>>(PIPELINE_CHUNKS);
    let (produced, restored) = std::thread::scope(|scope| {
        let nar = &mut counting;
        // The sender moves into the thread so the restore sees the end of
        // the stream when the thread finishes.
        let producer = scope.spawn(move || produce(nar, sender));
        let restored = restore_from_chunks(receiver, destination);
        (producer.join(), restored)
    });
    let digest = match produced {
        Ok(Ok(())) => restored?,
        Ok(Err(err)) => return Err(NarError::Io(err)),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    if counting.read != expected.nar_size {
        return Err(NarError::SizeMismatch {
            expected: expected.nar_size,
            found: counting.read,
        });
    }
    if digest.as_ref() != expected.nar_hash.digest_as_bytes() {
        let found = nix_derivation::NixHash::from_algorithm_and_digest(
            nix_derivation::HashAlgorithm::Sha256,
            digest.as_ref(),
        )
        .map(|h| h.to_nix_nixbase32_string())
        .unwrap_or_default();
        return Err(NarError::HashMismatch {
            expected: expected.nar_hash.to_nix_nixbase32_string(),
            found: found.trim_start_matches("sha256:").to_string(),
        });
    }
    Ok(())
}
