//! `kiln realize` side by side with real Nix (`nix copy --from file://...
//! --to <temp store>`) on the same closure, in one run, printing the wall
//! time ratio and each tool's peak memory. Then peak memory of kiln on a NAR
//! far larger than that bound, to show memory does not follow NAR size.
//!
//! The two run in turn for `KILN_BENCH_ROUNDS` rounds (default 5), which
//! of them goes first alternating, and the median of each round's ratio is
//! reported beside every round's wall and CPU (user + system) times. On a
//! machine shared with other work, load changes from one run to the next;
//! a ratio of runs made seconds apart is far steadier than one of runs made
//! minutes apart, and CPU time shows what wall time hides when other work
//! takes the cores.
//!
//! Run: `cargo bench --bench realize_vs_nix` (as root, with nix, patchelf and
//! GNU time installed; tests/run installs them). Target: kiln at most 0.7x
//! Nix's wall time; kiln's peak memory under 100 MB.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_harness::nixpkgs::nix_command;
use kiln_harness::FixtureNixpkgs;

const BIG_FILE_MIB: usize = 1024;

/// Wall time, CPU time (user + system) and peak resident memory (KiB) of
/// one run.
struct Run {
    wall: Duration,
    cpu: Duration,
    peak_kib: u64,
}

/// Runs `command` under GNU time and returns its wall and CPU time and peak
/// RSS.
fn measure(command: Command) -> Run {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M %U %S", "-o"])
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
    let printed = std::fs::read_to_string(report.path()).unwrap();
    let fields: Vec<&str> = printed
        .lines()
        .last()
        .expect("GNU time printed its report")
        .split_whitespace()
        .collect();
    let [peak, user, system] = fields[..] else {
        panic!("GNU time printed {printed:?}");
    };
    let seconds = |field: &str| Duration::from_secs_f64(field.parse().unwrap());
    Run {
        wall,
        cpu: seconds(user) + seconds(system),
        peak_kib: peak.parse().unwrap(),
    }
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

fn median<T: PartialOrd + Copy>(mut values: Vec<T>) -> T {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn rounds() -> usize {
    std::env::var("KILN_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(5)
}

/// The machine's load average over the last minute, to read the times by.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string())
}

fn side_by_side(fixture: &FixtureNixpkgs) {
    let node = fixture.store_path("nodejs_20");
    let url = fixture.xz_cache_url();
    let rounds = rounds();
    println!("realize the fixture nodejs closure from a file:// xz cache into an empty store");
    println!(
        "  {rounds} rounds, the first to run alternating; load average {} at the start",
        load_average()
    );
    let (mut kiln_runs, mut nix_runs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let kiln_cache = tempfile::tempdir().unwrap();
        let nix_store = tempfile::tempdir().unwrap();
        let kiln = || {
            measure(kiln_realize(
                &url,
                Some(fixture.public_key()),
                kiln_cache.path(),
                node,
            ))
        };
        let nix = || measure(nix_copy(&url, fixture.public_key(), nix_store.path(), node));
        let (kiln_run, nix_run) = if round % 2 == 0 {
            let kiln_run = kiln();
            (kiln_run, nix())
        } else {
            let nix_run = nix();
            (kiln(), nix_run)
        };
        println!(
            "  round {}: kiln {:.3} s (cpu {:.3} s), nix {:.3} s (cpu {:.3} s), ratio {:.2}x",
            round + 1,
            kiln_run.wall.as_secs_f64(),
            kiln_run.cpu.as_secs_f64(),
            nix_run.wall.as_secs_f64(),
            nix_run.cpu.as_secs_f64(),
            kiln_run.wall.as_secs_f64() / nix_run.wall.as_secs_f64()
        );
        kiln_runs.push(kiln_run);
        nix_runs.push(nix_run);
        // Both trees are read-only like Nix's; make them removable.
        for dir in [kiln_cache.path(), nix_store.path()] {
            Command::new("chmod")
                .args(["-R", "u+w"])
                .arg(dir)
                .status()
                .unwrap();
        }
    }
    let seconds = |runs: &[Run], time: fn(&Run) -> Duration| {
        median(runs.iter().map(|r| time(r).as_secs_f64()).collect())
    };
    let ratios = |time: fn(&Run) -> Duration| {
        median(
            kiln_runs
                .iter()
                .zip(&nix_runs)
                .map(|(k, n)| time(k).as_secs_f64() / time(n).as_secs_f64())
                .collect(),
        )
    };
    let peak = |runs: &[Run]| mib(runs.iter().map(|r| r.peak_kib).max().unwrap());
    println!("  medians:");
    println!(
        "  kiln realize : {:>8.3} s  cpu {:>7.3} s  peak {:>7.1} MiB",
        seconds(&kiln_runs, |r| r.wall),
        seconds(&kiln_runs, |r| r.cpu),
        peak(&kiln_runs)
    );
    println!(
        "  nix copy     : {:>8.3} s  cpu {:>7.3} s  peak {:>7.1} MiB",
        seconds(&nix_runs, |r| r.wall),
        seconds(&nix_runs, |r| r.cpu),
        peak(&nix_runs)
    );
    let ratio = ratios(|r| r.wall);
    println!(
        "  ratio kiln/nix: {ratio:.2}x wall, {:.2}x cpu (target <= 0.70x wall) {}",
        ratios(|r| r.cpu),
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
