//! Building single steps: mounts, read-only binds, mount point checks, and
//! the path conversions they share.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::statvfs::{statvfs, FsFlags};

use super::{Action, Kind, Step};

/// A bind mount followed by the remount that makes it read-only. The
/// remount keeps the flags the source's mount has, because inside a user
/// namespace the kernel refuses to clear flags it inherited as locked.
pub(super) fn read_only_bind(source: &Path, target: &Path) -> io::Result<Vec<Step>> {
    let inherited = statvfs(source)
        .map(|stat| mount_flags(stat.flags()))
        .map_err(io::Error::from)?;
    let what = format!("bind {} read-only", source.display());
    Ok(vec![
        mount_step(
            what.clone(),
            Some(source),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?,
        mount_step(
            what,
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | inherited,
            None::<&str>,
        )?,
    ])
}

/// Mount flags matching the `statvfs` flags of an existing mount.
fn mount_flags(flags: FsFlags) -> MsFlags {
    [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| flags.contains(*st))
    .fold(MsFlags::empty(), |all, (_, ms)| all | ms)
}

pub(super) fn beneath(root: &Path, inside: &Path, kind: Kind, what: &str) -> io::Result<Step> {
    Ok(Step {
        what: format!(
            "check the mount point of {what} at {} (it must be a {} in the lower layers, reached without symlinks)",
            inside.display(),
            match kind {
                Kind::Dir => "folder",
                Kind::File => "file",
            }
        ),
        action: Action::Beneath {
            root: c_path(root)?,
            rel: c_path(&relative(inside))?,
            kind,
        },
    })
}

pub(super) fn mount_step(
    what: String,
    source: Option<&(impl AsRef<OsStr> + ?Sized)>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> io::Result<Step> {
    Ok(Step {
        what,
        action: Action::Mount {
            source: source.map(|s| c_path(Path::new(s))).transpose()?,
            target: c_path(target)?,
            fstype: fstype.map(|s| c_path(Path::new(s))).transpose()?,
            flags,
            data: data.map(|s| c_path(Path::new(s))).transpose()?,
        },
    })
}

/// `inside` (absolute in the sandbox) as a path below the root.
pub(super) fn relative(inside: &Path) -> PathBuf {
    inside.strip_prefix("/").unwrap_or(inside).to_path_buf()
}

pub(super) fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(relative(inside))
}

/// A path as a C string; paths with a NUL byte cannot be passed to the
/// kernel.
pub(in crate::sandbox) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_flags_become_mount_flags() {
        let flags = mount_flags(FsFlags::ST_NOSUID | FsFlags::ST_RELATIME | FsFlags::ST_RDONLY);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RELATIME);
    }

    #[test]
    fn paths_with_nul_are_refused() {
        let bad = Path::new(OsStr::from_bytes(b"/a\0b"));
        assert!(c_path(bad).is_err());
        assert_eq!(
            relative(Path::new("/nix/store/x")),
            Path::new("nix/store/x")
        );
    }
}
