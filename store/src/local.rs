//! kiln's own store folder, laid out as DESIGN.md says:
//!
//! ```text
//! <cache>/store/<hash>-<name>/   realized paths, read-only once valid
//! <cache>/store/.valid/<hash>    written last: the path is complete
//! <cache>/store/.locks/<hash>    flock: shared while used, exclusive while written or pruned
//! <cache>/narinfo/<hash>.narinfo verified narinfo copies
//! ```
//!
//! A path is written under `.tmp-<hash>-<name>`, synced, renamed into place,
//! and only then marked valid, so the folder holds complete paths or none.
//!
//! Paths realized with signatures off (`kiln realize --no-verify`) share the
//! folder: a verified realization re-checks a valid path's kept narinfo
//! against its trusted keys and fetches the path again when it fails (see
//! `Store::is_valid_for`), so they never stand in for verified ones. That
//! holds for caches written by earlier versions too, whose markers did not
//! say how the path was checked.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiln_io::{commit_dir, write_atomically};
use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix_derivation::{StoreDir, StorePath};
use nix_narinfo::NarInfo;

use crate::error::{IoContext, StoreError};
use crate::nar::remove_tree;
use crate::narinfo::hash_part;

/// The host's Nix store, whose valid paths are used in place.
pub const HOST_STORE: &str = "/nix/store";

const VALID: &str = ".valid";
const HOST_VERIFIED: &str = ".host-verified";
const LOCKS: &str = ".locks";
const TEMP_PREFIX: &str = ".tmp-";

/// kiln's store folder and narinfo copies inside a cache folder.
#[derive(Debug, Clone)]
pub struct Store {
    store: PathBuf,
    narinfo: PathBuf,
    host_store: Option<PathBuf>,
}

impl Store {
    /// Opens (creating when needed) the store inside kiln's cache folder.
    /// The host's `/nix/store` is consulted; see [`Store::with_host_store`].
    pub fn open(cache_dir: &Path) -> Result<Store, StoreError> {
        let store = cache_dir.join("store");
        let narinfo = cache_dir.join("narinfo");
        for dir in [
            store.join(VALID),
            store.join(LOCKS),
            store.join(HOST_VERIFIED),
            narinfo.clone(),
        ] {
            fs::create_dir_all(&dir).at(&dir)?;
        }
        Ok(Store {
            store,
            narinfo,
            host_store: Some(PathBuf::from(HOST_STORE)),
        })
    }

    /// Sets the folder whose paths are used in place when present and
    /// matching their `NarHash`; `None` always downloads.
    pub fn with_host_store(mut self, host_store: Option<PathBuf>) -> Store {
        self.host_store = host_store;
        self
    }

    /// The host store consulted, if any.
    pub fn host_store(&self) -> Option<&Path> {
        self.host_store.as_deref()
    }

    /// The folder holding realized paths.
    pub fn dir(&self) -> &Path {
        &self.store
    }

    /// Where `path`'s files are (or will be) in kiln's store.
    pub fn location(&self, path: &StorePath) -> PathBuf {
        self.store.join(path.to_basename())
    }

    /// Whether `path` is complete in kiln's store.
    pub fn is_valid(&self, path: &StorePath) -> bool {
        // A store path may be a folder, a file or a symlink.
        self.marker(path).exists() && self.location(path).symlink_metadata().is_ok()
    }

    /// The verified narinfo kept for a valid path.
    pub fn cached_narinfo(&self, path: &StorePath) -> Option<NarInfo> {
        let bytes = fs::read(self.narinfo_copy(path)).ok()?;
        NarInfo::parse_in(&StoreDir::default(), &bytes)
            .ok()
            .filter(|info| info.store_path() == path)
    }

    /// Takes a shared lock on `path`: while it is held, no prune removes it.
    pub fn hold(&self, path: &StorePath) -> Result<File, StoreError> {
        let lock = self.lock_file(path)?;
        lock.lock_shared().at(self.lock_path(path))?;
        Ok(lock)
    }

    pub(crate) fn lock_file(&self, path: &StorePath) -> Result<File, StoreError> {
        let lock_path = self.lock_path(path);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .at(lock_path)
    }

