//! Packages with no Nix on the machine: the unprivileged test user, with
//! no `nix*` on PATH and kiln's evaluator forced from the fixture's binary
//! cache (`--evaluator`, `--ignore-host-store`), builds apps with no
//! `kiln.lock`, the nixpkgs archive coming from the harness's HTTP server.
//! And hostile overlays: the sandboxed evaluation reads nothing of the host
//! and reaches no network.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::archive_server::{archive, ArchiveServer, Mode};
use kiln_harness::{require, AsUser, FixtureNixpkgs};

const TOOLS: [&str; 5] = ["umoci", "runc", "curl", "newuidmap", "newgidmap"];

fn succeed(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// A folder holding only what a rootless kiln runs besides itself (the
/// id mapping helpers): a PATH with no `nix*` on it.
fn bare_path(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    for tool in ["newuidmap", "newgidmap"] {
        symlink(format!("/usr/bin/{tool}"), bin.join(tool)).unwrap();
    }
    bin
}

/// kiln's package flags with the fixture's cache, its evaluator from that
/// cache and the host store ignored: nothing of the host's Nix is used.
fn cached_evaluator_args(fixture: &FixtureNixpkgs) -> Vec<String> {
    vec![
        "--substituter".into(),
        fixture.xz_cache_url(),
        "--trusted-public-key".into(),
        fixture.public_key().into(),
        "--evaluator".into(),
        fixture.evaluator().into(),
        "--ignore-host-store".into(),
    ]
}

#[test]
fn apps_build_as_the_test_user_with_no_nix_through_the_cached_evaluator_and_the_http_archive() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let Some(user) = AsUser::get() else { return };
    if !require(&TOOLS) {
        return;
    }
    let server = fixture.serve_archive();
    let home = user.tempdir();
    let bin = bare_path(home.path());
    let mirrors = server.stand_in_for_node_overlay(home.path());
    for app in [FixtureApp::Node, FixtureApp::Python] {
        let layout = home.path().join(format!("layout-{}", app.name()));
        let output = user
            .command(env!("CARGO_BIN_EXE_kiln"))
            .arg("--cache-dir")
            .arg(home.path().join("cache"))
            .arg("build")
            .arg(app.dir())
            .args(cached_evaluator_args(fixture))
            .arg("--output")
            .arg(format!("oci:{}:latest", layout.display()))
            .env("PATH", &bin)
            .env("KILN_NIXPKGS_URL", server.url())
            .env("KILN_OVERLAY_MIRRORS", &mirrors)
            .output()
            .unwrap();
        succeed(output, &format!("kiln build {} with no nix", app.name()));
        app.answers_from(&layout, "latest");
    }
    let fetched: Vec<String> = server.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        fetched.iter().any(|path| path.ends_with(".tar.gz")),
        "the nixpkgs archive did not come from the server: {fetched:?}"
    );
    let store = home.path().join("cache/store");
    assert!(
        store
            .join(&fixture.evaluator()["/nix/store/".len()..])
            .is_dir(),
        "the evaluator was not fetched into kiln's store"
    );
}

#[test]
fn a_lock_written_with_no_nix_equals_the_one_host_nix_writes() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let Some(user) = AsUser::get() else { return };
    if !require(&TOOLS) {
        return;
    }
    let server = fixture.serve_archive();
    let home = user.tempdir();
    let bin = bare_path(home.path());
    let mirrors = server.stand_in_for_node_overlay(home.path());
    let lock = |app: &Path, cache: &Path, command: Command, extra: Vec<String>| {
        fs::create_dir_all(app).unwrap();
        fs::copy(
            FixtureApp::Node.dir().join("package.json"),
            app.join("package.json"),
        )
        .unwrap();
        fs::copy(
            FixtureApp::Node.dir().join("package-lock.json"),
            app.join("package-lock.json"),
        )
        .unwrap();
        let mut command = command;
        command
            .arg("--cache-dir")
            .arg(cache)
            .arg("lock")
            .arg(app)
            .args(extra)
            .env("KILN_NIXPKGS_URL", server.url())
            .env("KILN_OVERLAY_MIRRORS", &mirrors);
        command
    };
    let user_app = home.path().join("app");
    let mut without_nix = lock(
        &user_app,
        &home.path().join("cache"),
        user.command(env!("CARGO_BIN_EXE_kiln")),
        cached_evaluator_args(fixture),
    );
    user.give(&user_app);
    without_nix.env("PATH", &bin);
    succeed(without_nix.output().unwrap(), "kiln lock with no nix");

    let work = tempfile::tempdir().unwrap();
    let host_app = work.path().join("app");
    let with_host_nix = lock(
        &host_app,
        &work.path().join("cache"),
        Command::new(env!("CARGO_BIN_EXE_kiln")),
        Vec::new(),
    )
    .output()
    .unwrap();
    succeed(with_host_nix, "kiln lock with the host's nix");
    assert_eq!(
        fs::read_to_string(user_app.join("kiln.lock")).unwrap(),
        fs::read_to_string(host_app.join("kiln.lock")).unwrap(),
        "the two locks differ"
    );
}

