//! The phase cache: a phase whose inputs are unchanged reuses the diff it
//! left last time instead of running.
//!
//! An entry is `phases/<key>/` (the phase's upper folder, in overlay
//! format, used directly as a lower of later phases and packed like a fresh
//! diff) and `phases/<key>.json`, written last: an entry without its
//! record is incomplete and never read.
//!
//! The diff folder is the entry's lock and last-use record (see
//! [`crate::cache::records`]): held from before it is moved in by the build
//! that made it, and by every build that reuses it.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use kiln_io::hold::{claim, Claim};
use kiln_io::write_atomically;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::cache::records;
use crate::layer::digest::KeyHasher;

/// Bumped when what a key covers or an entry holds changes.
const KEY_VERSION: &str = "kiln-phase-cache-2";

/// The phase cache under a kiln cache folder.
pub struct PhaseCache {
    dir: PathBuf,
}

/// Everything that decides what a phase writes.
pub struct PhaseKey<'a> {
    /// The phase's name.
    pub name: &'a str,
    /// Its commands.
    pub commands: &'a [String],
    /// Its whole environment.
    pub env: &'a [(String, String)],
    /// Every store path it can see.
    pub store_paths: &'a [String],
    /// Its cache directories.
    pub cache_directories: &'a [String],
    /// Hash of the files it sees at `/app` (and `/assets`).
    pub app_files: &'a str,
    /// Keys of the phases beneath it, in order.
    pub earlier: &'a [String],
    /// What everything stands on: the base image's manifest digest (if
    /// any) and the base files' hash.
    pub base: &'a str,
}

impl PhaseKey<'_> {
    /// The key: sha256 over every part, each length-prefixed.
    pub fn digest(&self) -> String {
        let mut hasher = KeyHasher::new();
        let mut part = |bytes: &[u8]| hasher.field(bytes);
        part(KEY_VERSION.as_bytes());
        part(self.name.as_bytes());
        part(self.base.as_bytes());
        for list in [
            self.commands,
            self.store_paths,
            self.cache_directories,
            self.earlier,
        ] {
            part(&(list.len() as u64).to_le_bytes());
            for item in list {
                part(item.as_bytes());
            }
        }
        part(&(self.env.len() as u64).to_le_bytes());
        for (key, value) in self.env {
            part(key.as_bytes());
            part(value.as_bytes());
        }
        part(self.app_files.as_bytes());
        hasher.hex()
    }
}

impl PhaseCache {
    /// The cache in `<cache_root>/phases`, created when missing.
    pub fn open(cache_root: &Path) -> anyhow::Result<PhaseCache> {
        let dir = cache_root.join("phases");
        fs::create_dir_all(&dir).with_context(|| format!("could not create {}", dir.display()))?;
        Ok(PhaseCache { dir })
    }

    /// The recorded diff of `key`, when a complete entry exists; held by
    /// this process from then on.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let upper = self.dir.join(key);
        let complete = || self.dir.join(format!("{key}.json")).is_file() && upper.is_dir();
        // Complete once held: a prune removes the record first.
        (complete() && records::use_entry(&upper) && complete()).then_some(upper)
    }

    /// Moves the diff `upper` (in the same filesystem) into the cache under
    /// `key` and records it; returns where the diff is now. When another
    /// build recorded the key first, its entry is kept and `upper` stays.
    pub fn record(&self, key: &str, phase: &str, upper: &Path) -> anyhow::Result<PathBuf> {
        let target = self.dir.join(key);
        if self.lookup(key).is_some() {
            return Ok(upper.to_path_buf());
        }
        // Held before it is moved in, so no prune takes it for a leftover
        // before its record is written.
        if !records::use_entry(upper) {
            bail!("phase {phase}: its diff {} is gone", upper.display());
        }
        match claim(&target).with_context(|| format!("could not lock {}", target.display()))? {
            Claim::Gone => {}
            // Another build is recording the same phase right now.
            Claim::Held => return Ok(upper.to_path_buf()),
            Claim::Free(_claimed) => {
                // An earlier build stopped between the rename and the record.
                kiln_store::nar::remove_tree(&target).with_context(|| {
                    format!("could not remove the incomplete {}", target.display())
                })?;
            }
        }
        // The diff's files reach the disk before the record names them, so
        // a crash leaves no record of a half-written diff.
        let folder =
            File::open(upper).with_context(|| format!("could not open {}", upper.display()))?;
        nix::unistd::syncfs(&folder)
            .with_context(|| format!("could not sync {}", upper.display()))?;
        if let Err(e) = fs::rename(upper, &target) {
            tracing::warn!("phase {phase}: not cached ({e})");
            return Ok(upper.to_path_buf());
        }
        let record = json!({"phase": phase, "key": key});
        let record_path = self.dir.join(format!("{key}.json"));
        write_atomically(&record_path, record.to_string().as_bytes())
            .with_context(|| format!("could not write {}", record_path.display()))?;
        Ok(target)
    }
}

