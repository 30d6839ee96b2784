//! Build commands reach the package registries the way the host does: on
//! this machine's network, which re-signs TLS with a CA only the host's
//! bundle trusts, `npm ci` and `pip install` download with no flag given.
//! The host's bundle and proxy variables never reach the image, a layer
//! or a phase's cache key.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::validators::skopeo_inspect;
use kiln_harness::{require, ConnectProxy, FixtureNixpkgs};

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    for name in kiln::sandbox::PROXY_VARIABLES {
        command.env_remove(name);
    }
    command
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_CACHE_DIR");
    command
}

fn fixture() -> Option<&'static FixtureNixpkgs> {
    let fixture = FixtureNixpkgs::get()?;
    require(&["umoci", "runc", "curl", "skopeo"]).then_some(fixture)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `kiln --json build app` into `oci:<layout>:latest` with the fixture's
/// packages and the cache `cache`, plus `extra` arguments.
fn build(fixture: &FixtureNixpkgs, app: FixtureApp, cache: &Path, layout: &Path) -> Command {
    let mut command = kiln();
    command
        .arg("--cache-dir")
        .arg(cache)
        .args(["--json", "build"])
        .arg(app.dir())
        .args(fixture.kiln_source_args())
        .arg("--output")
        .arg(format!("oci:{}:latest", layout.display()));
    command
}

fn summary(output: Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "kiln build failed:\n{}",
        stderr(&output)
    );
    serde_json::from_slice(&output.stdout).expect("--json prints one JSON object")
}

/// The image's environment, as skopeo reads its config.
fn image_env(layout: &Path) -> Vec<String> {
    let config = skopeo_inspect(&format!("oci:{}:latest", layout.display()), &["--config"]);
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// No proxy variable and nothing pointing at the bound bundle (kiln's base
/// sets `SSL_CERT_FILE` to the image's own certificates, which is fine).
fn assert_no_host_settings(env: &[String]) {
    for entry in env {
        let name = entry.split('=').next().unwrap();
        assert!(
            !entry.contains("/run/kiln") && !kiln::sandbox::PROXY_VARIABLES.contains(&name),
            "the image's environment has {entry}"
        );
    }
}

/// A copy of the host's CA bundle at another path.
fn bundle_copy(dir: &Path) -> PathBuf {
    let host = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("this machine has a system CA bundle");
    let copy = dir.join("copy-of-host-ca.pem");
    std::fs::copy(host, &copy).unwrap();
    copy
}

#[test]
fn npm_ci_and_pip_install_download_with_no_flags_and_the_images_answer() {
    let Some(fixture) = fixture() else {
        return;
    };
    for app in [FixtureApp::NodeRegistryDeps, FixtureApp::PythonIndexDeps] {
        let work = tempfile::tempdir().unwrap();
        let layout = work.path().join("layout");
        let output = build(fixture, app, &work.path().join("cache"), &layout)
            .output()
            .unwrap();
        summary(output);
        app.answers_from(&layout, "latest");
        assert_no_host_settings(&image_env(&layout));
    }
}

#[test]
fn pip_trusts_the_bundle_kiln_binds_and_no_other() {
    let Some(fixture) = fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    // A bundle with no CA of the index's chain in it: pip must refuse.
    let unrelated = work.path().join("unrelated.pem");
    let status = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=kiln unrelated test CA", "-keyout"])
        .arg(work.path().join("key.pem"))
        .arg("-out")
        .arg(&unrelated)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let layout = work.path().join("layout");

    let output = build(
        fixture,
        FixtureApp::PythonIndexDeps,
        &work.path().join("cache"),
        &layout,
    )
    .arg("--ca-file")
    .arg(&unrelated)
    .output()
    .unwrap();

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("phase install failed"), "{message}");
    assert!(!layout.exists());
}

#[test]
fn another_bundle_path_and_proxy_settings_change_no_key_and_no_digest() {
    let Some(fixture) = fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = FixtureApp::NodeRegistryDeps;
    let cache = work.path().join("cache");
    let first = summary(
        build(fixture, app, &cache, &work.path().join("first"))
            .output()
            .unwrap(),
    );
    let copy = bundle_copy(work.path());
    let proxy = ConnectProxy::start();
    let with_proxy = |command: &mut Command| {
        command
            .arg("--ca-file")
            .arg(&copy)
            .env("HTTPS_PROXY", proxy.url())
            .env("https_proxy", proxy.url());
    };

    let mut again = build(fixture, app, &cache, &work.path().join("again"));
    with_proxy(&mut again);
    let again = summary(again.output().unwrap());
    let mut fresh = build(
        fixture,
        app,
        &work.path().join("fresh-cache"),
        &work.path().join("fresh"),
    );
    with_proxy(&mut fresh);
    let fresh = summary(fresh.output().unwrap());

    for phase in again["phases"].as_array().unwrap() {
        assert_eq!(phase["cached"], true, "{again}");
    }
    assert!(fresh["phases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|phase| phase["cached"] == false));
    assert!(proxy.tunnels() > 0, "npm ci did not go through HTTPS_PROXY");
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(fresh["digest"], first["digest"]);
    assert_no_host_settings(&image_env(&work.path().join("fresh")));
}

#[test]
fn proxy_variables_and_the_bundle_reach_the_shell() {
    let Some(fixture) = fixture() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let output = kiln()
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .arg("shell")
        .arg(FixtureApp::Shell.dir())
        .args(fixture.kiln_source_args())
        .env("HTTPS_PROXY", "http://proxy.test:3128")
        .env("no_proxy", "localhost")
        .args([
            "--",
            "bash",
            "-c",
            "echo \"$HTTPS_PROXY $no_proxy $SSL_CERT_FILE\"; head -1 \"$PIP_CERT\"",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "http://proxy.test:3128 localhost /run/kiln/ca-certificates.crt\n\
         -----BEGIN CERTIFICATE-----\n"
    );
}
