//! kiln's push vs `skopeo copy oci:... docker://...` of the same OCI layout
//! (the fixture `nodejs` closure, one layer per store path) to a
//! `docker-registry` on loopback, side by side in one run: cold (empty
//! registry) and warm (every blob already there). Prints the times and the
//! ratios kiln/skopeo. Targets (issue 7): cold at most 0.8x skopeo, warm
//! under 0.3 s.
//!
//! Run: `cargo bench --bench registry_push` (as root, with the test
//! components installed; `ROUNDS=N` to change the number of rounds).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use kiln::registry::{push_layout, AuthEnv, PushRequest, RegistryConfig};
use kiln_harness::images::{closure, store_path_image};
use kiln_harness::process::run;
use kiln_harness::{require, FixtureNixpkgs, Registry, RegistryKind};

fn main() {
    if !require(&["docker-registry", "skopeo", "umoci"]) {
        return;
    }
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let layout = dir.path().join("layout");
    let paths = closure(fixture.store_path("nodejs"));
    store_path_image(&layout, "t", &paths);
    let bytes: u64 = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("read blobs")
        .map(|e| e.expect("blob entry").metadata().expect("blob size").len())
        .sum();
    println!(
        "image: nodejs closure, {} layers, {:.1} MiB of blobs; {rounds} rounds",
        paths.len(),
        bytes as f64 / (1 << 20) as f64
    );

    let mut times = Times::default();
    for _ in 0..rounds {
        let registry = Registry::start(RegistryKind::Plain);
        times
            .kiln_cold
            .push(time(|| kiln_push(&registry, &layout, dir.path())));
        times
            .kiln_warm
            .push(time(|| kiln_push(&registry, &layout, dir.path())));
        drop(registry);
        let registry = Registry::start(RegistryKind::Plain);
        times
            .skopeo_cold
            .push(time(|| skopeo_push(&registry, &layout)));
        times
            .skopeo_warm
            .push(time(|| skopeo_push(&registry, &layout)));
    }
    report(
        "cold",
        &times.kiln_cold,
        &times.skopeo_cold,
        "target <= 0.80x",
    );
    report(
        "warm",
        &times.kiln_warm,
        &times.skopeo_warm,
        "target kiln < 0.300 s",
    );
}

#[derive(Default)]
struct Times {
    kiln_cold: Vec<Duration>,
    kiln_warm: Vec<Duration>,
    skopeo_cold: Vec<Duration>,
    skopeo_warm: Vec<Duration>,
}

fn kiln_push(registry: &Registry, layout: &Path, home: &Path) {
    let config = RegistryConfig {
        insecure_hosts: vec![registry.host()],
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            ..AuthEnv::default()
        },
        ..RegistryConfig::default()
    };
    let destination = format!("{}/bench/node:kiln", registry.host());
    push_layout(
        &config,
        &PushRequest {
            layout,
            layout_tag: Some("t"),
            destination: &destination,
            extra_tags: &[],
            mount_from: &[],
        },
    )
    .expect("kiln push");
}

fn skopeo_push(registry: &Registry, layout: &Path) {
    run(Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:t", layout.display()))
        .arg(format!("docker://{}/bench/node:skopeo", registry.host())));
}

fn time(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(label: &str, kiln: &[Duration], skopeo: &[Duration], target: &str) {
    let (k, s) = (median(kiln), median(skopeo));
    println!(
        "{label}: kiln {:.3} s, skopeo {:.3} s, ratio kiln/skopeo {:.2}x ({target})",
        k.as_secs_f64(),
        s.as_secs_f64(),
        k.as_secs_f64() / s.as_secs_f64()
    );
}