/// sha256 of a folder's names, kinds, permission bits, link targets and
/// file bytes, in name order; files are streamed.
pub fn hash_folder(dir: &Path) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    hash_into(dir, Path::new(""), &mut hasher)
        .with_context(|| format!("could not read {}", dir.display()))?;
    Ok(hex::encode(hasher.finalize()))
}

fn hash_into(dir: &Path, relative: &Path, hasher: &mut Sha256) -> io::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let name = relative.join(entry.file_name());
        let meta = fs::symlink_metadata(&path)?;
        let name_bytes = name.as_os_str().as_encoded_bytes();
        hasher.update((name_bytes.len() as u64).to_le_bytes());
        hasher.update(name_bytes);
        hasher.update(meta.mode().to_le_bytes());
        if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)?;
            hasher.update(b"l");
            hasher.update(target.as_os_str().as_encoded_bytes());
            hasher.update([0]);
        } else if meta.is_dir() {
            hasher.update(b"d");
            hash_into(&path, &name, hasher)?;
            hasher.update(b"/d");
        } else {
            hasher.update(b"f");
            hasher.update(meta.len().to_le_bytes());
            let mut file = File::open(&path)?;
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key<'a>(env: &'a [(String, String)], app: &'a str) -> PhaseKey<'a> {
        PhaseKey {
            name: "install",
            commands: &[],
            env,
            store_paths: &[],
            cache_directories: &[],
            app_files: app,
            earlier: &[],
            base: "",
        }
    }

    #[test]
    fn every_input_changes_the_key() {
        let env = [("A".to_string(), "1".to_string())];
        let other_env = [("A".to_string(), "2".to_string())];
        let base = key(&env, "x").digest();
        assert_eq!(base, key(&env, "x").digest());
        assert_ne!(base, key(&other_env, "x").digest());
        assert_ne!(base, key(&env, "y").digest());
        let commands = ["npm ci".to_string()];
        assert_ne!(
            base,
            PhaseKey {
                commands: &commands,
                ..key(&env, "x")
            }
            .digest()
        );
        assert_ne!(
            base,
            PhaseKey {
                base: "sha256:1",
                ..key(&env, "x")
            }
            .digest()
        );
        // Parts cannot run into each other.
        let ab = [("AB".to_string(), String::new())];
        let a_b = [("A".to_string(), "B".to_string())];
        assert_ne!(key(&ab, "").digest(), key(&a_b, "").digest());
    }

    #[test]
    fn folder_hash_sees_bytes_names_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a"), "one").unwrap();
        let first = hash_folder(dir.path()).unwrap();
        fs::write(dir.path().join("a"), "two").unwrap();
        let second = hash_folder(dir.path()).unwrap();
        assert_ne!(first, second);
        fs::set_permissions(dir.path().join("a"), fs::Permissions::from_mode(0o755)).unwrap();
        assert_ne!(second, hash_folder(dir.path()).unwrap());
        fs::rename(dir.path().join("a"), dir.path().join("b")).unwrap();
        assert_ne!(second, hash_folder(dir.path()).unwrap());
    }

    #[test]
    fn entries_are_complete_or_absent() {
        let root = tempfile::tempdir().unwrap();
        let cache = PhaseCache::open(root.path()).unwrap();
        let upper = root.path().join("upper");
        fs::create_dir_all(upper.join("app/node_modules")).unwrap();
        assert!(cache.lookup("k").is_none());
        // A diff moved in without its record does not count.
        fs::create_dir(root.path().join("phases/k")).unwrap();
        assert!(cache.lookup("k").is_none());
        let stored = cache.record("k", "install", &upper).unwrap();
        assert_eq!(cache.lookup("k"), Some(stored.clone()));
        assert!(stored.join("app/node_modules").is_dir());
        assert!(!upper.exists());
    }
}
