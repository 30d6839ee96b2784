//! The special filesystems of the root: a fresh `/proc` with the parts that
//! reach the host made read-only, a tmpfs `/tmp`, and a minimal `/dev`.

use std::io;
use std::path::Path;

use nix::mount::MsFlags;

use super::step::{beneath, c_path, mount_step};
use super::{Action, Kind, Step};

/// Host device nodes bound into the sandbox's `/dev`. Never `tty`: it is
/// kiln's controlling terminal, where `TIOCSTI` types into the user's shell.
const DEVICES: [&str; 5] = ["null", "zero", "full", "random", "urandom"];

/// Parts of `/proc` made read-only.
const PROC_READ_ONLY: [&str; 5] = ["sys", "sysrq-trigger", "irq", "bus", "fs"];

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// `/proc`, the minimal `/dev` and `/tmp`.
pub(super) fn special_filesystems(root: &Path) -> io::Result<Vec<Step>> {
    let dev = root.join("dev");
    let mut steps = proc(root)?;
    steps.extend(proc_read_only(root)?);
    steps.extend(tmp_and_dev(root)?);
    steps.extend(device_binds(&dev)?);
    steps.extend(dev_filesystems(&dev)?);
    steps.extend(dev_links(&dev)?);
    Ok(steps)
}

fn proc(root: &Path) -> io::Result<Vec<Step>> {
    Ok(vec![
        beneath(root, Path::new("/proc"), Kind::Dir, "/proc")?,
        mount_step(
            "mount a fresh /proc".into(),
            Some("proc"),
            &root.join("proc"),
            Some("proc"),
            NOSUID_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?,
    ])
}

/// What an identity-mapped root could otherwise write to on the host:
/// kernel settings and the magic SysRq key, as container runtimes do.
fn proc_read_only(root: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
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
                | NOSUID_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )?);
    }
    Ok(steps)
}

/// The tmpfs of `/tmp` and the tmpfs `/dev` is built in.
fn tmp_and_dev(root: &Path) -> io::Result<Vec<Step>> {
    Ok(vec![
        beneath(root, Path::new("/tmp"), Kind::Dir, "/tmp")?,
        mount_step(
            "mount a tmpfs at /tmp".into(),
            Some("tmpfs"),
            &root.join("tmp"),
            Some("tmpfs"),
            NOSUID_NODEV,
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
    ])
}

/// The host's harmless device nodes, bound onto empty files.
fn device_binds(dev: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
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
    Ok(steps)
}

/// `/dev/shm` and a private `/dev/pts`.
fn dev_filesystems(dev: &Path) -> io::Result<Vec<Step>> {
    let mut steps = Vec::new();
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
            NOSUID_NODEV,
            Some(data),
        )?);
    }
    Ok(steps)
}

/// The usual links of `/dev` into `/dev/pts` and `/proc/self/fd`.
fn dev_links(dev: &Path) -> io::Result<Vec<Step>> {
    [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ]
    .into_iter()
    .map(|(link, target)| {
        Ok(Step {
            what: format!("link /dev/{link} to {target}"),
            action: Action::Symlink {
                target: c_path(Path::new(target))?,
                link: c_path(&dev.join(link))?,
            },
        })
    })
    .collect()
}
