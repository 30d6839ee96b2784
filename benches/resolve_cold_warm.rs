//! Resolving the Node fixture app's packages (`kiln lock`: plan, nixpkgs
//! archive, evaluation in the sandbox) with the evaluator kiln fetches from
//! the binary cache against the host's `nix-instantiate`, side by side in
//! one run: cold (empty kiln cache: the archive is downloaded from the
//! harness's HTTP server and unpacked, the cached evaluator fetched) and
//! warm (same cache: only the evaluation runs again). Prints the medians,
//! the ratios cached/host, and the peak memory (maximum resident set of
//! kiln and the evaluator it runs, from GNU time).
//!
//! Run: `cargo bench --bench resolve_cold_warm` (as root, with the test
//! components installed; `ROUNDS=N`, default 3).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_harness::apps::FixtureApp;
use kiln_harness::archive_server::ArchiveServer;
use kiln_harness::{require, FixtureNixpkgs};

/// One `kiln lock`: its wall time and peak memory in KiB.
struct Run {
    wall: Duration,
    max_rss_kib: u64,
}

fn main() {
    if !require(&["newuidmap", "time"]) {
        return;
    }
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let server = fixture.serve_archive();
    let work = tempfile::tempdir().expect("temp dir");
    let mirrors = server.stand_in_for_node_overlay(work.path());
    let app = work.path().join("app");
    std::fs::create_dir_all(&app).expect("app folder");
    for file in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(FixtureApp::Node.dir().join(file), app.join(file)).expect("copy the app");
    }
    let cached_args = vec![
        "--substituter".to_string(),
        fixture.xz_cache_url(),
        "--trusted-public-key".to_string(),
        fixture.public_key().to_string(),
        "--evaluator".to_string(),
        fixture.evaluator().to_string(),
        "--ignore-host-store".to_string(),
    ];
    let mut runs: [Vec<(Run, Run)>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (slot, extra) in [(0, Vec::new()), (1, cached_args.clone())] {
            let cache = work.path().join(format!("cache-{round}-{slot}"));
            let lock = || kiln_lock(&app, &cache, &extra, &server, &mirrors);
            let cold = lock();
            let warm = lock();
            runs[slot].push((cold, warm));
        }
    }
    println!("resolve the Node fixture app's packages (kiln lock), {rounds} rounds");
    for (label, pick) in [("cold", 0usize), ("warm", 1)] {
        let host = median(runs[0].iter().map(|r| if pick == 0 { &r.0 } else { &r.1 }));
        let cached = median(runs[1].iter().map(|r| if pick == 0 { &r.0 } else { &r.1 }));
        println!(
            "{label}: host nix-instantiate {:.3} s ({} MiB peak), cached evaluator {:.3} s ({} MiB peak), ratio cached/host {:.2}x",
            host.wall.as_secs_f64(),
            host.max_rss_kib / 1024,
            cached.wall.as_secs_f64(),
            cached.max_rss_kib / 1024,
            cached.wall.as_secs_f64() / host.wall.as_secs_f64()
        );
    }
}

fn kiln_lock(
    app: &Path,
    cache: &Path,
    extra: &[String],
    server: &ArchiveServer,
    mirrors: &str,
) -> Run {
    let stats = tempfile::NamedTempFile::new().expect("stats file");
    let started = Instant::now();
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%M", "-o"])
        .arg(stats.path())
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(cache)
        .arg("lock")
        .arg(app)
        .args(extra)
        .env("KILN_NIXPKGS_URL", server.url())
        .env("KILN_OVERLAY_MIRRORS", mirrors)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kiln lock");
    let wall = started.elapsed();
    assert!(
        output.status.success(),
        "kiln lock failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let max_rss_kib = std::fs::read_to_string(stats.path())
        .ok()
        .and_then(|text| text.lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Run { wall, max_rss_kib }
}

fn median<'a>(runs: impl Iterator<Item = &'a Run>) -> &'a Run {
    let mut runs: Vec<&Run> = runs.collect();
    runs.sort_by_key(|run| run.wall);
    runs[runs.len() / 2]
}
