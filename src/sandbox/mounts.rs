//! The mount steps that build a sandbox's root, planned by the caller and
//! carried out by the sandbox's init process.
//!
//! Planning happens before `fork` so the child only makes system calls on
//! ready-made C strings. Every step carries a description; a failing step
//! is reported by its index and the caller turns it into a message.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::{fstat, Mode, SFlag};
use nix::sys::statvfs::{statvfs, FsFlags};

use super::Sandbox;

/// Host device nodes bound into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Longest option string `mount(2)` passes on: one page, less its NUL.
const MAX_MOUNT_OPTIONS: usize = 4095;

/// Parts of `/proc` made read-only.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// Host files bound read-only so name resolution works as on the host.
const HOST_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];

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
}

/// Every mount point of `sandbox` as a path below the root, with its kind
/// and mode, parents before children.
fn mount_points(sandbox: &Sandbox) -> BTreeMap<PathBuf, (Kind, u32)> {
    let mut points = BTreeMap::new();
    let mut add = |rel: PathBuf, kind: Kind, mode: u32| {
        for parent in rel
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
        {
            points
                .entry(parent.to_path_buf())
                .or_insert((Kind::Dir, 0o755));
        }
        points.insert(rel, (kind, mode));
    };
    for (rel, mode) in [
        ("proc", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
    ] {
        add(PathBuf::from(rel), Kind::Dir, mode);
    }
    add(relative(&sandbox.workdir), Kind::Dir, 0o755);
    for host_file in HOST_FILES {
        add(relative(Path::new(host_file)), Kind::File, 0o644);
    }
    for store in &sandbox.store_paths {
        let rel = Path::new("nix/store").join(&store.name);
        if store.host.is_dir() {
            add(rel, Kind::Dir, 0o555);
        } else {
            add(rel, Kind::File, 0o444);
        }
    }
    for cache in &sandbox.caches {
        add(relative(&cache.inside), Kind::Dir, 0o755);
    }
    points
}

/// Every step that builds the root of `sandbox` in `layout`.
pub(super) fn plan(sandbox: &Sandbox, layout: &Layout) -> io::Result<Vec<Step>> {
    let root = &layout.root();
    let skeleton = &layout.skeleton();
    let app_upper = layout.scratch.join("app-upper");
    let app_work = layout.scratch.join("app-work");
    let mut steps = vec![
        Step {
            what: "make the sandbox's mounts private".into(),
            action: Action::MakeRootPrivate,
        },
        mount_step(
            format!("mount a tmpfs at {}", layout.scratch.display()),
            Some("tmpfs"),
            &layout.scratch,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        )?,
    ];
    for dir in [root, skeleton, &app_upper, &app_work] {
        steps.push(Step {
            what: format!("create {}", dir.display()),
            action: Action::MakeDir(c_path(dir)?, 0o755),
        });
    }
    for (rel, (kind, mode)) in mount_points(sandbox) {
        let path = c_path(&skeleton.join(&rel))?;
        steps.push(Step {
            what: format!("create the mount point /{}", rel.display()),
            action: match kind {
                Kind::Dir => Action::MakeDir(path, mode),
                Kind::File => Action::CreateFile(path, mode),
            },
        });
    }
    let mut lowers: Vec<&Path> = sandbox.lowers.iter().rev().map(PathBuf::as_path).collect();
    lowers.push(skeleton);
    let lowerdir = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lowerdir},upperdir={},workdir={},userxattr",
        sandbox.upper.display(),
        layout.work.display()
    );
    if options.len() > MAX_MOUNT_OPTIONS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the overlay options name {} lower folders in {} bytes, more than the kernel's {MAX_MOUNT_OPTIONS}; use shorter folder paths or fewer lower folders",
                lowers.len(),
                options.len()
            ),
        ));
    }
    steps.push(mount_step(
        format!("mount the overlay root (upper {})", sandbox.upper.display()),
        Some("overlay"),
        root,
        Some("overlay"),
        MsFlags::empty(),
        Some(&options),
    )?);
    if let Some(app) = &sandbox.app_source {
        let inside = Path::new("/app");
        steps.push(beneath(root, inside, Kind::Dir, "the app folder")?);
        steps.push(mount_step(
            format!("show {} at /app (copy on write)", app.display()),
            Some("overlay"),
            &under(root, inside),
            Some("overlay"),
            MsFlags::empty(),
            Some(&format!(
                "lowerdir={},upperdir={},workdir={},userxattr",
                app.display(),
                app_upper.display(),
                app_work.display()
            )),
        )?);
    }
    for store in &sandbox.store_paths {
        let inside = Path::new("/nix/store").join(&store.name);
        let kind = if store.host.is_dir() {
            Kind::Dir
        } else {
            Kind::File
        };
        steps.push(beneath(root, &inside, kind, "a store path")?);
        steps.extend(read_only_bind(&store.host, &under(root, &inside))?);
    }
    for cache in &sandbox.caches {
        steps.push(beneath(
            root,
            &cache.inside,
            Kind::Dir,
            "a cache directory",
        )?);
        steps.push(mount_step(
            format!(
                "bind the cache folder {} at {}",
                cache.host.display(),
                cache.inside.display()
            ),
            Some(&cache.host),
            &under(root, &cache.inside),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?);
    }
    // An image may make these symlinks (to a resolver it runs itself); then
    // its own file stays, rather than kiln mounting through the link.
    for host_file in HOST_FILES.map(Path::new).into_iter().filter(|p| p.exists()) {
        let binds = read_only_bind(host_file, &under(root, host_file))?;
        steps.push(Step {
            what: format!("check the mount point of {}", host_file.display()),
            action: Action::IfBeneath {
                root: c_path(root)?,
                rel: c_path(&relative(host_file))?,
                kind: Kind::File,
                skip: binds.len(),
            },
        });
        steps.extend(binds);
    }
    steps.extend(special_filesystems(root)?);
    steps.push(Step {
        what: format!("make {} the root (pivot_root)", root.display()),
        action: Action::PivotRoot(c_path(root)?),
    });
    steps.push(Step {
        what: format!("enter the working directory {}", sandbox.workdir.display()),
        action: Action::ChangeDir(c_path(&sandbox.workdir)?),
    });
    Ok(steps)
}

