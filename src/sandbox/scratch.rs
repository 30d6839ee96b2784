//! The sandbox's temporary folders on the host: the mount point its tmpfs
//! goes on and the overlay's work folder, removed whatever happened.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::mounts::Layout;
use super::{Sandbox, SandboxError};

/// The sandbox's temporary folders, removed on drop whatever happened.
pub(super) struct Scratch {
    mount_point: TempDir,
    work: TempDir,
}

impl Scratch {
    pub(super) fn new(sandbox: &Sandbox) -> Result<Scratch, SandboxError> {
        let error = |path: &Path| {
            let phase = sandbox.name.clone();
            let path = path.to_path_buf();
            move |source| SandboxError::Io {
                phase,
                action: "create the sandbox folder",
                path,
                source,
            }
        };
        let parent = scratch_parent();
        let mount_point = tempfile::Builder::new()
            .prefix("kiln-sandbox-")
            .tempdir_in(&parent)
            .map_err(error(&parent))?;
        let beside = sandbox.upper.parent().unwrap_or(Path::new("/"));
        let work = tempfile::Builder::new()
            .prefix(".kiln-work-")
            .tempdir_in(beside)
            .map_err(error(beside))?;
        Ok(Scratch { mount_point, work })
    }

    pub(super) fn layout(&self) -> Layout {
        Layout {
            scratch: self.mount_point.path().to_path_buf(),
            work: self.work.path().to_path_buf(),
        }
    }
}

/// Where the sandbox's mount point folder goes: the user's runtime folder
/// or `/dev/shm` (memory filesystems, where creating and removing it is
/// nearly free), else the temporary folder. Nothing is ever written into it
/// on the host: the sandbox mounts a tmpfs over it in its own namespace.
fn scratch_parent() -> PathBuf {
    let writable = |dir: &Path| {
        dir.is_dir() && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok()
    };
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from("/dev/shm")])
        .find(|dir| dir.is_absolute() && writable(dir))
        .unwrap_or_else(std::env::temp_dir)
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // overlayfs leaves a `work` folder with mode 000 in its work folder,
        // which its owner cannot list, so removal would fail without this.
        open_up(self.work.path());
    }
}

fn open_up(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            let path = entry.path();
            let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o700));
            open_up(&path);
        }
    }
}
