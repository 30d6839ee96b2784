//! What the build benchmarks share: a timed `kiln --json build` and its
//! stages on one line.

use std::process::Command;
use std::time::{Duration, Instant};

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
