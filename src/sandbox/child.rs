//! The sandbox's own processes, after `fork`.
//!
//! The first child enters the new namespaces and waits for the caller to
//! write its id maps; its child is pid 1 of the new pid namespace: it builds
//! the root, then runs the commands one by one as its children, reaping every
//! process that ends and passing signals on. When it exits the kernel kills
//! whatever is left in the namespace, so no process outlives a phase.
//!
//! These functions run in a process forked from a possibly multithreaded
//! caller. glibc's `fork` leaves `malloc` usable in the child, so building the
//! pointer arrays for `execve` is safe; what the child must not touch are
//! locks other threads may have held (Rust's stdout and stderr), so it
//! reports only through the record pipe and never returns: it `_exit`s.

use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{dup2_stderr, dup2_stdin, dup2_stdout, fork, ForkResult, Gid, Pid, Uid};

use super::caps;
use super::hide;
use super::mounts::{self, Step};
use super::protocol::Record;

/// Everything the sandbox's processes need, prepared before `fork`.
#[derive(Debug)]
pub(super) struct ChildPlan {
    pub(super) namespaces: CloneFlags,
    pub(super) steps: Vec<Step>,
    /// Each command's argument list; the first is the program's path.
    pub(super) commands: Vec<Vec<CString>>,
    pub(super) env: Vec<CString>,
    pub(super) dev_null: CString,
    /// Where commands write; `None` leaves them the caller's stdio.
    pub(super) output: Option<OwnedFd>,
    /// The caller's argument and environment areas (see `hide`).
    pub(super) caller_areas: Vec<std::ops::Range<usize>>,
}

/// Setup steps that are not mount steps, numbered after them in records.
#[derive(Debug, Clone, Copy)]
pub(super) enum ExtraStep {
    Unshare,
    WaitForMaps,
    BecomeRoot,
    Hostname,
    ForkInit,
    LockDown,
    NewSession,
}

impl ExtraStep {
    const ALL: [ExtraStep; 7] = [
        ExtraStep::Unshare,
        ExtraStep::WaitForMaps,
        ExtraStep::BecomeRoot,
        ExtraStep::Hostname,
        ExtraStep::ForkInit,
        ExtraStep::LockDown,
        ExtraStep::NewSession,
    ];

    /// The record number of this step, after the `mount_steps` mount steps.
    fn number(self, mount_steps: usize) -> u32 {
        (mount_steps + self as usize) as u32
    }

    /// The step a record number names, if it is not a mount step.
    pub(super) fn from_number(number: u32, mount_steps: usize) -> Option<ExtraStep> {
        let offset = (number as usize).checked_sub(mount_steps)?;
        Self::ALL.get(offset).copied()
    }

    /// What the step does, for error messages.
    pub(super) fn what(self) -> &'static str {
        match self {
            ExtraStep::Unshare => "create the user, mount, pid, ipc and uts namespaces",
            ExtraStep::WaitForMaps => "wait for the uid and gid maps",
            ExtraStep::BecomeRoot => "become uid 0 inside the user namespace",
            ExtraStep::Hostname => "set the sandbox's host name",
            ExtraStep::ForkInit => "start the sandbox's init process",
            ExtraStep::LockDown => {
                "drop the capability to mount, forbid new privileges and take over signals"
            }
            ExtraStep::NewSession => "start a new session without a controlling terminal",
        }
    }
}

