//! Plan and detect time on fixture apps (the target is well under 50 ms).

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use kiln_providers::{detect_providers, generate_plan, GeneratePlanOptions};

fn apps() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/apps");
    let mut apps: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("fixture apps exist")
        .map(|e| e.expect("readable fixture folder").path())
        .collect();
    apps.sort();
    apps
}

fn plan_time(c: &mut Criterion) {
    let options = GeneratePlanOptions::default();
    for app in apps() {
        let name = app.file_name().unwrap().to_string_lossy().to_string();
        c.bench_function(&format!("plan {name}"), |b| {
            b.iter(|| generate_plan(&app, &options).expect("fixture apps plan"))
        });
        c.bench_function(&format!("detect {name}"), |b| {
            b.iter(|| detect_providers(&app, &options).expect("fixture apps detect"))
        });
    }
}

criterion_group!(benches, plan_time);
criterion_main!(benches);
