//! Checks, before any work, that this machine lets kiln build rootless
//! sandboxes, and says what to change when it does not.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, getgid, getuid, pipe2, ForkResult};
use tempfile::TempDir;

use super::child::exit;
use super::SandboxError;

/// The result of the first check, shared by every sandbox of this process.
pub fn check() -> Result<(), SandboxError> {
    static RESULT: OnceLock<Result<(), (String, String)>> = OnceLock::new();
    RESULT
        .get_or_init(run_checks)
        .clone()
        .map_err(|(problem, fix)| SandboxError::Unavailable { problem, fix })
}

fn run_checks() -> Result<(), (String, String)> {
    let root = getuid().is_root();
    if read_number("/proc/sys/user/max_user_namespaces") == Some(0) {
        return Err((
            "user namespaces are switched off (sysctl user.max_user_namespaces = 0)".into(),
            "Enable them with `sysctl -w user.max_user_namespaces=15000` (and in /etc/sysctl.d to keep it).".into(),
        ));
    }
    if !root && read_number("/proc/sys/kernel/unprivileged_userns_clone") == Some(0) {
        return Err((
            "unprivileged user namespaces are switched off (sysctl kernel.unprivileged_userns_clone = 0)".into(),
            "Enable them with `sysctl -w kernel.unprivileged_userns_clone=1` (and in /etc/sysctl.d to keep it).".into(),
        ));
    }
    if !root && read_number("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == Some(1) {
        return Err((
            "AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns = 1)".into(),
            "Allow them with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or give kiln an AppArmor profile with `userns,`.".into(),
        ));
    }
    probe()
}

fn read_number(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The steps of the probe, in order.
const PROBE_STEPS: [&str; 6] = [
    "create a user and mount namespace",
    "deny setgroups",
    "write the uid map",
    "write the gid map",
    "make the mounts private",
    "mount an overlay with `userxattr` inside the user namespace",
];

/// Tries what every sandbox needs in a throwaway child: a user and mount
/// namespace and an overlay mounted inside it.
fn probe() -> Result<(), (String, String)> {
    let setup = ProbeSetup::new()?;
    let (reader, writer) = pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| (format!("could not make a pipe: {e}"), String::new()))?;

    // SAFETY: the child makes system calls on data prepared here, then
    // `_exit`s.
    let child = match unsafe { fork() } {
        Err(errno) => return Err((format!("could not fork: {errno}"), String::new())),
        Ok(ForkResult::Child) => {
            drop(reader);
            probe_child(&setup, &writer)
        }
        Ok(ForkResult::Parent { child }) => child,
    };
    drop(writer);
    let report = read_report(&reader);
    let _ = waitpid(child, None);
    match report {
        None => Ok(()),
        Some((step, errno)) => Err(explain(step, errno)),
    }
}

/// What the probe's child needs, prepared before `fork` so the child only
/// makes system calls.
struct ProbeSetup {
    /// Holds the overlay's folders until the probe is over.
    temp: TempDir,
    merged: CString,
    overlay_options: CString,
    uid_map: String,
    gid_map: String,
}

