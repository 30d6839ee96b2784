//! Last-use records, and the entries this process holds.
//!
//! An entry's last use is the modification time of its own file or folder
//! (for store paths, of their validity marker), set to now each time a
//! build uses it: one `futimens`, no lock taken or waited for, no data
//! written. A prune reads these times to find the least recently used.
//!
//! Each entry a kiln uses or writes stays held (a shared lock, see
//! [`kiln_io::hold`]) until the process exits, so a prune running at the
//! same time never removes it; a killed kiln holds nothing.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

/// The entries this process holds, by path. A kiln process is one command,
/// so holding until exit is holding until the command is done; keyed by
/// path so an entry used many times is held once.
static HELD: Mutex<Option<HashMap<PathBuf, File>>> = Mutex::new(None);

fn held() -> MutexGuard<'static, Option<HashMap<PathBuf, File>>> {
    HELD.lock().unwrap_or_else(|e| e.into_inner())
}

/// Holds the entry at `path` (a file or folder) for the rest of this
/// process and records that it was used now; `false` when it is not there,
/// or went while a prune had it: the caller treats that as a miss.
pub fn use_entry(path: &Path) -> bool {
    let mut held = held();
    let held = held.get_or_insert_with(HashMap::new);
    if let Some(file) = held.get(path) {
        touch(file);
        return true;
    }
    match kiln_io::hold::hold(path) {
        Ok(Some(file)) => {
            touch(&file);
            held.insert(path.to_path_buf(), file);
            true
        }
        Ok(None) => false,
        Err(err) => {
            tracing::debug!("could not hold {}: {err}", path.display());
            false
        }
    }
}

/// Keeps `file`, an entry this process just wrote at `path` and holds
/// (see [`kiln_io::AtomicFile::commit_held`]), held for the rest of the
/// process.
pub fn keep(path: &Path, file: File) {
    held()
        .get_or_insert_with(HashMap::new)
        .insert(path.to_path_buf(), file);
}

/// Records a use now. Only prunes read the time, so failing to set it (a
/// cache shared with another user, who owns the entry) costs nothing else.
fn touch(file: &File) {
    let _ = file.set_modified(SystemTime::now());
}

/// A new folder `<prefix><random>` in `parent` for one run's scratch files
/// (a build's staged app and phase diffs, an evaluation), held while it
/// lives so a prune leaves it alone, and removed when dropped. What a
/// killed run left is no longer held, and the next prune removes it.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    _lock: File,
}

impl WorkDir {
    /// Creates the folder (and `parent`).
    pub fn new(parent: &Path, prefix: &str) -> io::Result<WorkDir> {
        std::fs::create_dir_all(parent)?;
        loop {
            let path = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(parent)?
                .keep();
            // A prune may take the new, unheld folder for a leftover.
            if let Some(lock) = kiln_io::hold::hold(&path)? {
                return Ok(WorkDir { path, _lock: lock });
            }
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // The sandbox leaves folders without permissions (the overlay's
        // work folder is mode 000), which a plain removal stops at.
        if let Err(err) = kiln_store::nar::remove_tree(&self.path) {
            tracing::warn!(
                "could not remove {}: {err}; `kiln cache prune` removes it",
                self.path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_io::hold::{claim, Claim};
    use std::time::Duration;

    #[test]
    fn a_used_entry_is_held_and_its_use_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("entry.json");
        std::fs::write(&entry, "{}").unwrap();
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        File::open(&entry).unwrap().set_modified(old).unwrap();
        assert!(use_entry(&entry));
        assert!(std::fs::metadata(&entry).unwrap().modified().unwrap() > old);
        assert!(matches!(claim(&entry).unwrap(), Claim::Held));
        assert!(!use_entry(&dir.path().join("missing.json")));
    }

    #[test]
    fn work_folders_are_held_and_removed_with_folders_the_sandbox_locked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let work = WorkDir::new(&dir.path().join("build-work"), "build-").unwrap();
        let path = work.path().to_path_buf();
        assert!(matches!(claim(&path).unwrap(), Claim::Held));
        let locked = path.join("phase-0/work/work");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        drop(work);
        assert!(!path.exists());
    }
}
