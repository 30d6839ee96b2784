//! Global installs in phases: `npm install -g` writes under kiln's global
//! prefix, never into a store path; the tool is on `PATH` in later phases
//! and in the image; the install phase is reused after a source edit; the
//! store-path layers are those of an app with no global install; corepack
//! runs the pnpm a project pins rather than the Nix one; a write into the
//! store fails naming the path and the way out.

use std::path::Path;
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::validators::skopeo_inspect;
use kiln_harness::{require, FixtureNixpkgs};

fn fixture() -> Option<&'static FixtureNixpkgs> {
    let fixture = FixtureNixpkgs::get()?;
    require(&["umoci", "runc", "curl", "skopeo"]).then_some(fixture)
}

/// `kiln --json build app_dir` into `oci:<layout>:latest`, cache `cache`.
fn build(fixture: &FixtureNixpkgs, app_dir: &Path, cache: &Path, layout: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .arg("--cache-dir")
        .arg(cache)
        .args(["--json", "build"])
        .arg(app_dir)
        .args(fixture.kiln_source_args())
        .arg("--output")
        .arg(format!("oci:{}:latest", layout.display()))
        .output()
        .expect("run kiln build")
}

fn summary(output: Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "kiln build failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

fn phase_cached(summary: &serde_json::Value, name: &str) -> bool {
    summary["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {summary}"))["cached"]
        .as_bool()
        .unwrap()
}

/// The digests of the layers that hold store paths.
fn store_layers(summary: &serde_json::Value) -> Vec<String> {
    summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["holds"].as_str().unwrap().contains("/nix/store/"))
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn image_path(layout: &Path) -> String {
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), &["--config"]);
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str().unwrap().strip_prefix("PATH="))
        .next()
        .expect("the image sets PATH")
        .to_string()
}

fn copy_app(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_npm_global_cli_runs_in_later_phases_and_at_start_and_is_kept_apart() {
    let Some(fixture) = fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    copy_app(&FixtureApp::NodeGlobalCli.dir(), &app);
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");

    let first = summary(build(fixture, &app, &cache, &layout));

    FixtureApp::NodeGlobalCli.answers_from(&layout, "latest");
    let path = image_path(&layout);
    let global = path.find("/usr/local/kiln/bin").expect(&path);
    let profile = path.find("/nix/var/kiln/profile").expect(&path);
    assert!(global < profile, "{path}");

    // A source edit: the global install is not run again.
    let server = app.join("server.js");
    let text = std::fs::read_to_string(&server).unwrap();
    std::fs::write(&server, format!("// edited\n{text}")).unwrap();
    let edited = summary(build(fixture, &app, &cache, &work.path().join("edited")));
    assert!(phase_cached(&edited, "install"), "{edited}");
    assert!(!phase_cached(&edited, "build") || !phase_cached(&first, "build"));

    // The same packages as an app with no global install, byte for byte.
    let plain_layout = work.path().join("plain");
    let plain = summary(build(
        fixture,
        &FixtureApp::Node.dir(),
        &work.path().join("plain-cache"),
        &plain_layout,
    ));
    assert_eq!(store_layers(&first), store_layers(&plain));
    assert!(!store_layers(&plain).is_empty());
    assert!(!image_path(&plain_layout).contains("/usr/local/kiln"));
}

#[test]
fn a_phase_writing_into_the_store_fails_naming_the_path_and_the_prefix() {
    let Some(fixture) = fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    copy_app(&FixtureApp::Node.dir(), &app);
    std::fs::write(
        app.join("nixpacks.toml"),
        "[phases.install]\ncmds = ['mkdir \"$(dirname \"$(dirname \"$(readlink -f \"$(command -v node)\")\")\")/lib/node_modules/mine\"']\n",
    )
    .unwrap();

    let output = build(
        fixture,
        &app,
        &work.path().join("cache"),
        &work.path().join("layout"),
    );

    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error = stderr
        .lines()
        .find(|line| line.starts_with("error"))
        .unwrap_or_else(|| panic!("no error line in {stderr}"));
    assert!(
        error.contains("it tried to write into /nix/store/")
            && error.contains("/lib/node_modules/mine")
            && error.contains("/usr/local/kiln"),
        "{stderr}"
    );
}

#[test]
fn corepack_runs_the_pnpm_the_project_pins_and_is_reused_after_an_edit() {
    let Some(fixture) = fixture() else {
        return;
    };
    let app_fixture = FixtureApp::NodePnpmCorepack;
    let pinned = "9.15.0";
    let nix_pnpm = fixture.store_path("pnpm-9_x");
    assert!(
        !nix_pnpm.ends_with(pinned),
        "{nix_pnpm}: pin another version"
    );
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    copy_app(&app_fixture.dir(), &app);
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");

    let output = build(fixture, &app, &cache, &layout);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    summary(output);

    assert!(
        log.contains(&format!("[build] pnpm {pinned} builds")),
        "{log}"
    );
    app_fixture.answers_from(&layout, "latest");

    let server = app.join("server.js");
    let text = std::fs::read_to_string(&server).unwrap();
    std::fs::write(&server, format!("// edited\n{text}")).unwrap();
    let edited = summary(build(fixture, &app, &cache, &work.path().join("edited")));
    assert!(phase_cached(&edited, "install"), "{edited}");
}
