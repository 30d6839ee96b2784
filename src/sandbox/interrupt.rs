//! Ctrl-C and SIGTERM as the cancel flag of running phases, and Ctrl-C
//! passed on to an interactive sandbox.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic load and store: safe in a signal handler.
    if let Some(flag) = FLAG.get() {
        flag.store(true, Ordering::SeqCst);
    }
}

/// A flag that becomes true when kiln receives SIGINT (Ctrl-C) or SIGTERM.
/// Give it to [`super::Sandbox::cancel`]: the running phase and everything
/// it started is then killed and the phase ends with
/// [`super::SandboxError::Cancelled`]. Installs the handlers on each call
/// and returns the same flag every time.
pub fn cancel_on_interrupt() -> nix::Result<Arc<AtomicBool>> {
    let flag = FLAG
        .get_or_init(|| Arc::new(AtomicBool::new(false)))
        .clone();
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only touches an atomic that is initialized
        // before the handler is installed.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(flag)
}

/// The process group (and session) of the running [`super::Output::Inherit`]
/// sandbox; 0 when there is none.
static SANDBOX_GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(signal: libc::c_int) {
    // Only an atomic load and `kill`: safe in a signal handler.
    let group = SANDBOX_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: `kill` takes no pointers.
        unsafe { libc::kill(-group, signal) };
    }
}

/// Passes SIGINT and SIGQUIT (Ctrl-C and Ctrl-\ on kiln's terminal) on to
/// the processes of a running [`super::Output::Inherit`] sandbox instead of
/// ending kiln, as a terminal would if it were theirs. The sandbox runs in
/// a session of its own with no controlling terminal (so that it cannot
/// type into the user's shell), which the terminal's signals never reach.
pub fn forward_interrupts() -> nix::Result<()> {
    let action = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for signal in [Signal::SIGINT, Signal::SIGQUIT] {
        // SAFETY: the handler only reads an atomic and calls `kill`.
        unsafe { sigaction(signal, &action) }?;
    }
    Ok(())
}

/// Records the process group of the interactive sandbox that runs (its
/// first process, a session leader), or that none does.
pub(super) fn set_sandbox_group(group: Option<Pid>) {
    SANDBOX_GROUP.store(group.map_or(0, Pid::as_raw), Ordering::SeqCst);
}
