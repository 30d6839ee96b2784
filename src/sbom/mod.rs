//! SBOMs: what an image holds, as an SPDX 2.3 JSON document, made offline
//! from what kiln already knows. The Nix closure it packed gives every
//! store path with its NAR hash and references, exactly, where scanners
//! guess from files; the app's lockfiles give its own dependencies.
//!
//! [`spdx_json`] writes the document; [`app_packages`] reads the lockfiles.
//! The same inputs always give the same bytes.

mod nix_name;
mod npm;
mod purl;
mod spdx;

use std::path::{Path, PathBuf};

use kiln_store::ClosurePath;

pub use nix_name::split_name;
pub use spdx::{spdx_json, SPDX_MEDIA_TYPE};

/// What an SBOM describes.
pub struct SbomInputs<'a> {
    /// The image's name.
    pub name: &'a str,
    /// `sha256:<hex>` of the image manifest.
    pub image_digest: &'a str,
    /// Every store path in the image, with references and NAR hashes.
    pub store_paths: &'a [ClosurePath],
    /// The app's dependencies, from its lockfiles.
    pub app: &'a [AppPackage],
    /// The SBOM's creation time, as the image's.
    pub source_date_epoch: u64,
}

/// One dependency of the app, as its lockfile names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPackage {
    /// The purl type of its package manager (`npm`).
    pub ecosystem: &'static str,
    /// Its name (`@types/node`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its package URL.
    pub purl: String,
    /// A hash of its archive, when the lockfile records one.
    pub checksum: Option<Checksum>,
}

/// A hash as SPDX writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    /// `SHA256`, `SHA512`, ...
    pub algorithm: String,
    /// The digest, lower-case hexadecimal.
    pub hex: String,
}

/// A lockfile of the app that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}; fix the lockfile, or build with --no-sbom", path.display())]
pub struct LockfileError {
    /// The lockfile.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// Biggest lockfile read: real ones are a few megabytes.
const MAX_LOCKFILE_BYTES: u64 = 64 << 20;

/// The dependencies the lockfiles in `app_dir` name, in a fixed order.
/// Lockfiles read: `package-lock.json`.
pub fn app_packages(app_dir: &Path) -> Result<Vec<AppPackage>, LockfileError> {
    let path = app_dir.join("package-lock.json");
    let error = |reason: String| LockfileError {
        path: path.clone(),
        reason,
    };
    let bytes = match std::fs::metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(error(e.to_string())),
        Ok(meta) if meta.len() > MAX_LOCKFILE_BYTES => {
            return Err(error(format!(
                "is {} bytes, more than the {MAX_LOCKFILE_BYTES} kiln reads",
                meta.len()
            )))
        }
        Ok(_) => std::fs::read(&path).map_err(|e| error(e.to_string()))?,
    };
    npm::packages(&bytes).map_err(error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_lockfile_names_itself_and_the_way_out() {
        let dir = tempfile::tempdir().unwrap();
        assert!(app_packages(dir.path()).unwrap().is_empty());
        std::fs::write(dir.path().join("package-lock.json"), "{").unwrap();
        let err = app_packages(dir.path()).unwrap_err().to_string();
        assert!(err.contains("package-lock.json"), "{err}");
        assert!(err.contains("--no-sbom"), "{err}");
    }
}
