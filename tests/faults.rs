//! kiln against a bad network: a fault-injecting proxy between kiln and the
//! nginx-served binary cache, and between kiln and docker-registry. Every
//! fault either passes after retries or fails with one clear line; nothing
//! partial is left in kiln's cache or counted as valid, and the next run
//! completes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use kiln::registry::{
    pull_image, push_layout, unpack_layers, AuthEnv, Credentials, Platform, PushRequest,
    RegistryConfig,
};
use kiln_harness::hash::sha256_digest;
use kiln_harness::images::{busybox_image, insert, layout_layer_digests, random_file};
use kiln_harness::validators::{layers_copied_by_skopeo, skopeo_copy};
use kiln_harness::{require, Fault, FaultProxy, FixtureNixpkgs, Registry, RegistryKind};

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
    assert_eq!(
        realized["downloaded"],
        realized["paths"].as_array().unwrap().len()
    );
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

/// A registry configuration for the plain-HTTP `host` that reads no auth
/// file of the machine.
fn registry_config(host: String, home: &Path) -> RegistryConfig {
    RegistryConfig {
        insecure_hosts: vec![host],
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            ..AuthEnv::default()
        },
        jobs: 4,
        ..RegistryConfig::default()
    }
}

/// busybox, then a layer of `size` random bytes.
fn image_with_data(dir: &Path, size: usize) -> PathBuf {
    let layout = dir.join("layout");
    busybox_image(&layout, "t");
    let data = dir.join("data.bin");
    random_file(&data, size, 11);
    insert(&layout, "t", &data, "/data.bin");
    layout
}

/// Pushes tag `t` of `layout` to `destination`, nothing more.
fn push_request<'a>(layout: &'a Path, destination: &'a str) -> PushRequest<'a> {
    PushRequest {
        layout,
        layout_tag: Some("t"),
        destination,
        extra_tags: &[],
        mount_from: &[],
    }
}

fn registry_tools() -> bool {
    require(&["docker-registry", "skopeo", "umoci", "busybox"])
}

#[test]
fn a_push_through_429_5xx_and_broken_uploads_stores_the_same_image() {
    if !registry_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = image_with_data(dir.path(), 4 << 20);
    let registry = Registry::start(RegistryKind::Plain);
    let proxy = FaultProxy::start(&registry.host());
    let status = |code, retry_after| Fault::Status { code, retry_after };
    proxy.inject(Some("HEAD"), "/blobs/", status(500, None), 1);
    proxy.inject(Some("POST"), "/blobs/uploads/", status(429, Some(1)), 1);
    proxy.inject(Some("PUT"), "/blobs/uploads/", Fault::ResetMidRequest, 1);
    proxy.inject(Some("PUT"), "/blobs/uploads/", status(502, None), 1);
    proxy.inject(Some("PUT"), "/manifests/", status(503, None), 1);
    let destination = format!("{}/faults/app:1", proxy.host());
    let request = push_request(&layout, &destination);

    push_layout(&registry_config(proxy.host(), dir.path()), &request).unwrap();

    assert_eq!(proxy.faulted().len(), 5, "{:#?}", proxy.seen());
    let pushed = format!("docker://{}/faults/app:1", registry.host());
    assert_eq!(
        layers_copied_by_skopeo(&pushed, dir.path()),
        layout_layer_digests(&layout, "t")
    );
}

#[test]
fn a_push_whose_uploads_keep_breaking_fails_in_one_line_then_completes() {
    if !registry_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = image_with_data(dir.path(), 1 << 20);
    let registry = Registry::start(RegistryKind::Plain);
    let proxy = FaultProxy::start(&registry.host());
    proxy.inject(Some("PUT"), "/blobs/uploads/", Fault::ResetMidRequest, 1000);
    let destination = format!("{}/faults/app:1", proxy.host());
    let request = push_request(&layout, &destination);
    let config = registry_config(proxy.host(), dir.path());

    let err = push_layout(&config, &request).unwrap_err().to_string();

    assert!(
        !err.contains('\n') && err.contains(&proxy.host()) && err.contains("faults/app"),
        "{err}"
    );
    proxy.heal();
    push_layout(&config, &request).unwrap();
    let pushed = format!("docker://{}/faults/app:1", registry.host());
    assert_eq!(
        layers_copied_by_skopeo(&pushed, dir.path()),
        layout_layer_digests(&layout, "t")
    );
}

/// The files in `blobs/sha256` not named by the sha256 of their own
/// bytes: what a broken download would have left.
fn unverified_blobs(blobs: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(blobs.join("sha256")) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            sha256_digest(&std::fs::read(path).unwrap()) != format!("sha256:{name}")
        })
        .map(|path| path.display().to_string())
        .collect()
}