/// The first child: enters the namespaces, waits until the caller wrote its
/// maps (one byte on `go`), starts init and exits with init's status.
pub(super) fn first_child(plan: &ChildPlan, status: OwnedFd, go: OwnedFd) -> ! {
    let fail = |step: ExtraStep, errno: Errno| -> ! {
        Record::SetupFailed {
            step: step.number(plan.steps.len()),
            errno: errno as i32,
        }
        .send(status.as_fd());
        exit(125)
    };
    // Dies with the caller's thread, so a killed caller leaves nothing.
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    // A session of its own has no controlling terminal, so no command can
    // reach kiln's (`TIOCSTI` types into the user's shell, also through a
    // terminal given as stdin: the kernel allows it only on one's own
    // controlling terminal). A Ctrl-C then reaches kiln alone: a build kills
    // the sandbox as a whole; `kiln shell` passes it on to this session's
    // process group (see `interrupt::forward_to_sandbox`), which this
    // process ignores so that init and the commands decide.
    if let Err(errno) = nix::unistd::setsid() {
        fail(ExtraStep::NewSession, errno);
    }
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        // SAFETY: ignoring a signal installs no handler.
        let _ = unsafe { nix::sys::signal::signal(signal, SigHandler::SigIgn) };
    }
    if let Err(errno) = unshare(plan.namespaces) {
        fail(ExtraStep::Unshare, errno);
    }
    Record::Unshared.send(status.as_fd());
    let mut byte = [0u8; 1];
    match nix::unistd::read(go.as_fd(), &mut byte) {
        Ok(1) => {}
        Ok(_) => exit(125),
        Err(errno) => fail(ExtraStep::WaitForMaps, errno),
    }
    drop(go);
    let root_ids = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .and_then(|()| {
            nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        });
    if let Err(errno) = root_ids {
        fail(ExtraStep::BecomeRoot, errno);
    }
    // Refused when setgroups is denied (single mapping), where the process
    // has no supplementary groups to lose anyway.
    let _ = nix::unistd::setgroups(&[]);
    if let Err(errno) = nix::unistd::sethostname("kiln") {
        fail(ExtraStep::Hostname, errno);
    }
    // SAFETY: this process is single-threaded (it was forked), so the child
    // may run arbitrary code.
    match unsafe { fork() } {
        Err(errno) => fail(ExtraStep::ForkInit, errno),
        Ok(ForkResult::Child) => init(plan, status),
        Ok(ForkResult::Parent { child }) => {
            Record::InitPid(child.as_raw()).send(status.as_fd());
            drop(status);
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => exit(code),
                    Ok(WaitStatus::Signaled(..)) => exit(126),
                    Err(Errno::EINTR) | Ok(_) => continue,
                    Err(_) => exit(126),
                }
            }
        }
    }
}

/// pid 1 of the sandbox: builds the root, then runs the commands.
fn init(plan: &ChildPlan, status: OwnedFd) -> ! {
    let _ = prctl::set_pdeathsig(Signal::SIGKILL);
    // SAFETY: the areas were read in the caller before `fork`, and init
    // never reads its arguments or environment.
    unsafe { hide::hide(&plan.caller_areas) };
    let fail = |step: u32, errno: Errno| -> ! {
        Record::SetupFailed {
            step,
            errno: errno as i32,
        }
        .send(status.as_fd());
        exit(125)
    };
    // Mount points get exactly the modes planned; commands get the usual
    // 022, whatever the caller's umask, so diffs do not depend on it.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    if let Err((step, errno)) = mounts::execute(&plan.steps) {
        fail(step, errno);
    }
    let lock_down = ExtraStep::LockDown.number(plan.steps.len());
    if let Err(errno) = caps::drop_mount_capability() {
        fail(lock_down, errno);
    }
    if let Err(errno) = prctl::set_no_new_privs() {
        fail(lock_down, errno);
    }
    // Signals wait in the queue until `sigwait` takes them; SIGCHLD says
    // a child ended, the rest go to the running command.
    let all = SigSet::all();
    if let Err(errno) = all.thread_block() {
        fail(lock_down, errno);
    }
    for (index, argv) in plan.commands.iter().enumerate() {
        let index = index as u32;
        Record::Begin(index).send(status.as_fd());
        // SAFETY: init is single-threaded.
        let child = match unsafe { fork() } {
            Ok(ForkResult::Child) => exec_command(plan, argv, index, status.as_fd()),
            Ok(ForkResult::Parent { child }) => child,
            Err(errno) => {
                Record::ExecFailed {
                    index,
                    errno: errno as i32,
                }
                .send(status.as_fd());
                exit(1);
            }
        };
        let outcome = wait_for(child, &all);
        outcome_record(index, outcome).send(status.as_fd());
        if !matches!(outcome, WaitStatus::Exited(_, 0)) {
            exit(1);
        }
    }
    exit(0)
}

