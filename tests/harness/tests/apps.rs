//! The fixture apps really answer their body on `$PORT`, run straight on
//! this machine, so a failing image test points at kiln, not the fixture.

use std::process::Command;
use std::time::Duration;

use kiln_harness::apps::FixtureApp;
use kiln_harness::process::{free_port, ChildGuard};
use kiln_harness::{http, require};

fn answers(app: FixtureApp, program: &str, args: &[&str]) {
    if !require(&[program, "curl"]) {
        return;
    }
    let port = free_port();
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut server = ChildGuard::spawn(
        app.name(),
        Command::new(program)
            .args(args)
            .current_dir(app.dir())
            .env("PORT", port.to_string()),
        log.path(),
    );
    let url = format!("http://127.0.0.1:{port}/");
    server.wait_ready(Duration::from_secs(20), || http::get(&url).is_some());
    assert_eq!(http::get(&url), Some(app.body()), "{}", server.log());
}

#[test]
fn node_server_answers() {
    answers(FixtureApp::Node, "node", &["server.js"]);
}

#[test]
fn python_server_answers() {
    answers(FixtureApp::Python, "python3", &["main.py"]);
}

#[test]
fn shell_app_answers() {
    if require(&["busybox"]) {
        answers(FixtureApp::Shell, "bash", &["start.sh"]);
    }
}

#[test]
fn static_and_configured_apps_hold_their_body() {
    let site = FixtureApp::StaticSite.dir().join("site/index.html");
    assert_eq!(
        std::fs::read_to_string(site).unwrap(),
        FixtureApp::StaticSite.body()
    );
    let config =
        std::fs::read_to_string(FixtureApp::Configured.dir().join("nixpacks.toml")).unwrap();
    let greeting = FixtureApp::Configured.body();
    assert!(config.contains(greeting.trim_end()), "{config}");
}

#[test]
fn node_lockfile_is_npm_ci_able() {
    if !require(&["npm"]) {
        return;
    }
    let copy = tempfile::tempdir().unwrap();
    for file in ["package.json", "package-lock.json", "server.js"] {
        std::fs::copy(FixtureApp::Node.dir().join(file), copy.path().join(file)).unwrap();
    }
    let status = Command::new("npm")
        .args(["ci", "--offline", "--no-audit", "--no-fund"])
        .current_dir(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
}