impl ProbeSetup {
    fn new() -> Result<ProbeSetup, (String, String)> {
        let temp_folder_error = |e: std::io::Error| {
            (
                format!("could not create a temporary folder: {e}"),
                "Check TMPDIR.".to_string(),
            )
        };
        let temp = tempfile::Builder::new()
            .prefix("kiln-preflight-")
            .tempdir()
            .map_err(temp_folder_error)?;
        for name in ["lower", "upper", "work", "merged"] {
            fs::create_dir(temp.path().join(name)).map_err(temp_folder_error)?;
        }
        let merged = CString::new(
            temp.path()
                .join("merged")
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap_or_default();
        let overlay_options = CString::new(format!(
            "lowerdir={},upperdir={},workdir={},userxattr",
            temp.path().join("lower").display(),
            temp.path().join("upper").display(),
            temp.path().join("work").display()
        ))
        .unwrap_or_default();
        Ok(ProbeSetup {
            temp,
            merged,
            overlay_options,
            uid_map: format!("0 {} 1\n", getuid()),
            gid_map: format!("0 {} 1\n", getgid()),
        })
    }
}

impl Drop for ProbeSetup {
    /// The kernel makes the overlay's inner `work/work` folder with mode 000,
    /// which an unprivileged owner can neither list nor empty, so the
    /// temporary folder's own removal would fail and leave a
    /// `kiln-preflight-*` folder in TMPDIR on every run; the store's
    /// removal makes folders writable first.
    fn drop(&mut self) {
        if let Err(err) = kiln_store::nar::remove_tree(self.temp.path()) {
            tracing::debug!("could not remove {}: {err}", self.temp.path().display());
        }
    }
}

/// The forked child: runs `PROBE_STEPS` in order and reports the first that
/// fails (its index and errno) through `writer`, then `_exit`s.
fn probe_child(setup: &ProbeSetup, writer: &OwnedFd) -> ! {
    let steps: [&dyn Fn() -> Result<(), Errno>; 6] = [
        &|| nix::sched::unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS),
        &|| write_proc("/proc/self/setgroups", b"deny"),
        &|| write_proc("/proc/self/uid_map", setup.uid_map.as_bytes()),
        &|| write_proc("/proc/self/gid_map", setup.gid_map.as_bytes()),
        &|| {
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )
        },
        &|| {
            nix::mount::mount(
                Some("overlay"),
                setup.merged.as_c_str(),
                Some("overlay"),
                MsFlags::empty(),
                Some(setup.overlay_options.as_c_str()),
            )
        },
    ];
    for (index, step) in steps.iter().enumerate() {
        if let Err(errno) = step() {
            let mut report = [0u8; 8];
            report[..4].copy_from_slice(&(index as u32).to_le_bytes());
            report[4..].copy_from_slice(&(errno as i32).to_le_bytes());
            let _ = nix::unistd::write(writer.as_fd(), &report);
            exit(1);
        }
    }
    exit(0)
}

fn read_report(reader: &OwnedFd) -> Option<(usize, Errno)> {
    let mut report = [0u8; 8];
    let mut filled = 0;
    while filled < report.len() {
        match nix::unistd::read(reader.as_fd(), &mut report[filled..]) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    if filled < report.len() {
        return None;
    }
    let step = u32::from_le_bytes(report[..4].try_into().ok()?) as usize;
    let errno = Errno::from_raw(i32::from_le_bytes(report[4..].try_into().ok()?));
    Some((step, errno))
}

fn write_proc(path: &str, content: &[u8]) -> Result<(), Errno> {
    let fd = nix::fcntl::open(path, OFlag::O_WRONLY | OFlag::O_CLOEXEC, Mode::empty())?;
    nix::unistd::write(fd, content).map(drop)
}

/// The problem and its fix for a failed probe step.
fn explain(step: usize, errno: Errno) -> (String, String) {
    let what = PROBE_STEPS.get(step).copied().unwrap_or("run the probe");
    let problem = format!("could not {what} ({errno})");
    let seccomp = fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Seccomp:").map(|v| v.trim() == "2"))
        })
        .unwrap_or(false);
    let fix = if step == PROBE_STEPS.len() - 1 {
        format!(
            "Overlay mounts inside a user namespace need Linux 5.11 or newer with overlayfs; this kernel is {}. Upgrade the kernel or load the overlay module (`modprobe overlay`).",
            kernel_release()
        )
    } else if seccomp {
        "A seccomp filter (usually a container runtime's) blocks namespaces; run kiln's container with a profile that allows unshare and mount (e.g. `--security-opt seccomp=unconfined`), or run kiln outside it.".to_string()
    } else {
        "Allow unprivileged user namespaces (sysctls user.max_user_namespaces, kernel.unprivileged_userns_clone, kernel.apparmor_restrict_unprivileged_userns) or run kiln where they are allowed.".to_string()
    };
    (problem, fix)
}

fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_failure_names_the_kernel() {
        let (problem, fix) = explain(PROBE_STEPS.len() - 1, Errno::EINVAL);
        assert!(problem.contains("userxattr"), "{problem}");
        assert!(
            fix.contains("5.11") && fix.contains(&kernel_release()),
            "{fix}"
        );
    }
}
