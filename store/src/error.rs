//! Everything that can go wrong while realizing store paths, each naming the
//! path, cache or file involved and what to do about it.

use std::io;
use std::path::PathBuf;

/// A failure of the store client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A string that is not a `/nix/store/<hash>-<name>` path.
    #[error("`{input}` is not a Nix store path (/nix/store/<32 base32 chars>-<name>): {reason}")]
    BadStorePath {
        /// What was given.
        input: String,
        /// Why it was refused.
        reason: String,
    },

    /// A trusted public key that does not parse.
    #[error("bad trusted public key `{key}`: {reason} (expected `name:base64`, as in nix.conf's trusted-public-keys)")]
    BadPublicKey {
        /// The key as given.
        key: String,
        /// Why it was refused.
        reason: String,
    },

    /// A substituter URL kiln cannot use.
    #[error("bad substituter `{url}`: {reason} (use file:///path, http://host/ or https://host/)")]
    BadSubstituter {
        /// The URL as given.
        url: String,
        /// Why it was refused.
        reason: String,
    },

    /// A cache whose `nix-cache-info` names another store folder.
    #[error("{url}: the cache holds paths for store folder {found}, kiln needs /nix/store; remove it from the substituters")]
    WrongStoreDir {
        /// The cache.
        url: String,
        /// Its `StoreDir`.
        found: String,
    },

    /// No cache has a narinfo for the path.
    #[error("{path} is in none of the caches tried ({tried}); add a cache that has it with --substituter")]
    NotInAnyCache {
        /// The missing path.
        path: String,
        /// The caches asked, in order.
        tried: String,
    },

    /// A download failed for good (after retries where they apply).
    #[error("{url}: {reason}")]
    Fetch {
        /// What was fetched.
        url: String,
        /// What went wrong.
        reason: String,
    },

    /// A narinfo that does not parse or lacks required fields.
    #[error("{url}: invalid narinfo: {reason}")]
    BadNarInfo {
        /// Where it came from.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A narinfo whose signatures do not check out against the trusted keys.
    #[error("{url}: narinfo of {path} is not trusted: {reason}; add the cache's key with --trusted-public-key (or KILN_TRUSTED_PUBLIC_KEYS)")]
    Untrusted {
        /// Where it came from.
        url: String,
        /// The store path it describes.
        path: String,
        /// Which signatures were found and why none verified.
        reason: String,
    },

    /// A NAR compressed with a method kiln cannot read.
    #[error("{url}: NAR of {path} uses compression `{compression}`; kiln reads xz, zstd, bzip2 and none")]
    UnsupportedCompression {
        /// Where the NAR is.
        url: String,
        /// The store path.
        path: String,
        /// The narinfo's `Compression`.
        compression: String,
    },

    /// A NAR that is malformed, truncated, hostile, or does not match its
    /// narinfo. Nothing of it is left in the store.
    #[error("{url}: NAR of {path} rejected, nothing kept: {reason}")]
    BadNar {
        /// Where the NAR came from.
        url: String,
        /// The store path.
        path: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The host's Nix failed to build a path no cache has.
    #[error("{path} is in no cache, and building it from {derivation} with nix-store --realise failed:\n{message}")]
    Build {
        /// The path wanted.
        path: String,
        /// Its derivation.
        derivation: String,
        /// Nix's last lines.
        message: String,
    },

    /// A file system operation on kiln's store failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
}

/// Attaches the file or folder an I/O error concerns.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Io {
            path: path.into(),
            source,
        })
    }
}