    fn lock_path(&self, path: &StorePath) -> PathBuf {
        self.store.join(LOCKS).join(hash_part(path))
    }

    fn marker(&self, path: &StorePath) -> PathBuf {
        self.store.join(VALID).join(hash_part(path))
    }

    /// Whether the host store's `host` copy of `path` was found to have the
    /// NAR hash `expected` before and is still the same folder: Nix never
    /// changes a store path in place, so while it has the same inode and
    /// change time the earlier check holds, and a rebuild need not hash
    /// the whole closure again.
    pub(crate) fn host_verified(&self, path: &StorePath, host: &Path, expected: &str) -> bool {
        let Some(seen) = host_fingerprint(host, expected) else {
            return false;
        };
        fs::read_to_string(self.host_record(path)).is_ok_and(|recorded| recorded == seen)
    }

    /// Records that `host` had the NAR hash `expected`. Failing to record
    /// only costs a later check, so errors are ignored.
    pub(crate) fn record_host_verified(&self, path: &StorePath, host: &Path, expected: &str) {
        if let Some(seen) = host_fingerprint(host, expected) {
            let _ = write_atomically(&self.host_record(path), seen.as_bytes());
        }
    }

    fn host_record(&self, path: &StorePath) -> PathBuf {
        self.store.join(HOST_VERIFIED).join(hash_part(path))
    }

    fn narinfo_copy(&self, path: &StorePath) -> PathBuf {
        self.narinfo.join(format!("{}.narinfo", hash_part(path)))
    }

    /// The temporary name `path` is restored under. Only the holder of the
    /// path's exclusive lock writes it.
    pub(crate) fn temp_location(&self, path: &StorePath) -> PathBuf {
        self.store
            .join(format!("{TEMP_PREFIX}{}", path.to_basename()))
    }

    /// Removes what a killed writer of `path` left, or a valid copy about
    /// to be replaced (one realized unverified, for a verified
    /// realization). Call with the exclusive lock held.
    pub(crate) fn clear_leftovers(&self, path: &StorePath) -> Result<(), StoreError> {
        // The marker goes first: a half-removed path is never valid.
        remove_if_present(&self.marker(path))?;
        remove_if_present(&self.narinfo_copy(path))?;
        for leftover in [self.temp_location(path), self.location(path)] {
            remove_tree(&leftover).at(&leftover)?;
        }
        Ok(())
    }

    /// Moves a verified tree into place and marks it valid: synced first,
    /// so a crash leaves either no path or a complete one.
    pub(crate) fn commit(
        &self,
        path: &StorePath,
        temp: &Path,
        info: &NarInfo,
    ) -> Result<(), StoreError> {
        let location = self.location(path);
        commit_dir(temp, &location).at(&location)?;
        let narinfo = self.narinfo_copy(path);
        write_atomically(&narinfo, &info.to_canonical_bytes()).at(&narinfo)?;
        let marker = self.marker(path);
        write_atomically(&marker, b"").at(marker)
    }

    /// Records that `path` was used now, for `prune`.
    pub(crate) fn touch(&self, path: &StorePath) {
        let now = TimeSpec::UTIME_NOW;
        // Only prune reads this time; failing to update it is harmless.
        let _ = utimensat(
            nix::fcntl::AT_FDCWD,
            &self.marker(path),
            &now,
            &now,
            UtimensatFlags::FollowSymlink,
        );
    }

