//! Start-to-exit time of a phase running `true` with a 50-path closure:
//! kiln's sandbox against bubblewrap given the same overlay, read-only
//! binds and namespaces, in the same run, median of 50 runs each,
//! interleaved so both see the same machine load. Prints the ratio; the
//! target is at most 1.5x bwrap's time and under 50 ms.
//!
//! Run as root (it builds the fixture nixpkgs): `cargo bench --bench
//! sandbox_startup`.
//!
//! bubblewrap 0.8 cannot mount overlays itself, so for its runs this
//! benchmark mounts the same overlay (base + a fresh upper) with one
//! `mount` system call in its own private mount namespace and hands bwrap
//! the merged folder with `--bind`; that call, and creating and removing
//! the overlay work folder, are inside bwrap's timed region, as they are
//! inside kiln's.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln::sandbox::{Output, Sandbox, StoreBind};
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::process::run;
use kiln_harness::{require, FixtureNixpkgs};
use nix::mount::{mount, umount, MsFlags};
use nix::sched::{unshare, CloneFlags};

const RUNS: usize = 50;
const CLOSURE: usize = 50;

fn main() {
    if !require(&["bwrap"]) {
        return;
    }
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let store = closure_of_fifty(fixture, dir.path());
    let base = dir.path().join("base");
    make_base(&base, &store);
    let bash = PathBuf::from(fixture.store_path("bash")).join("bin/bash");

    unshare(CloneFlags::CLONE_NEWNS).expect("a private mount namespace for the bwrap runs");
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .expect("make mounts private");

    // One run each first, so both start warm (page cache, preflight).
    kiln_run(&store, &base, &bash, dir.path(), usize::MAX);
    bwrap_run(&store, &base, &bash, dir.path(), usize::MAX);
    let mut kiln = Vec::with_capacity(RUNS);
    let mut bwrap = Vec::with_capacity(RUNS);
    for index in 0..RUNS {
        kiln.push(kiln_run(&store, &base, &bash, dir.path(), index));
        bwrap.push(bwrap_run(&store, &base, &bash, dir.path(), index));
    }
    let (kiln, bwrap) = (median(&mut kiln), median(&mut bwrap));
    let ratio = kiln.as_secs_f64() / bwrap.as_secs_f64();
    println!("phase running `true`, {CLOSURE} store paths, median of {RUNS} runs:");
    println!("  kiln sandbox  {:>8.2} ms", kiln.as_secs_f64() * 1e3);
    println!("  bwrap         {:>8.2} ms", bwrap.as_secs_f64() * 1e3);
    println!(
        "  ratio kiln/bwrap {ratio:.2} (target <= 1.5: {}), kiln under 50 ms: {}",
        verdict(ratio <= 1.5),
        verdict(kiln < Duration::from_millis(50))
    );
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The real closure of the fixture's bash plus stand-in store folders up
/// to fifty paths: binding a folder costs the same whatever it holds.
fn closure_of_fifty(fixture: &FixtureNixpkgs, dir: &Path) -> Vec<StoreBind> {
    let mut store: Vec<StoreBind> = run(nix_command("nix-store")
        .args(["--query", "--requisites"])
        .arg(fixture.store_path("bash")))
    .lines()
    .map(|path| StoreBind {
        host: PathBuf::from(path),
        name: path.trim_start_matches("/nix/store/").to_string(),
    })
    .collect();
    let stand_ins = dir.join("stand-ins");
    for index in store.len()..CLOSURE {
        let name = format!("{index:032}-stand-in");
        let host = stand_ins.join(&name);
        fs::create_dir_all(host.join("bin")).expect("stand-in store folder");
        store.push(StoreBind { host, name });
    }
    store
}

/// The lower layer both tools use: `/app` and every mount point, so
/// neither writes mount points into its upper folder.
fn make_base(base: &Path, store: &[StoreBind]) {
    for dir in ["app", "proc", "dev", "tmp", "root", "etc"] {
        fs::create_dir_all(base.join(dir)).expect("base folder");
    }
    for file in ["etc/resolv.conf", "etc/hosts"] {
        fs::write(base.join(file), "").expect("base file");
    }
    for bind in store {
        fs::create_dir_all(base.join("nix/store").join(&bind.name)).expect("mount point");
    }
}

fn fresh_upper(dir: &Path, tool: &str, index: usize) -> PathBuf {
    let upper = dir.join(format!("{tool}-upper-{index}"));
    fs::create_dir(&upper).expect("upper folder");
    upper
}

fn kiln_run(store: &[StoreBind], base: &Path, bash: &Path, dir: &Path, index: usize) -> Duration {
    let upper = fresh_upper(dir, "kiln", index);
    let mut sandbox = Sandbox::new(
        "bench",
        bash.to_path_buf(),
        upper.clone(),
        vec!["true".into()],
    );
    sandbox.lowers = vec![base.to_path_buf()];
    sandbox.store_paths = store.to_vec();
    sandbox.env = vec![("PATH".into(), "/usr/bin:/bin".into())];
    sandbox.output = Output::Lines(Box::new(|_| {}));
    let start = Instant::now();
    sandbox.run().expect("kiln phase");
    let elapsed = start.elapsed();
    fs::remove_dir_all(&upper).expect("remove upper");
    elapsed
}

fn bwrap_run(store: &[StoreBind], base: &Path, bash: &Path, dir: &Path, index: usize) -> Duration {
    let upper = fresh_upper(dir, "bwrap", index);
    let merged = dir.join("merged");
    fs::create_dir_all(&merged).expect("merged folder");
    let mut command = Command::new("bwrap");
    command.args([
        "--unshare-user",
        "--uid",
        "0",
        "--gid",
        "0",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--hostname",
        "kiln",
        "--die-with-parent",
    ]);
    command.arg("--bind").arg(&merged).arg("/");
    for bind in store {
        command
            .arg("--ro-bind")
            .arg(&bind.host)
            .arg(Path::new("/nix/store").join(&bind.name));
    }
    command.args(["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]);
    for file in ["/etc/resolv.conf", "/etc/hosts"] {
        command.args(["--ro-bind", file, file]);
    }
    command.args([
        "--chdir",
        "/app",
        "--clearenv",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
    ]);
    command.arg(bash).args(["-c", "true"]);
    command.stdin(Stdio::null()).stdout(Stdio::null());

    let start = Instant::now();
    let work = tempfile::Builder::new()
        .prefix(".bwrap-work-")
        .tempdir_in(dir)
        .expect("work folder");
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(
            format!(
                "lowerdir={},upperdir={},workdir={}",
                base.display(),
                upper.display(),
                work.path().display()
            )
            .as_str(),
        ),
    )
    .expect("mount the overlay for bwrap");
    let status = command.status().expect("run bwrap");
    umount(&merged).expect("unmount the overlay");
    drop(work);
    let elapsed = start.elapsed();
    assert!(status.success(), "bwrap failed: {status}");
    fs::remove_dir_all(&upper).expect("remove upper");
    elapsed
}
