//! `kiln lock`, `kiln realize` and `kiln cache prune` as a user runs them,
//! against the fixture nixpkgs: real nix-instantiate, real Nix-written
//! caches, a real kill -9.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kiln_harness::{AsUser, FixtureNixpkgs};
use kiln_store::{parse_store_path, Store};

fn kiln() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command.env_remove("RUST_LOG").env_remove("KILN_CACHE_DIR");
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(
        output.status.success(),
        "kiln failed ({}):\n{}",
        output.status,
        stderr(output)
    );
}

/// `kiln realize ARGS` from the fixture's xz cache into `cache`, ignoring
/// the host store (where the fixture paths also are).
fn realize(fixture: &FixtureNixpkgs, cache: &Path, args: &[&str]) -> Command {
    let mut command = kiln();
    command
        .arg("--cache-dir")
        .arg(cache)
        .args(["realize", "--ignore-host-store"])
        .args(["--substituter", &fixture.xz_cache_url()])
        .args(["--trusted-public-key", fixture.public_key()])
        .args(args);
    command
}

#[test]
fn lock_with_real_nix_then_realize_from_the_lock_without_nix() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let app = tempfile::tempdir().unwrap();
    let output = kiln()
        .args(["--json", "lock"])
        .arg(app.path())
        .args(["--pkgs", "nodejs_18", "--libs", "zlib,stdenv.cc.cc.lib"])
        .arg("--nixpkgs")
        .arg(fixture.nixpkgs_dir())
        .output()
        .unwrap();
    assert_ok(&output);
    let printed: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let group = &printed["groups"][0];
    assert_eq!(group["pkgs"]["nodejs_18"], fixture.store_path("nodejs_18"));
    assert_eq!(
        group["libs"]["stdenv.cc.cc.lib"],
        fixture.store_path("stdenv.cc.cc.lib")
    );
    assert_eq!(
        group["libraryDirs"],
        serde_json::json!([
            format!("{}/lib", fixture.store_path("stdenv.cc.cc.lib")),
            format!("{}/lib", fixture.store_path("zlib")),
        ])
    );

    let lock_path = app.path().join("kiln.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    assert!(lock.contains(fixture.store_path("zlib")), "{lock}");
    assert!(lock.contains("\"drvPath\": \"/nix/store/"), "{lock}");

    // Locking again gives the same bytes.
    assert_ok(
        &kiln()
            .arg("lock")
            .arg(app.path())
            .args(["--pkgs", "nodejs_18", "--libs", "zlib,stdenv.cc.cc.lib"])
            .arg("--nixpkgs")
            .arg(fixture.nixpkgs_dir())
            .output()
            .unwrap(),
    );
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), lock);

    // No nix on PATH, no --nixpkgs: the lock alone answers.
    let cache = tempfile::tempdir().unwrap();
    let output = realize(fixture, cache.path(), &["--json", "nodejs_18"])
        .arg("--lock")
        .arg(&lock_path)
        .env("PATH", "/nonexistent")
        .env_remove("KILN_NIXPKGS")
        .output()
        .unwrap();
    assert_ok(&output);
    let closure: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let paths: Vec<&str> = closure["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths.last(), Some(&fixture.store_path("nodejs_18")));
    assert!(paths.contains(&fixture.store_path("glibc")));
    assert_eq!(closure["downloaded"], paths.len());
}

#[test]
fn attributes_without_lock_or_nix_fail_naming_the_fix() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let output = realize(fixture, cache.path(), &["nodejs_18", "python3"])
        .args(["--lock", "/nonexistent/kiln.lock"])
        .env("PATH", "/nonexistent")
        .env_remove("KILN_NIXPKGS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("nodejs_18, python3"), "{message}");
    assert!(
        message.contains("kiln lock") && message.contains("install nix"),
        "{message}"
    );
}

#[test]
fn realize_prints_each_path_with_its_size_and_the_total() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let zlib = fixture.store_path("zlib");
    let output = realize(fixture, cache.path(), &[zlib]).output().unwrap();
    assert_ok(&output);
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with(fixture.store_path("glibc")), "{text}");
    assert!(
        lines[1].starts_with(zlib) && lines[1].contains("downloaded"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("2 paths,") && lines[2].ends_with("(2 downloaded)"),
        "{text}"
    );

    let again = realize(fixture, cache.path(), &[zlib]).output().unwrap();
    assert_ok(&again);
    assert!(
        stdout(&again).ends_with("(0 downloaded)\n"),
        "{}",
        stdout(&again)
    );
}

