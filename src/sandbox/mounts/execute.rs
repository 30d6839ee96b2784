//! Carrying out planned steps in the sandbox's init process: system calls
//! on ready-made C strings, nothing else.

use std::ffi::CString;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};

use super::{Action, Kind, Step};

/// Carries out `steps` in order; on failure returns the failing step's
/// index and error. Runs in the forked init process: system calls only.
pub(in crate::sandbox) fn execute(steps: &[Step]) -> Result<(), (u32, Errno)> {
    let mut index = 0;
    while let Some(step) = steps.get(index) {
        if let Action::IfBeneath {
            root,
            rel,
            kind,
            skip,
        } = &step.action
        {
            if check_beneath(root, rel, *kind).is_err() {
                index += skip;
            }
        } else {
            run_action(&step.action).map_err(|errno| (index as u32, errno))?;
        }
        index += 1;
    }
    Ok(())
}
fn run_action(action: &Action) -> Result<(), Errno> {
    match action {
        Action::MakeRootPrivate => mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ),
        Action::Beneath { root, rel, kind }
        | Action::IfBeneath {
            root, rel, kind, ..
        } => check_beneath(root, rel, *kind),
        Action::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => mount(
            source.as_deref(),
            target.as_c_str(),
            fstype.as_deref(),
            *flags,
            data.as_deref(),
        ),
        Action::CreateFile(path, mode) => nix::fcntl::open(
            path.as_c_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(*mode),
        )
        .map(drop),
        Action::MakeDir(path, mode) => {
            nix::unistd::mkdir(path.as_c_str(), Mode::from_bits_truncate(*mode))
        }
        Action::Symlink { target, link } => {
            nix::unistd::symlinkat(target.as_c_str(), nix::fcntl::AT_FDCWD, link.as_c_str())
        }
        Action::PivotRoot(root) => {
            nix::unistd::chdir(root.as_c_str())?;
            nix::unistd::pivot_root(".", ".")?;
            nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH)?;
            nix::unistd::chdir("/")
        }
        Action::ChangeDir(path) => nix::unistd::chdir(path.as_c_str()),
    }
}

fn check_beneath(root: &CString, rel: &CString, kind: Kind) -> Result<(), Errno> {
    let root = nix::fcntl::open(
        root.as_c_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    let target = openat2(root.as_fd(), rel.as_c_str(), how)?;
    let file_type = SFlag::from_bits_truncate(fstat(target.as_fd())?.st_mode) & SFlag::S_IFMT;
    match (kind, file_type) {
        (Kind::Dir, SFlag::S_IFDIR) | (Kind::File, SFlag::S_IFREG) => Ok(()),
        (Kind::Dir, _) => Err(Errno::ENOTDIR),
        (Kind::File, _) => Err(Errno::EISDIR),
    }
}
