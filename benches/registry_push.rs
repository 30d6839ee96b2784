//! kiln's push vs `skopeo copy oci:... docker://...` of the same OCI layout
//! (the fixture `nodejs` closure, one layer per store path) to a
//! `docker-registry` on loopback, side by side in one run: cold (empty
//! registry) and warm (every blob already there). Prints the times and the
//! ratios kiln/skopeo. Targets (issue 7): cold at most 0.8x skopeo, warm
//! under 0.3 s.
//!
//! Then a built image (the same closure packed by kiln into its blob cache)
//! pushed cold the way `kiln build --push` did before (written to an OCI
//! layout, read back and hashed, then pushed) and the way it does now
//! (straight from the blob cache), side by side; ratio now/before.
//!
//! Run: `cargo bench --bench registry_push` (as root, with the test
//! components installed; `ROUNDS=N` to change the number of rounds).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln::image::{self, Destination, Image, ImageBuilder};
use kiln::layer::{Compression, Format, LayerCache, PackSettings, StorePathSource};
use kiln::pipeline::push_image;
use kiln::registry::{
    push_layout, AuthEnv, NoPushProgress, PushRequest, PushTarget, RegistryConfig,
};
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
    built_image_push(&paths, dir.path(), rounds);
}

/// Cold pushes of a kiln-built image: staged through a layout as before,
/// and straight from the blob cache as now, alternating.
fn built_image_push(paths: &[PathBuf], work: &Path, rounds: usize) {
    let cache = LayerCache::open(&work.join("cache")).expect("layer cache");
    let image = built_image(&cache, paths);
    let (mut staged, mut direct) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let registry = Registry::start(RegistryKind::Plain);
        let config = config_for(&registry, work);
        let layout = work.join(format!("staged-{round}"));
        staged.push(time(|| staged_push(&config, &registry, &image, &layout)));
        drop(registry);
        let registry = Registry::start(RegistryKind::Plain);
        let config = config_for(&registry, work);
        direct.push(time(|| {
            let destination = format!("{}/bench/built:direct", registry.host());
            let target = PushTarget {
                destination: &destination,
                extra_tags: &[],
                mount_from: &[],
            };
            push_image(&image, &target, &config, &cache, Arc::new(NoPushProgress))
                .expect("push from the blob cache");
        }));
    }
    let (before, now) = (median(&staged), median(&direct));
    println!(
        "built image, cold: staged through a layout {:.3} s, from the blob cache {:.3} s, ratio now/before {:.2}x",
        before.as_secs_f64(),
        now.as_secs_f64(),
        now.as_secs_f64() / before.as_secs_f64()
    );
}

/// The closure packed by kiln, one layer per store path.
fn built_image(cache: &LayerCache, paths: &[PathBuf]) -> Image {
    let settings = PackSettings {
        compression: Compression::new(Format::Gzip, None).expect("gzip"),
        source_date_epoch: 1,
    };
    let layers = paths
        .iter()
        .map(|path| {
            let source = StorePathSource::in_place(&path.display().to_string());
            cache
                .pack_store_paths(&[source], &settings)
                .expect("pack a store path")
        })
        .collect::<Vec<_>>();
    ImageBuilder::new(1).layers(layers).build().expect("image")
}

/// What `kiln build --push` did before: the image written to a layout,
/// then read back, checked and pushed.
fn staged_push(config: &RegistryConfig, registry: &Registry, image: &Image, layout: &Path) {
    let destination = Destination::OciLayout {
        dir: layout.to_path_buf(),
        tag: Some("t".into()),
    };
    image::write(image, &destination, &[]).expect("stage the layout");
    let reference = format!("{}/bench/built:staged", registry.host());
    push_layout(
        config,
        &PushRequest {
            layout,
            layout_tag: Some("t"),
            destination: &reference,
            extra_tags: &[],
            mount_from: &[],
        },
    )
    .expect("push the staged layout");
}

fn config_for(registry: &Registry, home: &Path) -> RegistryConfig {
    RegistryConfig {
        insecure_hosts: vec![registry.host()],
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            ..AuthEnv::default()
        },
        ..RegistryConfig::default()
    }
}

#[derive(Default)]
struct Times {
    kiln_cold: Vec<Duration>,
    kiln_warm: Vec<Duration>,
    skopeo_cold: Vec<Duration>,
    skopeo_warm: Vec<Duration>,
}

fn kiln_push(registry: &Registry, layout: &Path, home: &Path) {
    let config = config_for(registry, home);
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
