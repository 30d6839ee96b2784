//! The profile: one folder of symlinks into the image's packages, like
//! Nix's `buildEnv`, at a fixed path that is on `PATH`.
//!
//! As in `buildEnv`, a folder only one package has is linked whole; where
//! two packages share a folder it becomes a real folder of links. When two
//! packages have the same file, the package named first wins.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::tree::Tree;
use super::{LayerError, StorePathSource};

/// Where the profile is in every kiln image; its `bin` is on `PATH`.
pub const PROFILE_DIR: &str = "/nix/var/kiln/profile";

enum Node {
    Link {
        target: Vec<u8>,
        local: PathBuf,
        is_dir: bool,
    },
    Dir(BTreeMap<Vec<u8>, Node>),
}

/// The profile of `packages` as a tree, and the image paths where a later
/// package lost a collision to an earlier one.
pub fn profile(packages: &[StorePathSource]) -> Result<(Tree, Vec<String>), LayerError> {
    let mut root = BTreeMap::new();
    let mut collisions = Vec::new();
    for package in packages {
        let image_root = package.store_path.as_bytes().to_vec();
        if package.local.is_dir() {
            merge(
                &mut root,
                &image_root,
                &package.local,
                &mut collisions,
                PROFILE_DIR.as_bytes(),
            )?;
        }
    }
    let mut tree = Tree::new();
    let base = &PROFILE_DIR.as_bytes()[1..];
    tree.add_dir(base, 0o755);
    emit(&mut tree, base, &root);
    Ok((tree, collisions))
}

fn merge(
    dir: &mut BTreeMap<Vec<u8>, Node>,
    image_dir: &[u8],
    local_dir: &std::path::Path,
    collisions: &mut Vec<String>,
    profile_dir: &[u8],
) -> Result<(), LayerError> {
    let mut entries: Vec<(Vec<u8>, PathBuf)> = fs::read_dir(local_dir)
        .map_err(|e| LayerError::io(local_dir, e))?
        .map(|entry| {
            let entry = entry.map_err(|e| LayerError::io(local_dir, e))?;
            Ok((entry.file_name().as_bytes().to_vec(), entry.path()))
        })
        .collect::<Result<_, LayerError>>()?;
    entries.sort();
    for (name, local) in entries {
        let target = [image_dir, b"/", &name].concat();
        let here = [profile_dir, b"/", &name].concat();
        // Followed like buildEnv does, so a link to a folder merges as one.
        let is_dir = local.is_dir();
        match dir.get_mut(&name) {
            None => {
                dir.insert(
                    name,
                    Node::Link {
                        target,
                        local,
                        is_dir,
                    },
                );
            }
            Some(existing) => {
                if is_dir {
                    if let Node::Link {
                        target: old_target,
                        local: old_local,
                        is_dir: true,
                    } = existing
                    {
                        let mut expanded = BTreeMap::new();
                        let (old_target, old_local) = (old_target.clone(), old_local.clone());
                        merge(&mut expanded, &old_target, &old_local, collisions, &here)?;
                        *existing = Node::Dir(expanded);
                    }
                    if let Node::Dir(children) = existing {
                        merge(children, &target, &local, collisions, &here)?;
                        continue;
                    }
                }
                collisions.push(String::from_utf8_lossy(&here).into_owned());
            }
        }
    }
    Ok(())
}

fn emit(tree: &mut Tree, at: &[u8], dir: &BTreeMap<Vec<u8>, Node>) {
    for (name, node) in dir {
        let path = [at, b"/", name].concat();
        match node {
            Node::Link { target, .. } => tree.add_symlink(&path, target),
            Node::Dir(children) => {
                tree.add_dir(&path, 0o755);
                emit(tree, &path, children);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::test_support::package;
    use crate::layer::Kind;

    fn listing(tree: &Tree) -> Vec<String> {
        tree.entries()
            .map(|e| {
                let name = String::from_utf8_lossy(&e.name).into_owned();
                match &e.kind {
                    Kind::Symlink { target } => {
                        let target = String::from_utf8_lossy(target);
                        format!("{name} -> {}", target.rsplit_once('-').unwrap().1)
                    }
                    _ => name,
                }
            })
            .filter(|l| l.starts_with("nix/var/kiln/profile"))
            .collect()
    }

    #[test]
    fn shared_folders_become_real_and_first_package_wins() {
        let dir = tempfile::tempdir().unwrap();
        let node = package(dir.path(), "node", &["bin/node", "bin/npm", "lib/node/x"]);
        let python = package(
            dir.path(),
            "python",
            &["bin/python3", "bin/npm", "share/doc"],
        );
        let (tree, collisions) = profile(&[node, python]).unwrap();
        assert_eq!(
            listing(&tree),
            [
                "nix/var/kiln/profile",
                "nix/var/kiln/profile/bin",
                "nix/var/kiln/profile/bin/node -> node/bin/node",
                "nix/var/kiln/profile/bin/npm -> node/bin/npm",
                "nix/var/kiln/profile/bin/python3 -> python/bin/python3",
                "nix/var/kiln/profile/lib -> node/lib",
                "nix/var/kiln/profile/share -> python/share",
            ]
        );
        assert_eq!(collisions, ["/nix/var/kiln/profile/bin/npm"]);
    }
}
