//! Plan and detect time on fixture apps (the target is well under 50 ms).
//!
//! `KILN_PLAN_BENCH_DIR=/path/to/examples cargo bench -p kiln-providers`
//! measures every folder there instead, e.g. upstream Nixpacks' examples.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use kiln_providers::{detect_providers, generate_plan, GeneratePlanOptions};

fn apps() -> Vec<PathBuf> {
    let root = std::env::var_os("KILN_PLAN_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/apps"),
        PathBuf::from,
    );
    let mut apps: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("fixture apps exist")
        .map(|e| e.expect("readable fixture folder").path())
        .filter(|p| p.is_dir())
        .collect();
    apps.sort();
    apps
}

fn plan_time(c: &mut Criterion) {
    let options = GeneratePlanOptions::default();
    for app in apps() {
        let name = app.file_name().unwrap().to_string_lossy().to_string();
        c.bench_function(&format!("plan {name}"), |b| {
            // Some upstream examples fail to plan on purpose; their time counts too.
            b.iter(|| generate_plan(&app, &options).is_ok())
        });
        c.bench_function(&format!("detect {name}"), |b| {
            b.iter(|| detect_providers(&app, &options).is_ok())
        });
    }
}

criterion_group!(benches, plan_time);
criterion_main!(benches);
