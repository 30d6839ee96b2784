//! What the build benchmarks share: a copy of the Node fixture app, a
//! `kiln --json build` of it with the fixture's packages, timed, and its
//! stages on one line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_harness::apps::FixtureApp;
use kiln_harness::FixtureNixpkgs;

/// A copy of the Node fixture app in `work`, for builds that edit it.
pub fn node_app_copy(work: &Path) -> PathBuf {
    let app = work.join("node-server");
    std::fs::create_dir(&app).unwrap();
    for file in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(FixtureApp::Node.dir().join(file), app.join(file)).unwrap();
    }
    app
}

/// `kiln --json build app` with the fixture's nixpkgs, packages from
/// `substituter` and a build phase of its own, for the caller to add to.
pub fn node_build(
    fixture: &FixtureNixpkgs,
    app: &Path,
    cache: &Path,
    substituter: &str,
) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .arg("--json")
        .arg("--cache-dir")
        .arg(cache)
        .arg("build")
        .arg(app)
        .arg("--nixpkgs")
        .arg(fixture.nixpkgs_dir())
        .args(["--substituter", substituter])
        .args(["--trusted-public-key", fixture.public_key()])
        .args(["--build-cmd", "cp server.js server.copy.js"]);
    command
}

/// Wall time of one build and its `--json` summary.
pub struct Build {
    pub wall: Duration,
    pub summary: serde_json::Value,
}

/// Runs `command` (a `kiln --json build ...`), which must succeed.
pub fn timed(command: &mut Command) -> Build {
    let started = Instant::now();
    let result = command
        .env_remove("RUST_LOG")
        .output()
        .expect("run kiln build");
    let wall = started.elapsed();
    assert!(
        result.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
    Build {
        wall,
        summary: serde_json::from_slice(&result.stdout).expect("--json summary"),
    }
}

/// `name 1.23s, ...` for every stage of a summary.
pub fn stages(summary: &serde_json::Value) -> String {
    summary["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {:.2}s",
                s["name"].as_str().unwrap(),
                s["seconds"].as_f64().unwrap()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
