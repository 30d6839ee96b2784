//! Ctrl-C (SIGINT to kiln) kills a running phase and everything it started.
//! Its own test binary, because it installs a SIGINT handler for the whole
//! process.

mod sandbox_support;

use std::time::Duration;

use kiln::sandbox::{cancel_on_interrupt, SandboxError};
use kiln_harness::FixtureNixpkgs;
use nix::sys::signal::{kill, Signal};
use nix::unistd::getpid;
use sandbox_support::*;

#[test]
fn sigint_to_the_caller_kills_the_phase_tree() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let mut sandbox = phase(
        fixture,
        &[],
        &upper,
        &["echo started; sleep 300 & sleep 300"],
        &lines,
    );
    let marker = mark(&mut sandbox, "KILN_INTERRUPT_MARKER");
    sandbox.cancel = Some(cancel_on_interrupt().expect("install the handlers"));
    let probe = lines.clone();
    let interrupter = std::thread::spawn(move || {
        while !probe.has("started") {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill(getpid(), Signal::SIGINT).expect("send SIGINT to the caller");
    });
    let err = sandbox.run().expect_err("the phase is interrupted");
    interrupter.join().unwrap();
    assert!(
        matches!(&err, SandboxError::Cancelled { command: Some(c), .. } if c.contains("sleep 300")),
        "{err}"
    );
    assert!(processes_with(&marker).is_empty(), "processes left");
}
