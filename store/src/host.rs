//! The host's Nix, when it is installed: a path no cache has is taken from
//! its store when valid there, after building it from its derivation with
//! `nix-store --realise` when it is not.

use std::path::{Path, PathBuf};
use std::process::Command;

use nix_derivation::{NixHash, StorePath};
use nix_narinfo::NarInfo;

use crate::error::StoreError;
use crate::narinfo::parse_store_path;

/// `nix-store` on `PATH`, if Nix is installed.
pub(crate) fn nix_store_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nix-store"))
        .find(|candidate| candidate.is_file())
}

/// What the host's Nix database records for `path`, as a narinfo; `None`
/// when the path is not valid there.
pub(crate) fn host_narinfo(nix_store: &Path, path: &StorePath) -> Option<NarInfo> {
    let query = |flag: &str| -> Option<String> {
        let output = Command::new(nix_store)
            .args(["--query", flag, &path.to_string()])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let hash = NixHash::parse(&query("--hash")?).ok()?;
    let size = query("--size")?.parse().ok()?;
    let references: Vec<StorePath> = query("--references")?
        .lines()
        .filter_map(|line| parse_store_path(line).ok())
        .collect();
    NarInfo::builder(path.clone(), "host", hash, size)
        .references(references)
        .build()
        .ok()
}

/// Builds `derivation` with the host's Nix.
pub(crate) fn build(
    nix_store: &Path,
    path: &StorePath,
    derivation: &StorePath,
) -> Result<(), StoreError> {
    let output = Command::new(nix_store)
        .args(["--realise", &derivation.to_string()])
        .output()
        .map_err(|err| StoreError::Build {
            path: path.to_string(),
            derivation: derivation.to_string(),
            message: err.to_string(),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.trim().lines().collect();
    Err(StoreError::Build {
        path: path.to_string(),
        derivation: derivation.to_string(),
        message: lines[lines.len().saturating_sub(8)..].join("\n"),
    })
}