/// Waits for `command` to end, reaping every other process that ends
/// meanwhile and passing any other signal on to `command`.
fn wait_for(command: Pid, signals: &SigSet) -> WaitStatus {
    loop {
        let signal = match signals.wait() {
            Ok(signal) => signal,
            Err(_) => continue,
        };
        if signal != Signal::SIGCHLD {
            let _ = kill(command, signal);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) if status.pid() == Some(command) => {
                    if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
                        return status;
                    }
                }
                Ok(_) => {}
            }
        }
    }
}

fn outcome_record(index: u32, outcome: WaitStatus) -> Record {
    match outcome {
        WaitStatus::Exited(_, code) => Record::Exited { index, code },
        WaitStatus::Signaled(_, signal, _) => Record::Signaled {
            index,
            signal: signal as i32,
        },
        _ => Record::Exited { index, code: -1 },
    }
}

/// The command's process: default signal handling, its output on the pipe,
/// then its program (`bash -c`, or a program run with no shell).
fn exec_command(plan: &ChildPlan, argv: &[CString], index: u32, status: BorrowedFd<'_>) -> ! {
    for signal in Signal::iterator() {
        if !matches!(signal, Signal::SIGKILL | Signal::SIGSTOP) {
            // SAFETY: restoring the default action installs no handler.
            let _ = unsafe {
                sigaction(
                    signal,
                    &SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty()),
                )
            };
        }
    }
    let _ = SigSet::empty().thread_set_mask();
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    if let Some(output) = &plan.output {
        let redirected = nix::fcntl::open(
            plan.dev_null.as_c_str(),
            nix::fcntl::OFlag::O_RDONLY,
            nix::sys::stat::Mode::empty(),
        )
        .and_then(dup2_stdin)
        .and_then(|()| dup2_stdout(output))
        .and_then(|()| dup2_stderr(output));
        if let Err(errno) = redirected {
            exec_failed(index, errno, status);
        }
    }
    // No descriptor the caller had open (a host file, a folder outside the
    // root) may reach the command; only stdin, stdout and stderr do.
    // SAFETY: close_range takes no pointers.
    let closed = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if let Err(errno) = Errno::result(closed) {
        exec_failed(index, errno, status);
    }
    let errno = match nix::unistd::execve(argv[0].as_c_str(), argv, &plan.env) {
        Err(errno) => errno,
        Ok(never) => match never {},
    };
    exec_failed(index, errno, status)
}

fn exec_failed(index: u32, errno: Errno, status: BorrowedFd<'_>) -> ! {
    Record::ExecFailed {
        index,
        errno: errno as i32,
    }
    .send(status);
    exit(127)
}

/// Ends a forked process without running the caller's exit handlers or
/// destructors, which belong to the caller.
pub(super) fn exit(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_steps_are_numbered_after_the_mount_steps() {
        for mount_steps in [0, 7, 120] {
            for step in ExtraStep::ALL {
                let number = step.number(mount_steps);
                assert!(number as usize >= mount_steps);
                let back = ExtraStep::from_number(number, mount_steps).unwrap();
                assert_eq!(back.what(), step.what());
            }
            let past = mount_steps + ExtraStep::ALL.len();
            assert!(ExtraStep::from_number(past as u32, mount_steps).is_none());
            if mount_steps > 0 {
                assert!(ExtraStep::from_number(0, mount_steps).is_none());
            }
        }
    }
}
