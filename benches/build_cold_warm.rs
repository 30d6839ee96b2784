//! `kiln build` of the Node fixture app cold (empty kiln cache) and warm
//! (same cache, one source file edited), stage by stage from `--json`, with
//! the warm/cold ratio of the whole build.
//!
//! Run: `cargo bench --bench build_cold_warm` (as root, with nix; tests/run
//! installs it). Target: warm under 10% of cold. The build phase copies a
//! file so the edit has a phase to re-run, as a real app's build would.

use std::path::Path;

use kiln_harness::FixtureNixpkgs;

mod support;

use support::{node_app_copy, node_build, stages, timed, Build};

const ROUNDS: usize = 3;

fn build(fixture: &FixtureNixpkgs, app: &Path, cache: &Path, output: &Path) -> Build {
    timed(
        node_build(fixture, app, cache, &fixture.xz_cache_url())
            .arg("--output")
            .arg(format!("oci-archive:{}", output.display())),
    )
}

fn main() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        eprintln!("skipped: the fixture nixpkgs needs nix and root");
        return;
    };
    let mut ratios = Vec::new();
    for round in 1..=ROUNDS {
        let work = tempfile::tempdir().unwrap();
        let app = node_app_copy(work.path());
        let cache = work.path().join("cache");
        let cold = build(fixture, &app, &cache, &work.path().join("cold.oci.tar"));
        let mut source = std::fs::read_to_string(app.join("server.js")).unwrap();
        source.push_str(&format!("\n// edit {round}\n"));
        std::fs::write(app.join("server.js"), source).unwrap();
        let warm = build(fixture, &app, &cache, &work.path().join("warm.oci.tar"));
        let ratio = warm.wall.as_secs_f64() / cold.wall.as_secs_f64();
        println!("round {round}");
        println!(
            "  cold {:>7.2}s  {}",
            cold.wall.as_secs_f64(),
            stages(&cold.summary)
        );
        println!(
            "  warm {:>7.2}s  {}",
            warm.wall.as_secs_f64(),
            stages(&warm.summary)
        );
        println!("  warm/cold {ratio:.3}");
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "median warm/cold {:.3} (target under 0.100)",
        ratios[ratios.len() / 2]
    );
}
