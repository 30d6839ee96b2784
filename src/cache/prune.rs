//! Pruning: read every entry, ask which a running kiln holds, choose with
//! [`select`](super::select), remove.
//!
//! Each removal first claims the entry (its exclusive lock, without
//! waiting), so an entry a kiln started to use after the choice was made
//! is skipped, never removed under it. A folder loses its record first and
//! is renamed to a temporary name before its files go, so a prune killed
//! at any point leaves whole entries and leftovers, which the next prune
//! removes.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use anyhow::Context;
use kiln_io::hold::{claim, Claim};
use kiln_store::Store;

use super::entries::{scan, Entry, Kind, Removal};
use super::select::{select, Candidate, Limits};

/// One entry a prune removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its kind.
    pub kind: Kind,
    /// Its name (a store path, or its path in the cache).
    pub name: String,
    /// Bytes freed.
    pub bytes: u64,
    /// Whether an interrupted run left it.
    pub leftover: bool,
}

/// What a prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed, in the order they went.
    pub removed: Vec<Removed>,
    /// Entries kept because a running kiln holds them.
    pub held: Vec<String>,
    /// Bytes the cache holds now.
    pub remaining: u64,
}

impl Pruned {
    /// Bytes freed.
    pub fn freed(&self) -> u64 {
        self.removed.iter().map(|r| r.bytes).sum()
    }
}

/// Prunes the cache at `root` down to `limits`, removing every leftover
/// of an interrupted run too.
pub fn prune(root: &Path, limits: &Limits) -> anyhow::Result<Pruned> {
    let entries =
        scan(root).with_context(|| format!("could not read the cache at {}", root.display()))?;
    let store = Store::open(root)?;
    let index: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut candidates = Vec::with_capacity(entries.len());
    for entry in &entries {
        candidates.push(Candidate {
            bytes: entry.bytes,
            last_used: entry.last_used,
            needs: entry
                .needs
                .iter()
                .filter_map(|name| index.get(name.as_str()).copied())
                .collect(),
            held: is_held(&store, entry)
                .with_context(|| format!("could not check whether {} is in use", entry.name))?,
            leftover: entry.leftover,
        });
    }
    let mut pruned = Pruned {
        held: entries
            .iter()
            .zip(&candidates)
            .filter(|(_, c)| c.held)
            .map(|(e, _)| e.name.clone())
            .collect(),
        ..Pruned::default()
    };
    let mut remaining: u64 = entries.iter().map(|e| e.bytes).sum();
    for index in select(&candidates, limits) {
        let entry = &entries[index];
        let gone = remove(&store, entry).with_context(|| {
            format!(
                "could not remove {} from the cache; check that you own it, or remove it by hand",
                entry.name
            )
        })?;
        if gone {
            remaining -= entry.bytes;
            pruned.removed.push(Removed {
                kind: entry.kind,
                name: entry.name.clone(),
                bytes: entry.bytes,
                leftover: entry.leftover,
            });
        } else {
            pruned.held.push(entry.name.clone());
        }
    }
    remove_empty_key_folders(&root.join("build-cache"));
    pruned.remaining = remaining;
    Ok(pruned)
}

