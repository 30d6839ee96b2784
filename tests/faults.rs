//! kiln against a bad network: a fault-injecting proxy between kiln and the
//! nginx-served binary cache, and between kiln and docker-registry. Every
//! fault either passes after retries or fails with one clear line; nothing
//! partial is left in kiln's cache or counted as valid, and the next run
//! completes.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use kiln_harness::{require, Fault, FaultProxy, FixtureNixpkgs};

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env_remove("RUST_LOG").env_remove("KILN_CACHE_DIR");
    command
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `kiln --json realize` of the fixture's `attribute` from `cache_url` into
/// the kiln cache `cache`, ignoring the host store.
fn realize(fixture: &FixtureNixpkgs, cache: &Path, cache_url: &str, attribute: &str) -> Output {
    kiln()
        .arg("--cache-dir")
        .arg(cache)
        .args(["--json", "realize", "--ignore-host-store"])
        .args(["--substituter", cache_url])
        .args(["--trusted-public-key", fixture.public_key()])
        .arg(fixture.store_path(attribute))
        .output()
        .expect("run kiln realize")
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "kiln failed:\n{}", stderr(output));
    serde_json::from_slice(&output.stdout).expect("kiln's --json output")
}

/// The entries of kiln's store folder that are neither bookkeeping (dot
/// folders kiln keeps) nor a store path: what a broken download left.
fn leftovers(cache: &Path) -> Vec<String> {
    let store = cache.join("store");
    let Ok(entries) = std::fs::read_dir(&store) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| {
            !matches!(name.as_str(), ".valid" | ".locks" | ".host-verified")
                && kiln_store::parse_store_path(&format!("/nix/store/{name}")).is_err()
        })
        .collect()
}

/// Every realized path's files are those of the fixture's (host) store path.
fn assert_same_as_fixture(realized: &serde_json::Value) {
    for path in realized["paths"].as_array().unwrap() {
        let status = Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(path["location"].as_str().unwrap())
            .arg(path["path"].as_str().unwrap())
            .status()
            .unwrap();
        assert!(status.success(), "{} differs", path["path"]);
    }
}

#[test]
fn realize_passes_429_5xx_resets_cuts_and_wrong_lengths_after_retries() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_http();
    let proxy = FaultProxy::start(server.url().trim_start_matches("http://"));
    let status = |code, retry_after| Fault::Status { code, retry_after };
    proxy.inject(None, "nix-cache-info", status(503, None), 1);
    proxy.inject(None, ".narinfo", status(429, Some(1)), 1);
    proxy.inject(None, ".narinfo", status(502, None), 1);
    proxy.inject(None, ".narinfo", Fault::CutShort, 1);
    proxy.inject(None, "/nar/", Fault::ResetMidBody, 1);
    proxy.inject(None, "/nar/", Fault::CutShort, 1);
    proxy.inject(None, "/nar/", Fault::WrongLength(-1000), 1);
    proxy.inject(None, "/nar/", status(500, None), 1);
    let cache = tempfile::tempdir().unwrap();

    let realized = json(&realize(fixture, cache.path(), &proxy.url(), "python3"));

    assert_eq!(proxy.faulted().len(), 8, "{:#?}", proxy.seen());
    let paths = realized["paths"].as_array().unwrap();
    assert!(paths.len() >= 3, "{realized}");
    assert_eq!(realized["downloaded"], paths.len());
    assert_same_as_fixture(&realized);
    assert_eq!(leftovers(cache.path()), Vec::<String>::new());
    let again = json(&realize(fixture, cache.path(), &proxy.url(), "python3"));
    assert_eq!(again["downloaded"], 0, "{again}");
}

#[test]
fn a_stalled_download_times_out_and_is_fetched_again() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_http();
    let proxy = FaultProxy::start(server.url().trim_start_matches("http://"));
    // Longer than kiln's 30 s wait for the next byte.
    proxy.inject(None, "/nar/", Fault::Stall(Duration::from_secs(40)), 1);
    let cache = tempfile::tempdir().unwrap();

    let realized = json(&realize(fixture, cache.path(), &proxy.url(), "zlib"));

    assert_eq!(proxy.faulted().len(), 1);
    assert_same_as_fixture(&realized);
    assert_eq!(leftovers(cache.path()), Vec::<String>::new());
}

#[test]
fn a_cache_that_keeps_breaking_fails_in_one_line_and_leaves_nothing() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_http();
    let proxy = FaultProxy::start(server.url().trim_start_matches("http://"));
    proxy.inject(None, "/nar/", Fault::CutShort, 1000);
    let cache = tempfile::tempdir().unwrap();

    let output = realize(fixture, cache.path(), &proxy.url(), "zlib");

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    let errors: Vec<&str> = message
        .lines()
        .filter(|line| line.starts_with("error"))
        .collect();
    assert_eq!(errors.len(), 1, "{message}");
    assert!(
        errors[0].contains(&format!("{}/nar/", proxy.url()))
            && errors[0].contains("gave up after 4 attempts"),
        "{message}"
    );
    assert_eq!(leftovers(cache.path()), Vec::<String>::new());
    let store = cache.path().join("store");
    let name = fixture.store_path("zlib").trim_start_matches("/nix/store/");
    assert!(!store.join(name).exists());

    proxy.heal();
    let realized = json(&realize(fixture, cache.path(), &proxy.url(), "zlib"));
    assert_eq!(realized["downloaded"], realized["paths"].as_array().unwrap().len());
    assert_same_as_fixture(&realized);
}

#[test]
fn credentials_for_a_cache_do_not_follow_its_redirect_to_another_host() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_http();
    let upstream = server.url().trim_start_matches("http://").to_string();
    // Another host: the same cache behind a second proxy on 127.0.0.2.
    let elsewhere = FaultProxy::start_on("127.0.0.2", &upstream);
    let proxy = FaultProxy::start(&upstream);
    proxy.inject(None, "/nar/", Fault::Redirect(elsewhere.url()), 1000);
    let home = tempfile::tempdir().unwrap();
    let netrc = home.path().join("netrc");
    std::fs::write(
        &netrc,
        "machine 127.0.0.1 login kiln password s3cret-netrc\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();

    let output = kiln()
        .env("KILN_NETRC", &netrc)
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["--json", "realize", "--ignore-host-store"])
        .args(["--substituter", &proxy.url()])
        .args(["--trusted-public-key", fixture.public_key()])
        .arg(fixture.store_path("zlib"))
        .output()
        .unwrap();

    let realized = json(&output);
    assert_same_as_fixture(&realized);
    assert!(proxy.seen().iter().all(|seen| seen.authorization));
    let redirected = elsewhere.seen();
    assert!(!redirected.is_empty(), "the redirect was not followed");
    assert!(
        redirected.iter().all(|seen| !seen.authorization),
        "{redirected:#?}"
    );
}