/// `/proc`, the minimal `/dev` and `/tmp`.
fn special_filesystems(root: &Path) -> io::Result<Vec<Step>> {
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut steps = vec![
        beneath(root, Path::new("/proc"), Kind::Dir, "/proc")?,
        mount_step(
            "mount a fresh /proc".into(),
            Some("proc"),
            &root.join("proc"),
            Some("proc"),
            nosuid_nodev | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?,
    ];
    // What an identity-mapped root could otherwise write to on the host:
    // kernel settings and the magic SysRq key, as container runtimes do.
    for name in PROC_READ_ONLY {
        if !Path::new("/proc").join(name).exists() {
            continue;
        }
        let target = root.join("proc").join(name);
        let what = format!("make /proc/{name} read-only");
        steps.push(mount_step(
            what.clone(),
            Some(&target),
            &target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )?);
        steps.push(mount_step(
            what,
            None::<&str>,
            &target,
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | nosuid_nodev
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?);
    }
    steps.extend([
        beneath(root, Path::new("/tmp"), Kind::Dir, "/tmp")?,
        mount_step(
            "mount a tmpfs at /tmp".into(),
            Some("tmpfs"),
            &root.join("tmp"),
            Some("tmpfs"),
            nosuid_nodev,
            Some("mode=1777"),
        )?,
        beneath(root, Path::new("/dev"), Kind::Dir, "/dev")?,
        mount_step(
            "mount a tmpfs at /dev".into(),
            Some("tmpfs"),
            &root.join("dev"),
            Some("tmpfs"),
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        )?,
    ]);
    let dev = root.join("dev");
    for device in DEVICES {
        let target = dev.join(device);
        steps.push(Step {
            what: format!("create the mount point /dev/{device}"),
            action: Action::CreateFile(c_path(&target)?, 0o644),
        });
        steps.push(mount_step(
            format!("bind the host's /dev/{device}"),
            Some(&Path::new("/dev").join(device)),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?);
    }
    for (name, fstype, data) in [
        ("shm", "tmpfs", "mode=1777"),
        ("pts", "devpts", "newinstance,ptmxmode=0666,mode=0620"),
    ] {
        let target = dev.join(name);
        steps.push(Step {
            what: format!("create /dev/{name}"),
            action: Action::MakeDir(c_path(&target)?, 0o755),
        });
        steps.push(mount_step(
            format!("mount {fstype} at /dev/{name}"),
            Some(fstype),
            &target,
            Some(fstype),
            nosuid_nodev,
            Some(data),
        )?);
    }
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step {
            what: format!("link /dev/{link} to {target}"),
            action: Action::Symlink {
                target: c_path(Path::new(target))?,
                link: c_path(&dev.join(link))?,
            },
        });
    }
    Ok(steps)
}

/// A bind mount followed by the remount that makes it read-only. The
/// remount keeps the flags the source's mount has, because inside a user
/// namespace the kernel refuses to clear flags it inherited as locked.
fn read_only_bind(source: &Path, target: &Path) -> io::Result<Vec<Step>> {
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

fn beneath(root: &Path, inside: &Path, kind: Kind, what: &str) -> io::Result<Step> {
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

fn mount_step(
    what: String,
    source: Option<&(impl AsRef<std::ffi::OsStr> + ?Sized)>,
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
fn relative(inside: &Path) -> PathBuf {
    inside.strip_prefix("/").unwrap_or(inside).to_path_buf()
}

fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(relative(inside))
}

/// A path as a C string; paths with a NUL byte cannot be passed to the
/// kernel.
pub(super) fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} contains a NUL byte", path.display()),
        )
    })
}

