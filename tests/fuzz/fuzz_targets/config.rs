//! `nixpacks.toml`/`nixpacks.json` text, which comes with the app: parsed
//! as both formats; what parses is merged over and under a provider-like
//! plan, ordered and printed, and then planned for real as the config file
//! of a small node app, so the whole merge (holes, phase defaults, pinning)
//! runs on it. Each step may refuse it with an error; none may panic.
#![no_main]

use std::fs;

use kiln_providers::config::{parse, parse_kiln_settings, ConfigFormat};
use kiln_providers::{generate_plan, BuildPlan, GeneratePlanOptions, Phase, Pkg, StartPhase};
use libfuzzer_sys::fuzz_target;

/// What a provider could have planned: the lower plan the config extends.
fn provider_plan() -> BuildPlan {
    let mut setup = Phase::setup(Some(vec![Pkg::new("nodejs_20"), Pkg::new("npm-9_x")]));
    setup.add_nix_libs(&["zlib"]);
    setup.add_apt_pkgs(&["git"]);
    let install = Phase::install(Some("npm ci".to_string()));
    let build = Phase::build(Some("npm run build".to_string()));
    BuildPlan::new(
        vec![setup, install, build],
        Some(StartPhase::new("npm run start")),
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for (format, file) in [
        (ConfigFormat::Toml, "nixpacks.toml"),
        (ConfigFormat::Json, "nixpacks.json"),
    ] {
        let _ = parse_kiln_settings(text, format, file);
        let Ok((config, _warnings)) = parse(text, format, file) else {
            continue;
        };
        let lower = provider_plan();
        for merged in [
            lower.merge(&config),
            config.merge(&lower),
            BuildPlan::merge_all([&lower, &config, &config]),
        ] {
            let _ = merged.phases_in_order();
            let _ = merged.to_json();
            let _ = merged.to_toml();
        }
        let app = tempfile::tempdir().expect("a temp folder");
        fs::write(
            app.path().join("package.json"),
            r#"{"scripts":{"build":"tsc","start":"node index.js"}}"#,
        )
        .expect("package.json");
        fs::write(app.path().join(file), text).expect("the config file");
        if let Ok(plan) = generate_plan(app.path(), &GeneratePlanOptions::default()) {
            let _ = plan.phases_in_order();
            let _ = plan.to_json();
            let _ = plan.to_toml();
        }
    }
});
