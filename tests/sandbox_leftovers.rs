//! After 20 phases in a row, succeeding, failing, timed out and cancelled,
//! the caller's mounts, its temporary folders and its processes are as
//! before. Its own test binary, because it points TMPDIR and
//! XDG_RUNTIME_DIR at private folders for the whole process.

mod sandbox_support;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiln::sandbox::SandboxError;
use kiln_harness::FixtureNixpkgs;
use sandbox_support::*;

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn mountinfo() -> String {
    fs::read_to_string("/proc/self/mountinfo").unwrap()
}

#[test]
fn twenty_phases_leave_no_mount_folder_or_process() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let private = tempfile::tempdir().unwrap();
    let (temp, runtime, uppers) = (
        private.path().join("tmp"),
        private.path().join("runtime"),
        private.path().join("uppers"),
    );
    for dir in [&temp, &runtime, &uppers] {
        fs::create_dir(dir).unwrap();
    }
    // SAFETY: this test binary has this one test, so no other thread reads
    // the environment meanwhile.
    unsafe {
        std::env::set_var("TMPDIR", &temp);
        std::env::set_var("XDG_RUNTIME_DIR", &runtime);
    }
    let marker = format!("KILN_LEFTOVER_MARKER={}", std::process::id());
    let mounts_before = mountinfo();

    for run in 0..20 {
        let upper = uppers.join(format!("upper{run}"));
        fs::create_dir(&upper).unwrap();
        let (command, expect): (&str, fn(&Result<_, SandboxError>) -> bool) = match run % 4 {
            0 => ("sleep 300 & echo done > /made", |r| r.is_ok()),
            1 => ("sleep 300 & exit 4", |r| {
                matches!(r, Err(SandboxError::CommandFailed { .. }))
            }),
            2 => ("sleep 300", |r| {
                matches!(r, Err(SandboxError::TimedOut { .. }))
            }),
            _ => ("sleep 300 & sleep 300", |r| {
                matches!(r, Err(SandboxError::Cancelled { .. }))
            }),
        };
        let mut sandbox = phase(fixture, &[], &upper, &[command], &Lines::default());
        mark(&mut sandbox, "KILN_LEFTOVER_MARKER");
        sandbox.timeout = Some(Duration::from_millis(700));
        let flag = Arc::new(AtomicBool::new(false));
        sandbox.cancel = Some(flag.clone());
        let canceller = (run % 4 == 3).then(|| {
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                flag.store(true, Ordering::SeqCst);
            })
        });
        let result = sandbox.run();
        if let Some(canceller) = canceller {
            canceller.join().unwrap();
        }
        assert!(expect(&result), "run {run}: {:?}", result.err());
        fs::remove_dir_all(&upper).unwrap();
    }

    assert_eq!(mountinfo(), mounts_before, "the caller's mounts changed");
    assert!(
        entries(&temp).is_empty(),
        "left in TMPDIR: {:?}",
        entries(&temp)
    );
    assert!(
        entries(&runtime).is_empty(),
        "left in the runtime folder: {:?}",
        entries(&runtime)
    );
    assert!(
        entries(&uppers).is_empty(),
        "left beside the uppers: {:?}",
        entries(&uppers)
    );
    let left = processes_with(&marker);
    assert!(left.is_empty(), "processes left: {left:?}");
}
