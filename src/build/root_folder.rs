//! kiln's minimal base as a folder: the base files (users, `/bin/sh`,
//! `/usr/bin/env`, CA certificates) written out so the sandbox can stack
//! the phases on them, and kept as a tree for the image's base layer.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::packages::Packages;
use crate::layer::{base_files, BaseFiles, Content, Kind, StorePathSource, Tree, PROFILE_DIR};

/// The base of a build.
pub struct Base {
    /// The folder holding the base files, the sandbox's lowest layer.
    pub dir: PathBuf,
    /// The base files and what they found in the closure.
    pub files: BaseFiles,
    /// The packages, named first in the profile.
    pub packages: Vec<StorePathSource>,
    /// Every path of the closure.
    pub closure: Vec<StorePathSource>,
}

/// Writes the base files of `packages` into the new folder `dir`.
pub fn base(packages: &Packages, dir: &Path) -> anyhow::Result<Base> {
    let roots: Vec<StorePathSource> = packages
        .roots
        .iter()
        .map(|(store_path, local)| StorePathSource {
            store_path: store_path.clone(),
            local: local.clone(),
        })
        .collect();
    let closure: Vec<StorePathSource> = packages
        .closure
        .paths
        .iter()
        .map(|p| StorePathSource {
            store_path: p.path.to_string(),
            local: p.location.clone(),
        })
        .collect();
    let mut files = base_files(&roots, &closure);
    add_upstream_layout(&mut files.tree);
    write_tree(&files.tree, dir)
        .with_context(|| format!("could not write the base files into {}", dir.display()))?;
    Ok(Base {
        dir: dir.to_path_buf(),
        files,
        packages: roots,
        closure,
    })
}

/// Folders upstream's Ubuntu base has and plans rely on (`mkdir
/// /var/log/nginx`), and the name upstream plans find the profile by: in
/// upstream images it is the Nix store path `*-user-environment`, so a
/// link of that form points at kiln's profile.
fn add_upstream_layout(tree: &mut Tree) {
    for dir in ["var/cache", "var/lib", "var/log", "run"] {
        tree.add_dir(dir, 0o755);
    }
    tree.add_dir("var/tmp", 0o1777);
    tree.add_symlink(USER_ENVIRONMENT, PROFILE_DIR);
}

/// Where upstream plans look for the profile (`/nix/store/*-user-environment`);
/// the hash part is all zeros so it can never be a real store path's.
pub const USER_ENVIRONMENT: &str = "nix/store/00000000000000000000000000000000-user-environment";

/// Writes the entries of `tree` under `dir`. Tree names are relative and
/// free of `..` by construction, so every entry lands inside `dir`.
fn write_tree(tree: &Tree, dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    for entry in tree.entries() {
        let path = dir.join(OsStr::from_bytes(&entry.name));
        match &entry.kind {
            Kind::Dir => {
                fs::create_dir_all(&path)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))?;
            }
            Kind::File { content, .. } => {
                match content {
                    Content::Bytes(bytes) => fs::write(&path, bytes)?,
                    Content::Disk(source) => {
                        fs::copy(source, &path)?;
                    }
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode))?;
            }
            Kind::Symlink { target } => symlink(OsStr::from_bytes(target), &path)?,
            Kind::HardLink { target } => fs::hard_link(dir.join(OsStr::from_bytes(target)), &path)?,
            Kind::Fifo => {
                nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(entry.mode))?
            }
        }
    }
    Ok(())
}
