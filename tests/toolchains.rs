//! Providers whose toolchain Debian packages build their fixture app end to
//! end, with the fixture nixpkgs' copy of that toolchain, and the image
//! answers. Go: the provider's plan (`go mod download`, `go build`) runs
//! unchanged, and the binary runs in the slim run image without Go. Caddy:
//! a Vite single-page app is built by npm and served by Caddy, as the Node
//! provider plans it. PHP: Composer installs the app's autoloader, and
//! nginx serves it through php-fpm, from the plan's package expression.
//! Rust: cargo builds the crate from the Rust provider's plan (its overlay
//! package standing in). Ruby: Bundler installs and runs an app whose
//! config takes Ruby and OpenSSL from Nix instead of rbenv and apt. Deno
//! and Bun: the binaries their npm packages ship run their providers'
//! plans. Java: Maven packages the app with the plan's command, its
//! plugins from the fixture's repository.

use std::path::{Path, PathBuf};

use kiln_harness::apps::FixtureApp;
use kiln_harness::validators::Bundle;
use kiln_harness::FixtureNixpkgs;
use tempfile::TempDir;

/// The kiln under test.
const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// What building an image and running it needs besides the fixture.
const RUN_TOOLS: [&str; 3] = ["umoci", "runc", "curl"];

#[test]
fn a_go_module_builds_with_the_go_plan_and_its_binary_answers_without_go() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::GoServer;
    let plan = app.plan(KILN);
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

    let (_work, layout) = build_and_answer(fixture, app);

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
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::NodeViteSpa;
    let plan = app.plan(KILN);
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

    let (_work, layout) = build_and_answer(fixture, app);
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/dist/index.html").is_file());
}

#[test]
fn a_php_app_is_installed_by_composer_and_served_by_nginx_and_php_fpm() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::PhpApp;
    let plan = app.plan(KILN);
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

    let (_work, layout) = build_and_answer(fixture, app);
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/vendor/autoload.php").is_file());
}

#[test]
fn a_rust_crate_builds_with_the_rust_plan_and_its_binary_answers() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::RustServer;
    let plan = app.plan(KILN);
    assert_eq!(
        plan["phases"]["setup"]["nixPkgs"],
        serde_json::json!(["binutils", "gcc", "rust-bin.stable.latest.default"])
    );
    assert_eq!(
        plan["phases"]["build"]["cmds"][1], "cargo build --release",
        "{plan}"
    );
    assert_eq!(plan["start"]["cmd"], "./bin/kiln-rust-server");

    let (_work, layout) = build_and_answer(fixture, app);
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle.rootfs().join("app/bin/kiln-rust-server").is_file());
}

#[test]
fn a_ruby_app_is_installed_and_run_by_bundler_with_ruby_and_openssl_from_nix() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::RubyApp;
    let plan = app.plan(KILN);
    assert_eq!(
        plan["phases"]["install"]["cmds"],
        serde_json::json!(["bundle install"])
    );
    assert_eq!(
        plan["phases"]["setup"]["nixPkgs"],
        serde_json::json!(["ruby", "openssl"])
    );

    let (_work, layout) = build_and_answer(fixture, app);
    let bundle = Bundle::unpack(&layout, "latest");
    let version = std::fs::read_to_string(bundle.rootfs().join("app/openssl-version.txt")).unwrap();
    assert!(version.starts_with("OpenSSL 3."), "{version}");
}

#[test]
fn a_deno_app_runs_with_the_deno_plan() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::DenoApp;
    let plan = app.plan(KILN);
    assert_eq!(
        plan["phases"]["setup"]["nixPkgs"],
        serde_json::json!(["deno"])
    );
    assert_eq!(plan["start"]["cmd"], "deno run --allow-all index.ts");
    build_and_answer(fixture, app);
}

#[test]
fn a_bun_app_is_installed_and_started_by_bun() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::BunApp;
    let plan = app.plan(KILN);
    assert_eq!(
        plan["phases"]["install"]["cmds"],
        serde_json::json!(["bun i --no-save"])
    );
    assert_eq!(plan["start"]["cmd"], "bun run start");
    build_and_answer(fixture, app);
}

#[test]
fn a_maven_project_is_packaged_by_the_java_plan_and_its_jar_answers() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&RUN_TOOLS) else {
        return;
    };
    let app = FixtureApp::JavaServer;
    let plan = app.plan(KILN);
    assert_eq!(
        plan["phases"]["setup"]["nixPkgs"],
        serde_json::json!(["jdk17", "maven"])
    );
    assert_eq!(
        plan["phases"]["build"]["cmds"],
        serde_json::json!([
            "mvn -DoutputFile=target/mvn-dependency-list.log -B -DskipTests clean dependency:list install"
        ])
    );
    assert_eq!(plan["start"]["cmd"], "java  $JAVA_OPTS -jar target/*jar");

    let (_work, layout) = build_and_answer(fixture, app);
    let bundle = Bundle::unpack(&layout, "latest");
    assert!(bundle
        .rootfs()
        .join("app/target/java-server-1.0.jar")
        .is_file());
}

/// Builds `app` into an OCI layout in a new temporary folder and checks
/// that the image answers; returns the folder (removed on drop) and the
/// layout in it.
fn build_and_answer(fixture: &FixtureNixpkgs, app: FixtureApp) -> (TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let (output, layout) = app.build_in(KILN, fixture, work.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    app.answers_from(&layout, "latest");
    (work, layout)
}