#[test]
fn realize_refuses_what_is_not_a_store_path() {
    let cache = tempfile::tempdir().unwrap();
    let output = kiln()
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["realize", "/nix/store/not-a-hash-x"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("`/nix/store/not-a-hash-x` is not a Nix store path"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn kill_9_during_realize_then_rerun_completes_with_no_partial_path() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let node = fixture.store_path("nodejs_20");
    // One download at a time, so the kill lands inside a NAR restore.
    let mut child = realize(fixture, cache.path(), &["--jobs", "1", node])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let store_dir = cache.path().join("store");
    let started = Instant::now();
    let writing = || {
        std::fs::read_dir(&store_dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
            .unwrap_or(false)
    };
    while !writing() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "realize ended before the kill"
        );
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no restore began"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        writing(),
        "the kill should leave a partial temp folder behind"
    );

    let output = realize(fixture, cache.path(), &["--json", node])
        .output()
        .unwrap();
    assert_ok(&output);
    let entries: Vec<String> = std::fs::read_dir(&store_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| ![".valid", ".locks", ".host-verified"].contains(&n.as_str()))
        .collect();
    let store = Store::open(cache.path()).unwrap();
    for name in &entries {
        assert!(!name.starts_with(".tmp-"), "partial left: {entries:?}");
        let path = parse_store_path(&format!("/nix/store/{name}")).unwrap();
        assert!(
            store.is_valid(&path),
            "{name} is in the store but not valid"
        );
    }
    let closure: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(closure["paths"].as_array().unwrap().len(), entries.len());
}

#[test]
fn prune_keeps_paths_a_running_process_holds() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let zlib = fixture.store_path("zlib");
    assert_ok(&realize(fixture, cache.path(), &[zlib]).output().unwrap());
    let store = Store::open(cache.path()).unwrap();
    let held = store.hold(&parse_store_path(zlib).unwrap()).unwrap();

    let prune = || {
        kiln()
            .arg("--cache-dir")
            .arg(cache.path())
            .args(["--json", "cache", "prune", "--older-than", "0"])
            .output()
            .unwrap()
    };
    let output = prune();
    assert_ok(&output);
    let report: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(report["held"], serde_json::json!([zlib]));
    // zlib links against glibc: what a held path needs stays with it.
    assert_eq!(report["removed"], serde_json::json!([]));
    assert!(store.is_valid(&parse_store_path(zlib).unwrap()));
    assert!(store.is_valid(&parse_store_path(fixture.store_path("glibc")).unwrap()));

    drop(held);
    let report: serde_json::Value = serde_json::from_str(&stdout(&prune())).unwrap();
    let removed: Vec<&str> = report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        removed,
        [zlib, fixture.store_path("glibc")],
        "users before what they need"
    );
    assert!(!store.location(&parse_store_path(zlib).unwrap()).exists());
}

#[test]
fn an_unprivileged_user_realizes_without_a_daemon() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let Some(user) = AsUser::get() else {
        return;
    };
    let cache = user.tempdir();
    let output = user
        .command(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["realize", "--ignore-host-store"])
        .args(["--substituter", &fixture.xz_cache_url()])
        .args(["--trusted-public-key", fixture.public_key()])
        .arg(fixture.store_path("bash"))
        .output()
        .unwrap();
    assert_ok(&output);
    let bash = cache
        .path()
        .join("store")
        .join(&fixture.store_path("bash")["/nix/store/".len()..])
        .join("bin/bash");
    let version = Command::new(&bash)
        .arg("--version")
        .env_clear()
        .output()
        .unwrap();
    assert!(
        stdout(&version).contains("GNU bash"),
        "{}",
        stderr(&version)
    );
}

#[test]
fn caches_and_keys_come_from_the_environment_too() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let output = kiln()
        .arg("--cache-dir")
        .arg(cache.path())
        .args(["--json", "realize", "--ignore-host-store"])
        .arg(fixture.store_path("zlib"))
        .env(
            "KILN_SUBSTITUTERS",
            format!(
                "file://{}  {}",
                empty.path().display(),
                fixture.xz_cache_url()
            ),
        )
        .env("KILN_TRUSTED_PUBLIC_KEYS", fixture.public_key())
        .output()
        .unwrap();
    assert_ok(&output);
    let closure: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for path in closure["paths"].as_array().unwrap() {
        assert_eq!(path["cache"], fixture.xz_cache_url());
        assert!(path["fileSize"].as_u64().unwrap() > 0);
    }

    // The same cache without its key in the environment is refused.
    let other = tempfile::tempdir().unwrap();
    let output = kiln()
        .arg("--cache-dir")
        .arg(other.path())
        .args(["realize", "--ignore-host-store"])
        .arg(fixture.store_path("zlib"))
        .env("KILN_SUBSTITUTERS", fixture.xz_cache_url())
        .env_remove("KILN_TRUSTED_PUBLIC_KEYS")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        message.contains("signed only by kiln-fixture-1")
            && message.contains("--trusted-public-key"),
        "{message}"
    );
}

/// `user:pass@` in a substituter URL shows neither in `--json` output nor
/// in an error naming the caches tried.
#[test]
fn credentials_in_a_substituter_url_are_redacted_in_output_and_errors() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let server = fixture.serve_http();
    let secret = "s3cret-in-url";
    let url = server.url().replace("://", &format!("://kiln:{secret}@"));
    let run = |path: &str| {
        let cache = tempfile::tempdir().unwrap();
        kiln()
            .arg("--cache-dir")
            .arg(cache.path())
            .args(["--json", "realize", "--ignore-host-store"])
            .args(["--substituter", &url])
            .args(["--trusted-public-key", fixture.public_key()])
            .arg(path)
            .output()
            .unwrap()
    };
    let output = run(fixture.store_path("zlib"));
    assert_ok(&output);
    let printed = stdout(&output) + &stderr(&output);
    assert!(!printed.contains(secret), "{printed}");
    let closure: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let shown = server.url().replace("://", "://***@");
    for path in closure["paths"].as_array().unwrap() {
        assert_eq!(path["cache"], shown.as_str());
    }

    let output = run("/nix/store/00000000000000000000000000000000-absent");
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(
        !message.contains(secret) && message.contains(&shown),
        "{message}"
    );
}
