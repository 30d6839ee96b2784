//! kiln's minimal base as a folder: the base files (users, `/bin/sh`,
//! `/usr/bin/env`, CA certificates) written out so the sandbox can stack
//! the phases on them, and kept as a tree for the image's base layer.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::layer::{base_files, BaseFiles, Content, Kind, StorePathSource, Tree, PROFILE_DIR};
use crate::resolve::ImagePackages;

/// The base of a build.
pub struct Base {
    /// The folder holding the base files, the sandbox's lowest layer.
    pub dir: PathBuf,
    /// The base files and what they found in the closure.
    pub files: BaseFiles,
}

/// A pulled image the base files go on.
pub struct OnImage<'a> {
    /// Its unpacked files.
    pub root: &'a Path,
    /// `PATH` entries the app needs before the profile's (the phases'
    /// `paths`).
    pub first_paths: &'a [String],
}

/// Writes the base files of `packages` into the new folder `dir`. On a
/// pulled image only the files it lacks are added (its own users, shell
/// and certificates stay), plus a login script that puts the profile on
/// `PATH`: the start command runs in a login shell, and distributions'
/// `/etc/profile` resets `PATH`.
pub fn base(
    packages: &ImagePackages,
    dir: &Path,
    on_image: Option<OnImage<'_>>,
) -> anyhow::Result<Base> {
    let closure: Vec<StorePathSource> = packages.paths.iter().map(StorePathSource::from).collect();
    let files = base_files(&packages.roots, &closure);
    base_with(files, dir, on_image)
}

/// [`base`] with the base files given: what a build read from its
/// packages' files, or from a record of them.
pub fn base_with(
    mut files: BaseFiles,
    dir: &Path,
    on_image: Option<OnImage<'_>>,
) -> anyhow::Result<Base> {
    add_upstream_layout(&mut files.tree);
    if let Some(image) = on_image {
        files
            .tree
            .retain(|entry| fills_a_gap(&entry.name, &entry.kind, image.root));
        let mut path: Vec<String> = image.first_paths.to_vec();
        path.push(format!("{PROFILE_DIR}/bin"));
        files.tree.add_file(
            LOGIN_SCRIPT,
            0o644,
            format!("PATH=\"{}:$PATH\"\nexport PATH\n", path.join(":")).into_bytes(),
        );
    }
    write_tree(&files.tree, dir)
        .with_context(|| format!("could not write the base files into {}", dir.display()))?;
    Ok(Base {
        dir: dir.to_path_buf(),
        files,
    })
}

/// Whether an entry named `name` adds to the image at `image_root` without
/// replacing anything: it is absent there (or a folder where the image has
/// a folder), and no folder above it is a link or file there. Writing a
/// `bin/` folder over a merged-/usr image's `bin -> usr/bin` link would
/// hide all of `/usr/bin`.
fn fills_a_gap(name: &[u8], kind: &Kind, image_root: &Path) -> bool {
    let path = Path::new(OsStr::from_bytes(name));
    let ancestors: Vec<&Path> = path.ancestors().skip(1).collect();
    for ancestor in ancestors.iter().rev().filter(|a| !a.as_os_str().is_empty()) {
        match image_root.join(ancestor).symlink_metadata() {
            Ok(meta) if !meta.is_dir() => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    match image_root.join(path).symlink_metadata() {
        Ok(meta) => meta.is_dir() && matches!(kind, Kind::Dir),
        Err(_) => true,
    }
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

/// Sourced by login shells on distributions' base images.
const LOGIN_SCRIPT: &str = "etc/profile.d/kiln.sh";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_a_base_image_only_gaps_are_filled() {
        let image = tempfile::tempdir().unwrap();
        let root = image.path();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("usr/bin", root.join("bin")).unwrap();
        fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        let file = Kind::Symlink {
            target: b"/x".to_vec(),
        };
        assert!(
            !fills_a_gap(b"bin", &Kind::Dir, root),
            "bin is a link there"
        );
        assert!(!fills_a_gap(b"bin/bash", &file, root), "under the link");
        assert!(!fills_a_gap(b"etc/passwd", &file, root), "the image's own");
        assert!(fills_a_gap(b"etc", &Kind::Dir, root), "same folder");
        assert!(fills_a_gap(b"etc/ssl/certs/ca.crt", &file, root), "missing");
        assert!(fills_a_gap(b"nix/store", &Kind::Dir, root), "missing");
        assert!(!fills_a_gap(b"usr/bin", &file, root), "a folder there");
    }
}
