//! The mount steps that build a sandbox's root, planned by the caller and
//! carried out by the sandbox's init process.
//!
//! Planning happens before `fork` so the child only makes system calls on
//! ready-made C strings. Every step carries a description; a failing step
//! is reported by its index and the caller turns it into a message.
//!
//! `plan` lays out the root (overlay, store paths, caches, host files),
//! `special` adds `/proc`, `/dev` and `/tmp`, `step` builds single steps
//! and `execute` carries them out.

mod execute;
mod plan;
mod special;
mod step;

use std::ffi::CString;
use std::path::PathBuf;

use nix::mount::MsFlags;

pub(super) use execute::execute;
pub(super) use plan::plan;

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Dir,
    File,
}

/// One step of building the root.
#[derive(Debug)]
pub(super) struct Step {
    /// What the step does, for the error when it fails.
    pub(super) what: String,
    pub(super) action: Action,
}

/// The system calls of a step.
#[derive(Debug)]
pub(super) enum Action {
    /// Stops mounts from propagating back to the caller's namespace.
    MakeRootPrivate,
    /// Fails unless `rel` is a `kind` beneath `root` reached without
    /// following a symlink, so no mount lands outside the root.
    Beneath {
        root: CString,
        rel: CString,
        kind: Kind,
    },
    /// Like `Beneath`, but when the check fails the next `skip` steps are
    /// left out instead of the sandbox failing.
    IfBeneath {
        root: CString,
        rel: CString,
        kind: Kind,
        skip: usize,
    },
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: MsFlags,
        data: Option<CString>,
    },
    /// Creates an empty file with a mode.
    CreateFile(CString, u32),
    /// Creates a folder with a mode.
    MakeDir(CString, u32),
    Symlink {
        target: CString,
        link: CString,
    },
    /// Makes `root` the root and detaches the old one.
    PivotRoot(CString),
    ChangeDir(CString),
}

/// The folders of one run.
#[derive(Debug)]
pub(super) struct Layout {
    /// An empty host folder the init process mounts a tmpfs on; the
    /// overlay's mount point, the skeleton layer and the app overlay's
    /// scratch folders live in that tmpfs and vanish with the namespace.
    pub(super) scratch: PathBuf,
    /// The overlay's work folder, beside the upper folder (same filesystem).
    pub(super) work: PathBuf,
}

impl Layout {
    /// Where the overlay is mounted before it becomes the root.
    fn root(&self) -> PathBuf {
        self.scratch.join("root")
    }

    /// The lowest lower layer: the mount points the sandbox needs, so they
    /// exist without ever being written into the upper folder.
    fn skeleton(&self) -> PathBuf {
        self.scratch.join("skeleton")
    }

    /// The upper folder of the copy-on-write `/app` overlay.
    fn app_upper(&self) -> PathBuf {
        self.scratch.join("app-upper")
    }

    /// The work folder of the copy-on-write `/app` overlay.
    fn app_work(&self) -> PathBuf {
        self.scratch.join("app-work")
    }
}