    /// Every path in kiln's store, and what killed writers left (a
    /// temporary copy, a path without its marker, a narinfo copy without
    /// its path), with their sizes, last uses and references, for a prune
    /// to choose from.
    pub fn entries(&self) -> Result<Vec<StoreEntry>, StoreError> {
        let mut entries = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for name in sorted_names(&self.store)? {
            if [VALID, LOCKS, HOST_VERIFIED].contains(&name.as_str()) {
                continue;
            }
            let basename = name.strip_prefix(TEMP_PREFIX).unwrap_or(&name);
            let Ok(path) = StorePath::from_basename(basename.as_bytes()) else {
                continue;
            };
            let marker = fs::metadata(self.marker(&path));
            let leftover = name.starts_with(TEMP_PREFIX) || marker.is_err();
            let references = match leftover {
                true => Vec::new(),
                false => self.cached_narinfo(&path).map_or_else(Vec::new, |info| {
                    info.references()
                        .iter()
                        .filter(|r| *r != &path)
                        .cloned()
                        .collect()
                }),
            };
            seen.insert(hash_part(&path).to_string());
            entries.push(StoreEntry {
                files: vec![self.store.join(&name), self.narinfo_copy(&path)],
                last_used: marker
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH),
                references,
                leftover,
                path,
            });
        }
        for name in sorted_names(&self.narinfo)? {
            let Some(hash) = name.strip_suffix(".narinfo") else {
                continue;
            };
            if seen.contains(hash) {
                continue;
            }
            let copy = self.narinfo.join(&name);
            let Some(info) = fs::read(&copy)
                .ok()
                .and_then(|bytes| NarInfo::parse_in(&StoreDir::default(), &bytes).ok())
                .filter(|info| hash_part(info.store_path()) == hash)
            else {
                continue;
            };
            entries.push(StoreEntry {
                path: info.store_path().clone(),
                files: vec![copy],
                last_used: SystemTime::UNIX_EPOCH,
                references: Vec::new(),
                leftover: true,
            });
        }
        Ok(entries)
    }

    /// Whether a running process holds `path` (realizing or using it).
    pub fn is_held(&self, path: &StorePath) -> Result<bool, StoreError> {
        let lock = self.lock_file(path)?;
        match lock.try_lock() {
            Ok(()) => Ok(false),
            Err(fs::TryLockError::WouldBlock) => Ok(true),
            Err(fs::TryLockError::Error(err)) => Err(err).at(self.lock_path(path)),
        }
    }

    /// Removes `path` (valid or a leftover) with its marker and narinfo
    /// copy, unless a running process holds it or used it after `seen`,
    /// the last use the caller knew of: a process that used it and has
    /// ended since made the caller's choice stale.
    pub fn remove(&self, path: &StorePath, seen: SystemTime) -> Result<Removal, StoreError> {
        let lock = self.lock_file(path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(Removal::Held),
            Err(fs::TryLockError::Error(err)) => return Err(err).at(self.lock_path(path)),
        }
        let marker = fs::metadata(self.marker(path)).and_then(|m| m.modified());
        if marker.is_ok_and(|used| used > seen) {
            return Ok(Removal::Held);
        }
        self.clear_leftovers(path)?;
        Ok(Removal::Removed)
    }
}

/// One path of kiln's store, as [`Store::entries`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// The store path.
    pub path: StorePath,
    /// Where its files are: the path (or what a writer left of it) and its
    /// narinfo copy, for measuring.
    pub files: Vec<PathBuf>,
    /// When a realization last used it (the epoch for leftovers).
    pub last_used: SystemTime,
    /// The other paths it refers to, which must stay while it does.
    pub references: Vec<StorePath>,
    /// What a killed writer left rather than a valid path.
    pub leftover: bool,
}

/// What [`Store::remove`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Removed.
    Removed,
    /// Kept: a running process holds it, or used it since the caller
    /// looked.
    Held,
}

/// The names in `dir`, sorted; those that are not UTF-8 are never kiln's.
fn sorted_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .at(dir)?
        .map(|entry| entry.map(|e| e.file_name()).at(dir))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .filter_map(|name| name.into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err).at(path),
        _ => Ok(()),
    }
}