/// A base image pushed by skopeo straight to `registry` as `faults/base:1`.
fn base_in(registry: &Registry, dir: &Path) -> String {
    let layout = image_with_data(dir, 2 << 20);
    skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{}/faults/base:1", registry.host()),
        &["--dest-tls-verify=false"],
    );
    "faults/base:1".to_string()
}

#[test]
fn a_pull_through_cut_reset_and_short_blobs_keeps_only_verified_blobs() {
    if !registry_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryKind::Plain);
    let name = base_in(&registry, dir.path());
    let proxy = FaultProxy::start(&registry.host());
    let status = |code, retry_after| Fault::Status { code, retry_after };
    proxy.inject(Some("GET"), "/manifests/", status(429, Some(1)), 1);
    proxy.inject(Some("GET"), "/blobs/", Fault::CutShort, 1);
    proxy.inject(Some("GET"), "/blobs/", Fault::ResetMidBody, 1);
    proxy.inject(Some("GET"), "/blobs/", Fault::WrongLength(-10), 1);
    proxy.inject(Some("GET"), "/blobs/", status(503, None), 1);
    let blobs = dir.path().join("blobs");
    let config = registry_config(proxy.host(), dir.path());

    let pulled = pull_image(
        &config,
        &format!("{}/{name}", proxy.host()),
        &Platform::host(),
        &blobs,
    )
    .unwrap();

    assert_eq!(proxy.faulted().len(), 5, "{:#?}", proxy.seen());
    assert_eq!(unverified_blobs(&blobs), Vec::<String>::new());
    let root = dir.path().join("root");
    unpack_layers(&pulled.layers, &root).unwrap();
    assert_eq!(
        std::fs::metadata(root.join("data.bin")).unwrap().len(),
        2 << 20
    );
}

#[test]
fn a_pull_whose_blobs_keep_breaking_fails_in_one_line_then_completes() {
    if !registry_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryKind::Plain);
    let name = base_in(&registry, dir.path());
    let proxy = FaultProxy::start(&registry.host());
    proxy.inject(Some("GET"), "/blobs/", Fault::CutShort, 1000);
    let blobs = dir.path().join("blobs");
    let config = registry_config(proxy.host(), dir.path());
    let reference = format!("{}/{name}", proxy.host());

    let err = pull_image(&config, &reference, &Platform::host(), &blobs)
        .unwrap_err()
        .to_string();

    assert!(
        !err.contains('\n') && err.contains(&proxy.host()) && err.contains("downloading blob"),
        "{err}"
    );
    assert_eq!(unverified_blobs(&blobs), Vec::<String>::new());
    proxy.heal();
    let pulled = pull_image(&config, &reference, &Platform::host(), &blobs).unwrap();
    assert_eq!(unverified_blobs(&blobs), Vec::<String>::new());
    let root = dir.path().join("root");
    unpack_layers(&pulled.layers, &root).unwrap();
    assert!(root.join("data.bin").exists());
}

#[test]
fn registry_credentials_do_not_follow_a_blob_redirect_to_another_host() {
    if !registry_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // The same base in a registry that wants credentials and, standing in
    // for a storage host, in one that serves anyone.
    let private = Registry::start(RegistryKind::BasicAuth);
    let storage = Registry::start(RegistryKind::Plain);
    let layout = image_with_data(dir.path(), 1 << 20);
    for (registry, creds) in [
        (
            &private,
            format!("--dest-creds={}:{}", Registry::USERNAME, Registry::PASSWORD),
        ),
        (&storage, "--dest-tls-verify=false".to_string()),
    ] {
        skopeo_copy(
            &format!("oci:{}:t", layout.display()),
            &format!("docker://{}/faults/base:1", registry.host()),
            &["--dest-tls-verify=false", &creds],
        );
    }
    let elsewhere = FaultProxy::start_on("127.0.0.2", &storage.host());
    let proxy = FaultProxy::start(&private.host());
    proxy.inject(
        Some("GET"),
        "/blobs/",
        Fault::Redirect(elsewhere.url()),
        1000,
    );
    let config = RegistryConfig {
        credentials: Some(Credentials {
            username: Registry::USERNAME.into(),
            password: Registry::PASSWORD.into(),
        }),
        ..registry_config(proxy.host(), dir.path())
    };
    let blobs = dir.path().join("blobs");

    let pulled = pull_image(
        &config,
        &format!("{}/faults/base:1", proxy.host()),
        &Platform::host(),
        &blobs,
    )
    .unwrap();

    assert!(proxy.seen().iter().any(|seen| seen.authorization));
    let redirected = elsewhere.seen();
    assert!(!redirected.is_empty(), "the redirect was not followed");
    assert!(
        redirected.iter().all(|seen| !seen.authorization),
        "{redirected:#?}"
    );
    assert_eq!(unverified_blobs(&blobs), Vec::<String>::new());
    unpack_layers(&pulled.layers, &dir.path().join("root")).unwrap();
}
