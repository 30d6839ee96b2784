//! Providers whose toolchain Debian packages build their fixture app end to
//! end, with the fixture nixpkgs' copy of that toolchain, and the image
//! answers. Go: the provider's plan (`go mod download`, `go build`) runs
//! unchanged, and the binary runs in the slim run image without Go. Caddy:
//! a Vite single-page app is built by npm and served by Caddy, as the Node
//! provider plans it. PHP: Composer installs the app's autoloader, and
//! nginx serves it through php-fpm, from the plan's package expression.

use std::path::Path;
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::validators::Bundle;
use kiln_harness::{require, FixtureNixpkgs};

#[test]
fn a_go_module_builds_with_the_go_plan_and_its_binary_answers_without_go() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["umoci", "runc", "curl"]) {
        return;
    }
    let app = FixtureApp::GoServer;
    let plan = plan(app);
    assert_eq!(
        plan["phases"]["setup"]["nixPkgs"],
        serde_json::json!(["go_1_19"])
    );
    assert_eq!(
        plan["phases"]["build"]["cmds"],
        serde_json::json!(["go build -o out"])
    );
    assert_eq!(plan["start"]["cmd"], "./out");
    assert_eq!(plan["start"]["runImage"], "ubuntu:noble");

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = build(fixture, app, work.path(), &layout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    app.answers_from(&layout, "latest");

    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/out").is_file());
    let go = fixture.store_path("go");
    let in_image = Path::new(go.trim_start_matches('/'));
    assert!(
        !bundle.rootfs().join(in_image).exists(),
        "{go} is in the run image"
    );
}

#[test]
fn a_vite_single_page_app_is_built_by_npm_and_served_by_caddy() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["umoci", "runc", "curl"]) {
        return;
    }
    let app = FixtureApp::NodeViteSpa;
    let plan = plan(app);
    assert_eq!(
        plan["phases"]["caddy"]["nixPkgs"],
        serde_json::json!(["caddy"])
    );
    assert_eq!(plan["variables"]["NIXPACKS_SPA_OUTPUT_DIR"], "dist");
    assert!(
        plan["start"]["cmd"]
            .as_str()
            .unwrap()
            .starts_with("exec caddy run --config /assets/Caddyfile"),
        "{plan}"
    );

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = build(fixture, app, work.path(), &layout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    app.answers_from(&layout, "latest");
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/dist/index.html").is_file());
}

#[test]
fn a_php_app_is_installed_by_composer_and_served_by_nginx_and_php_fpm() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["umoci", "runc", "curl"]) {
        return;
    }
    let app = FixtureApp::PhpApp;
    let plan = plan(app);
    let setup = &plan["phases"]["setup"]["nixPkgs"];
    assert_eq!(
        setup[0], "(php.withExtensions (pe: pe.enabled ++ []))",
        "{plan}"
    );
    assert_eq!(setup[3], "phpPackages.composer", "{plan}");
    assert_eq!(
        plan["phases"]["install"]["cmds"][1],
        "composer install --ignore-platform-reqs"
    );

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = build(fixture, app, work.path(), &layout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    app.answers_from(&layout, "latest");
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/vendor/autoload.php").is_file());
}

/// What `kiln plan` prints for `app`.
fn plan(app: FixtureApp) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("plan")
        .arg(app.dir())
        .output()
        .unwrap();
    assert!(output.status.success());
    serde_json::from_slice(&output.stdout).unwrap()
}

/// `kiln build app` into `oci:<layout>:latest` with a cache in `work`.
fn build(fixture: &FixtureNixpkgs, app: FixtureApp, work: &Path, layout: &Path) -> Output {
    app.build_command(
        env!("CARGO_BIN_EXE_kiln"),
        fixture,
        &work.join("cache"),
        layout,
    )
    .output()
    .unwrap()
}