/// The cutoff for `--older-than`: entries last used at or before it.
pub fn unused_since(age: std::time::Duration) -> SystemTime {
    SystemTime::now()
        .checked_sub(age)
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

fn is_held(store: &Store, entry: &Entry) -> anyhow::Result<bool> {
    Ok(match &entry.removal {
        Removal::StorePath(path) => store.is_held(path)?,
        Removal::File(path) | Removal::Folder { dir: path, .. } => {
            matches!(claim(path)?, Claim::Held)
        }
    })
}

/// Removes `entry` unless a kiln holds it or used it after the scan;
/// `false` when one does. A build that used the entry and ended while
/// this prune was at work holds it no more, but the choice to remove it
/// was made from the use the scan saw, and is stale.
fn remove(store: &Store, entry: &Entry) -> anyhow::Result<bool> {
    let seen = entry.last_used;
    match &entry.removal {
        Removal::StorePath(path) => Ok(store.remove(path, seen)? == kiln_store::Removal::Removed),
        Removal::File(path) => match claim(path)? {
            Claim::Held => Ok(false),
            Claim::Gone => Ok(true),
            Claim::Free(_) if used_after(path, seen)? => Ok(false),
            Claim::Free(_claimed) => {
                remove_if_present(path)?;
                Ok(true)
            }
        },
        Removal::Folder { dir, record } => match claim(dir)? {
            Claim::Held => Ok(false),
            Claim::Gone => Ok(true),
            Claim::Free(_) if used_after(dir, seen)? => Ok(false),
            Claim::Free(_claimed) => {
                if let Some(record) = record {
                    remove_if_present(record)?;
                }
                let aside = aside(dir);
                fs::rename(dir, &aside)?;
                kiln_store::nar::remove_tree(&aside)?;
                Ok(true)
            }
        },
    }
}

/// Whether the entry at `path` records a use later than `seen`.
fn used_after(path: &Path, seen: SystemTime) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(meta.modified()? > seen),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

/// A temporary name beside `dir` for removing it: a leftover, should the
/// removal be cut short.
fn aside(dir: &Path) -> std::path::PathBuf {
    let name = dir.file_name().unwrap_or_default().to_string_lossy();
    match name.starts_with('.') {
        true => dir.to_path_buf(),
        false => dir.with_file_name(format!(".tmp-prune-{name}")),
    }
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// `build-cache/<key>/` folders left empty; one a build fills meanwhile
/// is not empty, and stays.
fn remove_empty_key_folders(build_cache: &Path) {
    if let Ok(keys) = fs::read_dir(build_cache) {
        for key in keys.flatten() {
            let _ = fs::remove_dir(key.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::records;

    fn write(root: &Path, path: &str, bytes: &[u8]) {
        let path = root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, bytes).unwrap();
    }

    fn age(root: &Path, path: &str, seconds: u64) {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(seconds);
        fs::File::open(root.join(path))
            .unwrap()
            .set_modified(time)
            .unwrap();
    }

    #[test]
    fn a_layer_and_its_blob_go_together_and_leftovers_always_go() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (old, new) = ("aa".repeat(32), "bb".repeat(32));
        for (hex, used) in [(&old, 100), (&new, 200)] {
            write(root, &format!("blobs/sha256/{hex}"), &[0; 100]);
            let index = format!("layers/{hex}.json");
            write(
                root,
                &index,
                format!(r#"{{"digest":"sha256:{hex}"}}"#).as_bytes(),
            );
            age(root, &index, used);
        }
        // The newer layer's blob was written long ago: its index entry's
        // use keeps it.
        age(root, &format!("blobs/sha256/{new}"), 1);
        age(root, &format!("blobs/sha256/{old}"), 100);
        write(root, "phases/k/work/work/x", b"");
        write(root, "blobs/sha256/.tmp-dead", &[0; 9]);

        // Room for one layer (a 100-byte blob and its index entry).
        let limits = Limits {
            max_size: Some(190),
            ..Limits::default()
        };
        let pruned = prune(root, &limits).unwrap();
        let names: Vec<&str> = pruned.removed.iter().map(|r| r.name.as_str()).collect();
        let old_index = format!("layers/{old}.json");
        let old_blob = format!("blobs/sha256/{old}");
        assert_eq!(
            names,
            [
                "blobs/sha256/.tmp-dead",
                "phases/k",
                old_index.as_str(),
                old_blob.as_str()
            ]
        );
        assert!(root.join(format!("blobs/sha256/{new}")).is_file());
        assert!(!root.join("phases/k").exists());
        assert!(!root.join("phases/.tmp-prune-k").exists());
        assert_eq!(
            pruned.remaining,
            100 + fs::metadata(root.join(format!("layers/{new}.json")))
                .unwrap()
                .len()
        );
    }

    #[test]
    fn what_this_process_holds_stays() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "phases/k/app/f", b"diff");
        write(root, "phases/k.json", b"{}");
        let work = records::WorkDir::new(&root.join("build-work"), "build-").unwrap();
        assert!(records::use_entry(&root.join("phases/k")));
        let limits = Limits {
            unused_since: Some(SystemTime::now() + std::time::Duration::from_secs(60)),
            max_size: Some(0),
        };
        let pruned = prune(root, &limits).unwrap();
        assert!(pruned.removed.is_empty(), "{pruned:?}");
        assert_eq!(pruned.held.len(), 2);
        assert!(root.join("phases/k.json").is_file());
        assert!(work.path().is_dir());
    }

    #[test]
    fn an_entry_used_after_the_scan_stays_though_nobody_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let hex = "cc".repeat(32);
        write(root, &format!("blobs/sha256/{hex}"), b"blob");
        write(root, "phases/k/app/f", b"diff");
        write(root, "phases/k.json", b"{}");
        for path in [format!("blobs/sha256/{hex}"), "phases/k".to_string()] {
            age(root, &path, 100);
        }
        let entries = scan(root).unwrap();
        let store = Store::open(root).unwrap();
        // Another build used both, and ended, while the prune was at work.
        for path in [format!("blobs/sha256/{hex}"), "phases/k".to_string()] {
            let entry = fs::File::open(root.join(path)).unwrap();
            entry.set_modified(SystemTime::now()).unwrap();
        }
        for entry in &entries {
            assert!(!remove(&store, entry).unwrap(), "{} went", entry.name);
        }
        assert!(root.join(format!("blobs/sha256/{hex}")).is_file());
        assert!(root.join("phases/k.json").is_file());

        let entries = scan(root).unwrap();
        for entry in &entries {
            assert!(remove(&store, entry).unwrap(), "{} stayed", entry.name);
        }
        assert!(!root.join("phases/k").exists());
    }
}
