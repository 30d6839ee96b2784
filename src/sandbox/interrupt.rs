//! Ctrl-C and SIGTERM as the cancel flag of running phases.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

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