/// An app whose plan applies `overlay` (a Nix overlay's text), served from
/// `server` as a tarball URL, and asks for its package `probe`.
fn app_with_overlay(dir: &Path, server: &ArchiveServer, overlay: &str) -> String {
    let source = dir.join("overlay-source");
    fs::create_dir_all(&source).unwrap();
    fs::write(source.join("default.nix"), overlay).unwrap();
    let url_path = format!(
        "/overlay-{}.tar.gz",
        dir.file_name().unwrap().to_string_lossy()
    );
    server.put(&url_path, archive(&source, "overlay"));
    let url = format!("{}{url_path}", server.url());
    let app = dir.join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("nixpacks.toml"),
        format!("[phases.setup]\nnixPkgs = [\"probe\"]\nnixOverlays = [\"{url}\"]\n"),
    )
    .unwrap();
    url
}

/// `kiln lock` of `app` as root with the host's Nix, `KILN_REGISTRY_PASSWORD`
/// set in kiln's environment.
fn lock_as_root(app: &Path, cache: &Path, server: &ArchiveServer) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(cache)
        .arg("lock")
        .arg(app)
        .env("KILN_NIXPKGS_URL", server.url())
        .env("KILN_REGISTRY_PASSWORD", "hunter2-registry-secret")
        .output()
        .unwrap()
}

#[test]
fn a_hostile_overlay_reads_nothing_of_the_host_and_reaches_no_network() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["newuidmap"]) {
        return;
    }
    let server = fixture.serve_archive();
    let watched = ArchiveServer::plain();
    let work = tempfile::tempdir().unwrap();
    let secret = work.path().join("host-secret.txt");
    fs::write(&secret, "host-only secret").unwrap();
    let store_path =
        |suffix: &str| format!("\"/nix/store/00000000000000000000000000000000-probe\" + {suffix}");
    let probes = [
        (
            "env",
            store_path("builtins.getEnv \"KILN_REGISTRY_PASSWORD\""),
        ),
        (
            "file",
            store_path(&format!("builtins.readFile {}", secret.display())),
        ),
        (
            "fetch",
            store_path(&format!(
                "builtins.readFile (builtins.fetchurl \"{}/leak\")",
                watched.url()
            )),
        ),
    ];
    for (name, out_path) in probes {
        let dir = work.path().join(name);
        let overlay = format!("self: super: {{ probe = {{ outPath = {out_path}; }}; }}\n");
        let url = app_with_overlay(&dir, &server, &overlay);
        let output = lock_as_root(&dir.join("app"), &work.path().join("cache"), &server);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let lock = fs::read_to_string(dir.join("app/kiln.lock")).unwrap_or_default();
        for leaked in ["hunter2-registry-secret", "host-only secret"] {
            assert!(
                !stderr.contains(leaked) && !lock.contains(leaked),
                "{name}: {leaked} leaked:\n{stderr}\n{lock}"
            );
        }
        match name {
            // The variable is not in the evaluation's environment: empty.
            "env" => {
                succeed(output, "kiln lock with an overlay reading the environment");
                assert!(
                    lock.contains("00000000000000000000000000000000-probe\""),
                    "{lock}"
                );
            }
            _ => {
                assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
                assert!(
                    stderr.contains(&url),
                    "{name}: the error does not name the overlay:\n{stderr}"
                );
            }
        }
    }
    assert!(
        watched.requests().is_empty(),
        "the overlay reached the network: {:?}",
        watched.requests()
    );
}

/// The archive download for real: a 404 and a body cut short each fail
/// naming the URL and leave nothing in the cache; served whole, the same
/// cache then resolves.
#[test]
fn a_missing_or_truncated_archive_is_refused_naming_the_url() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["newuidmap"]) {
        return;
    }
    let server = fixture.serve_archive();
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("nixpacks.toml"),
        "[phases.setup]\nnixPkgs = [\"zlib\"]\n",
    )
    .unwrap();
    let cache = work.path().join("cache");
    let lock = || {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--cache-dir")
            .arg(&cache)
            .arg("lock")
            .arg(&app)
            .env("KILN_NIXPKGS_URL", server.url())
            .output()
            .unwrap()
    };
    for mode in [Mode::NotFound, Mode::Truncated] {
        server.set_mode(mode);
        let output = lock();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{mode:?}: {stderr}");
        assert!(
            stderr.contains(&server.url()) && stderr.contains(".tar.gz"),
            "{mode:?}: the error does not name the URL:\n{stderr}"
        );
        let unpacked: Vec<_> = fs::read_dir(cache.join("nixpkgs"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != "urls")
                    .collect()
            })
            .unwrap_or_default();
        assert!(unpacked.is_empty(), "{mode:?} left {unpacked:?}");
    }
    server.set_mode(Mode::Serve);
    succeed(lock(), "kiln lock with the archive served whole");
    assert!(fs::read_to_string(app.join("kiln.lock"))
        .unwrap()
        .contains("nixpkgsSha256"));
}