/// Carries out `steps` in order; on failure returns the failing step's
/// index and error. Runs in the forked init process: system calls only.
pub(super) fn execute(steps: &[Step]) -> Result<(), (u32, Errno)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_flags_become_mount_flags() {
        let flags = mount_flags(FsFlags::ST_NOSUID | FsFlags::ST_RELATIME | FsFlags::ST_RDONLY);
        assert_eq!(flags, MsFlags::MS_NOSUID | MsFlags::MS_RELATIME);
    }

    #[test]
    fn mount_points_come_after_their_parents() {
        let store = tempfile::tempdir().unwrap();
        let mut sandbox = Sandbox::new(
            "t",
            PathBuf::from("/nix/store/b-bash/bin/bash"),
            PathBuf::from("/u"),
            vec![],
        );
        sandbox.store_paths.push(super::super::StoreBind {
            host: store.path().to_path_buf(),
            name: "b-bash".into(),
        });
        sandbox.caches.push(super::super::CacheBind {
            host: store.path().to_path_buf(),
            inside: PathBuf::from("/app/node_modules/.cache"),
        });
        let points: Vec<_> = mount_points(&sandbox).into_iter().collect();
        let position = |rel: &str| {
            points
                .iter()
                .position(|(p, _)| p == Path::new(rel))
                .unwrap()
        };
        assert!(position("nix") < position("nix/store"));
        assert!(position("nix/store") < position("nix/store/b-bash"));
        assert!(position("app/node_modules") < position("app/node_modules/.cache"));
        assert_eq!(points[position("tmp")].1, (Kind::Dir, 0o1777));
        assert_eq!(points[position("etc/hosts")].1 .0, Kind::File);
    }

    #[test]
    fn too_many_lowers_are_refused_before_mounting() {
        let mut sandbox = Sandbox::new(
            "t",
            PathBuf::from("/nix/store/b-bash/bin/bash"),
            PathBuf::from("/u"),
            vec![],
        );
        sandbox.lowers = (0..100)
            .map(|n| PathBuf::from(format!("/var/lib/kiln/phases/{n:060}")))
            .collect();
        let layout = Layout {
            scratch: PathBuf::from("/s"),
            work: PathBuf::from("/w"),
        };
        let err = plan(&sandbox, &layout).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("101 lower folders"), "{err}");
    }

    #[test]
    fn paths_with_nul_are_refused() {
        let bad = Path::new(std::ffi::OsStr::from_bytes(b"/a\0b"));
        assert!(c_path(bad).is_err());
        assert_eq!(
            relative(Path::new("/nix/store/x")),
            Path::new("nix/store/x")
        );
    }
}
