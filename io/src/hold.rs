//! Locks that keep a cache entry from being pruned while a process uses it.
//!
//! Every user of an entry (the process writing it, and every process
//! reading it) holds a shared `flock` on the entry itself, a file or a
//! folder; only pruning takes the exclusive lock, and only without waiting.
//! So a prune never removes what a running kiln holds, and what a killed
//! kiln held is free the moment it dies: the kernel drops its locks.
//!
//! A lock names an inode, not a path. Whoever locks an entry checks, once
//! locked, that the path still names the inode it locked: a prune that
//! removed it in between leaves a lock on nothing, which is a miss.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// What [`claim`] found.
#[derive(Debug)]
pub enum Claim {
    /// No process holds the entry; while this lock lives, none can start to.
    Free(Claimed),
    /// A running process holds the entry.
    Held,
    /// Nothing is at the path (any more).
    Gone,
}

/// The exclusive lock of a claimed entry, released when dropped.
#[derive(Debug)]
pub struct Claimed {
    _lock: Option<File>,
}

/// Takes a shared lock on the entry at `path` (a file or folder), waiting
/// while a prune holds it; `None` when nothing is there once locked.
pub fn hold(path: &Path) -> io::Result<Option<File>> {
    let file = match open_entry(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    file.lock_shared()?;
    Ok(is_at(path, &file)?.then_some(file))
}

/// Shares the lock of `file`, just created at `path`, the way [`hold`]
/// does; `false` when a prune removed it before the lock was taken, and the
/// caller must make another.
pub fn hold_new(path: &Path, file: &File) -> io::Result<bool> {
    file.lock_shared()?;
    is_at(path, file)
}

/// Tries to take the entry at `path` for removal, without waiting.
pub fn claim(path: &Path) -> io::Result<Claim> {
    let file = match open_entry(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Claim::Gone),
        // A symlink: no kiln process makes or locks one where entries are.
        Err(err) if err.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Ok(Claim::Free(Claimed { _lock: None }))
        }
        Err(err) => return Err(err),
    };
    match file.try_lock() {
        Ok(()) if is_at(path, &file)? => Ok(Claim::Free(Claimed { _lock: Some(file) })),
        Ok(()) => Ok(Claim::Gone),
        Err(TryLockError::WouldBlock) => Ok(Claim::Held),
        Err(TryLockError::Error(err)) => Err(err),
    }
}

/// Opens a file or folder for locking, never through a final symlink.
fn open_entry(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Whether `path` still names the inode `file` has open.
fn is_at(path: &Path, file: &File) -> io::Result<bool> {
    let open = file.metadata()?;
    match path.symlink_metadata() {
        Ok(named) => Ok(named.dev() == open.dev() && named.ino() == open.ino()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn a_held_entry_cannot_be_claimed_and_a_claimed_one_waits_for_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blob");
        fs::write(&file, b"x").unwrap();
        let folder = dir.path().join("diff");
        fs::create_dir(&folder).unwrap();
        for entry in [&file, &folder] {
            let held = hold(entry).unwrap().expect("the entry is there");
            assert!(matches!(claim(entry).unwrap(), Claim::Held));
            // Other users share it.
            assert!(hold(entry).unwrap().is_some());
            drop(held);
            assert!(matches!(claim(entry).unwrap(), Claim::Free(_)));
        }
        assert!(matches!(
            claim(&dir.path().join("none")).unwrap(),
            Claim::Gone
        ));
        assert!(hold(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn a_lock_on_a_replaced_entry_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry");
        fs::write(&path, b"old").unwrap();
        let old = File::open(&path).unwrap();
        fs::remove_file(&path).unwrap();
        assert!(!hold_new(&path, &old).unwrap());
        fs::write(&path, b"new").unwrap();
        assert!(
            !hold_new(&path, &old).unwrap(),
            "another inode is there now"
        );
    }

    #[test]
    fn symlinks_are_never_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        fs::write(&target, b"x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let _held = hold(&target).unwrap().unwrap();
        assert!(matches!(claim(&link).unwrap(), Claim::Free(_)));
    }
}
