//! `kiln realize` side by side with real Nix (`nix copy --from file://...
//! --to <temp store>`) on the same closure, in one run, printing the wall
//! time ratio and each tool's peak memory. Then peak memory of kiln on a NAR
//! far larger than that bound, to show memory does not follow NAR size.
//!
//! Run: `cargo bench --bench realize_vs_nix` (as root, with nix, patchelf and
//! GNU time installed; tests/run installs them). Target: kiln at most 0.7x
//! Nix's wall time; kiln's peak memory under 100 MB.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_harness::nixpkgs::nix_command;
use kiln_harness::FixtureNixpkgs;

const ROUNDS: usize = 3;
const BIG_FILE_MIB: usize = 1024;

/// Wall time and peak resident memory (KiB) of one run.
struct Run {
    wall: Duration,
    peak_kib: u64,
}

/// Runs `command` under GNU time and returns its wall time and peak RSS.
fn measure(command: Command) -> Run {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(program)
        .args(args);
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    let started = Instant::now();
    let output = timed.output().expect("run /usr/bin/time");
    let wall = started.elapsed();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let peak_kib = std::fs::read_to_string(report.path())
        .unwrap()
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .expect("GNU time printed the peak RSS");
    Run { wall, peak_kib }
}

fn kiln_realize(cache_url: &str, key: Option<&str>, cache_dir: &Path, path: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .arg("--quiet")
        .arg("--cache-dir")
        .arg(cache_dir)
        .args(["realize", "--ignore-host-store", "--substituter", cache_url]);
    match key {
        Some(key) => command.args(["--trusted-public-key", key]),
        None => command.arg("--no-verify"),
    };
    command.arg(path);
    command
}

fn nix_copy(cache_url: &str, key: &str, store_dir: &Path, path: &str) -> Command {
    let mut command = nix_command("nix");
    command
        .args(["copy", "--from", cache_url, "--to"])
        .arg(store_dir)
        .args(["--option", "trusted-public-keys", key, path]);
    command
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn side_by_side(fixture: &FixtureNixpkgs) {
    let node = fixture.store_path("nodejs_20");
    let url = fixture.xz_cache_url();
    let (mut kiln_runs, mut nix_runs) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let kiln_cache = tempfile::tempdir().unwrap();
        kiln_runs.push(measure(kiln_realize(
            &url,
            Some(fixture.public_key()),
            kiln_cache.path(),
            node,
        )));
        let nix_store = tempfile::tempdir().unwrap();
        nix_runs.push(measure(nix_copy(
            &url,
            fixture.public_key(),
            nix_store.path(),
            node,
        )));
        // Both trees are read-only like Nix's; make them removable.
        for dir in [kiln_cache.path(), nix_store.path()] {
            Command::new("chmod")
                .args(["-R", "u+w"])
                .arg(dir)
                .status()
                .unwrap();
        }
    }
    let kiln_wall = median(kiln_runs.iter().map(|r| r.wall).collect());
    let nix_wall = median(nix_runs.iter().map(|r| r.wall).collect());
    let kiln_peak = kiln_runs.iter().map(|r| r.peak_kib).max().unwrap();
    let nix_peak = nix_runs.iter().map(|r| r.peak_kib).max().unwrap();
    let ratio = kiln_wall.as_secs_f64() / nix_wall.as_secs_f64();
    println!("realize the fixture nodejs closure from a file:// xz cache into an empty store");
    println!("  median of {ROUNDS} rounds, interleaved");
    println!(
        "  kiln realize : {:>8.3} s   peak {:>7.1} MiB",
        kiln_wall.as_secs_f64(),
        mib(kiln_peak)
    );
    println!(
        "  nix copy     : {:>8.3} s   peak {:>7.1} MiB",
        nix_wall.as_secs_f64(),
        mib(nix_peak)
    );
    println!(
        "  ratio kiln/nix: {ratio:.2}x (target <= 0.70x) {}",
        if ratio <= 0.7 { "MET" } else { "NOT MET" }
    );
}

/// Adds a store path holding one big file, exports it to a zstd cache, and
/// measures kiln's peak memory realizing it.
fn big_nar_memory() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("kiln-bench-big");
    std::fs::create_dir(&tree).unwrap();
    let status = Command::new("dd")
        .args(["if=/dev/zero", "bs=1M", &format!("count={BIG_FILE_MIB}")])
        .arg(format!("of={}", tree.join("big").display()))
        .arg("status=none")
        .status()
        .unwrap();
    assert!(status.success());
    let added = nix_command("nix-store")
        .arg("--add")
        .arg(&tree)
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let path = String::from_utf8(added.stdout).unwrap().trim().to_string();
    let cache = work.path().join("cache");
    let cache_url = format!("file://{}", cache.display());
    let copied = nix_command("nix")
        .args([
            "copy",
            "--to",
            &format!("{cache_url}?compression=zstd"),
            &path,
        ])
        .output()
        .unwrap();
    assert!(
        copied.status.success(),
        "{}",
        String::from_utf8_lossy(&copied.stderr)
    );

    let kiln_cache = tempfile::tempdir().unwrap();
    let run = measure(kiln_realize(&cache_url, None, kiln_cache.path(), &path));
    println!("realize one {BIG_FILE_MIB} MiB NAR (zstd, unsigned, --no-verify)");
    println!(
        "  kiln realize : {:>8.3} s   peak {:>7.1} MiB (bound: 100 MiB) {}",
        run.wall.as_secs_f64(),
        mib(run.peak_kib),
        if mib(run.peak_kib) < 100.0 {
            "MET"
        } else {
            "NOT MET"
        }
    );
    Command::new("chmod")
        .args(["-R", "u+w"])
        .arg(kiln_cache.path())
        .status()
        .unwrap();
    // The path is the bench's own; leave the shared /nix/store as it was.
    let _ = nix_command("nix-store").args(["--delete", &path]).output();
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !Path::new("/usr/bin/time").exists() {
        eprintln!(
            "SKIPPED: /usr/bin/time (Debian package `time`) measures peak memory; install it"
        );
        return;
    }
    side_by_side(fixture);
    big_nar_memory();
}