/// `expected` with the identity of the file or folder at `host`.
fn host_fingerprint(host: &Path, expected: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = host.symlink_metadata().ok()?;
    Some(format!(
        "{expected} {} {} {} {}\n",
        meta.dev(),
        meta.ino(),
        meta.ctime(),
        meta.ctime_nsec()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(name: &str) -> StorePath {
        StorePath::from_basename(format!("0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-{name}").as_bytes())
            .unwrap()
    }

    #[test]
    fn held_paths_stay_and_leftovers_are_listed_and_removed() {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap();
        let held = path("held");
        let leftover =
            StorePath::from_basename(b"1c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-leftover").unwrap();
        fs::create_dir(store.location(&held)).unwrap();
        fs::write(store.location(&held).join("f"), "12345").unwrap();
        fs::write(store.marker(&held), "").unwrap();
        fs::create_dir(store.temp_location(&leftover)).unwrap();

        let entries = store.entries().unwrap();
        let find = |p: &StorePath| entries.iter().find(|e| &e.path == p).unwrap().clone();
        assert!(!find(&held).leftover);
        assert_eq!(find(&held).files[0], store.location(&held));
        assert!(find(&leftover).leftover);

        let guard = store.hold(&held).unwrap();
        assert!(store.is_held(&held).unwrap());
        assert_eq!(
            store.remove(&held, SystemTime::now()).unwrap(),
            Removal::Held
        );
        assert!(store.is_valid(&held));
        assert_eq!(
            store.remove(&leftover, SystemTime::UNIX_EPOCH).unwrap(),
            Removal::Removed
        );
        assert!(!store.temp_location(&leftover).exists());

        drop(guard);
        let seen = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        fs::File::open(store.marker(&held))
            .unwrap()
            .set_modified(seen)
            .unwrap();
        store.touch(&held);
        // Used since it was listed: kept, though nobody holds it now.
        assert_eq!(store.remove(&held, seen).unwrap(), Removal::Held);
        assert_eq!(
            store.remove(&held, SystemTime::now()).unwrap(),
            Removal::Removed
        );
        assert!(!store.is_valid(&held));
        assert!(!store.location(&held).exists());
    }

    #[test]
    fn a_use_is_recorded_on_the_marker() {
        let cache = tempfile::tempdir().unwrap();
        let store = Store::open(cache.path()).unwrap();
        let used = path("used");
        fs::create_dir(store.location(&used)).unwrap();
        fs::write(store.marker(&used), "").unwrap();
        let old = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1000);
        fs::File::open(store.marker(&used))
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(store.entries().unwrap()[0].last_used, old);
        store.touch(&used);
        assert!(store.entries().unwrap()[0].last_used > old);
    }

    #[test]
    fn a_store_path_that_links_to_a_host_fifo_or_folder_is_never_followed() {
        let cache = tempfile::tempdir().unwrap();
        let host = tempfile::tempdir().unwrap();
        let fifo = host.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        fs::write(host.path().join("secret"), "host only").unwrap();
        let store = Store::open(cache.path()).unwrap();
        let (send, receive) = std::sync::mpsc::channel();
        let targets = [fifo.clone(), host.path().to_path_buf()];
        std::thread::spawn(move || {
            for (name, target) in ["fifo", "folder"].into_iter().zip(targets) {
                let path = path(name);
                let text = format!(
                    "StorePath: {path}\nURL: nar/a.nar\nCompression: none\n\
                     NarHash: sha256:1b8m03r63zqhnjf7l5wnldhh7c134ap5vpj0850ymkq1iyzicy5s\n\
                     NarSize: 120\nReferences: \n"
                );
                let info = crate::narinfo::parse_narinfo(text.as_bytes(), "test", &path).unwrap();
                let temp = store.temp_location(&path);
                std::os::unix::fs::symlink(&target, &temp).unwrap();
                store.commit(&path, &temp, &info).unwrap();
                assert!(store.is_valid(&path));
                assert_eq!(fs::read_link(store.location(&path)).unwrap(), target);
            }
            let removed: Result<Vec<_>, _> = [path("fifo"), path("folder")]
                .iter()
                .map(|p| store.remove(p, SystemTime::now()))
                .collect();
            send.send(removed.map(|r| r.len())).unwrap();
        });
        let pruned = receive.recv_timeout(std::time::Duration::from_secs(20));
        assert_eq!(pruned.expect("the store hung on a link").unwrap(), 2);
        assert_eq!(
            fs::read_to_string(host.path().join("secret")).unwrap(),
            "host only"
        );
        assert!(fifo.exists());
    }
}
