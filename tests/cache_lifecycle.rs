//! kiln's cache kept bounded and honest, with real builds of the fixture
//! apps (store paths downloaded into kiln's own store, not used from the
//! host's): builds killed with `kill -9` leave leftovers that `kiln cache
//! info` lists and `kiln cache prune` removes, after which a build gives
//! the clean digest; `prune --max-size` keeps exactly what a rebuild of the
//! most recent app needs; a prune running during a build loses nothing
//! either needs, and neither does `KILN_CACHE_MAX_SIZE`'s prune at the end
//! of a build.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_harness::apps::FixtureApp;
use kiln_harness::process::run;
use kiln_harness::FixtureNixpkgs;
use serde_json::Value;

/// `kiln --cache-dir CACHE --json build APP` with the fixture's nixpkgs and
/// cache, every store path in kiln's own store, into an archive in `out`.
fn build_command(fixture: &FixtureNixpkgs, app: FixtureApp, cache: &Path, out: &Path) -> Command {
    let mut command = kiln(cache);
    command
        .args(["--json", "build"])
        .arg(app.dir())
        .args(fixture.kiln_source_args())
        .arg("--ignore-host-store")
        .arg("--output")
        .arg(format!(
            "oci-archive:{}",
            out.join(format!("{}.tar", app.name())).display()
        ));
    command
}

fn kiln(cache: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("KILN_CACHE_MAX_SIZE");
    command
}

fn json_of(command: &mut Command) -> Value {
    serde_json::from_str(&run(command)).expect("kiln printed JSON")
}

/// Asserts that every phase of a build's summary came from the phase
/// cache.
fn assert_no_phase_ran(summary: &Value) {
    for phase in summary["phases"].as_array().unwrap() {
        assert_eq!(phase["cached"], true, "{phase}");
    }
}

/// Builds `app`; returns the `--json` summary.
fn build(fixture: &FixtureNixpkgs, app: FixtureApp, cache: &Path, out: &Path) -> Value {
    json_of(&mut build_command(fixture, app, cache, out))
}

fn info(cache: &Path) -> Value {
    json_of(kiln(cache).args(["--json", "cache", "info"]))
}

fn prune(cache: &Path, args: &[&str]) -> Value {
    json_of(kiln(cache).args(["--json", "cache", "prune"]).args(args))
}

/// Bytes of each kind, by name.
fn sizes(info: &Value) -> Vec<(String, u64)> {
    info["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap().to_string(),
                k["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Bytes in entries: everything but lock files and kiln's records, what
/// `--max-size` bounds.
fn entry_bytes(info: &Value) -> u64 {
    info["totalBytes"].as_u64().unwrap() - info["otherBytes"].as_u64().unwrap()
}

/// Prints the sizes by kind, for the record of a run (`--nocapture`).
fn show(when: &str, info: &Value) {
    eprintln!("cache sizes {when}: {:?}", sizes(info));
}

fn names(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["name"]
                .as_str()
                .unwrap_or_else(|| v.as_str().unwrap())
                .to_string()
        })
        .collect()
}

/// Starts `command` and returns once it printed a stderr line containing
/// `mark`, with the child still running and the rest of its stderr
/// drained on a thread.
fn run_until(mut command: Command, mark: &str) -> std::process::Child {
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    loop {
        match lines.next() {
            Some(line) => {
                let line = line.unwrap();
                let found = line.contains(mark);
                seen.push(line);
                if found {
                    break;
                }
            }
            None => panic!("kiln never printed {mark:?}:\n{}", seen.join("\n")),
        }
    }
    std::thread::spawn(move || lines.for_each(drop));
    child
}

/// Returns once a layer blob is being written in `cache`: a build is
/// packing. Polls the folder; the build cannot finish before, since it
/// writes every blob it lacks.
fn wait_for_temp_blob(cache: &Path, child: &mut std::process::Child) {
    loop {
        let writing = std::fs::read_dir(cache.join("blobs/sha256"))
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
            })
            .unwrap_or(false);
        if writing {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before it wrote a blob"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn work_folders(cache: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(cache.join("build-work"))
        .map(|entries| entries.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default()
}

#[test]
fn builds_killed_at_any_point_leave_leftovers_that_prune_removes() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    let clean = build(fixture, FixtureApp::Node, &out.join("clean"), out);

    let cache = out.join("cache");
    // While packages download, inside the install phase, while a layer
    // blob is being written.
    for mark in ["plan: ", "[install]", "] phases: "] {
        let command = build_command(fixture, FixtureApp::Node, &cache, out);
        let mut child = run_until(command, mark);
        if mark.contains("phases") {
            wait_for_temp_blob(&cache, &mut child);
        }
        child.kill().unwrap();
        assert!(!child.wait().unwrap().success());
    }
    let killed = work_folders(&cache);
    assert!(
        killed.len() >= 2,
        "the builds killed in a phase and while packing left their work folders: {killed:?}"
    );

    let before = info(&cache);
    show("after the killed builds", &before);
    let leftovers = names(&before["leftovers"]);
    assert!(
        leftovers
            .iter()
            .any(|l| l.starts_with("blobs/sha256/.tmp-")),
        "the half-written blob is not listed: {leftovers:?}"
    );
    for folder in &killed {
        let name = folder.strip_prefix(&cache).unwrap().to_str().unwrap();
        assert!(
            leftovers.iter().any(|l| l == name),
            "{name} not in {leftovers:?}"
        );
    }

    let pruned = prune(&cache, &[]);
    let removed = names(&pruned["removed"]);
    for leftover in &leftovers {
        assert!(
            removed.contains(leftover),
            "{leftover} not removed: {pruned}"
        );
    }
    let after = info(&cache);
    show("after prune", &after);
    assert_eq!(after["leftovers"], serde_json::json!([]));
    assert!(work_folders(&cache).is_empty());

    let rebuilt = build(fixture, FixtureApp::Node, &cache, out);
    assert_eq!(rebuilt["digest"], clean["digest"]);
}

#[test]
fn max_size_keeps_what_the_latest_apps_rebuild_needs() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    // The Node build's own footprint: what it leaves in a cache of its own.
    let alone = out.join("alone");
    build(fixture, FixtureApp::Node, &alone, out);
    let node_alone = info(&alone);
    let footprint = entry_bytes(&node_alone);

    let cache = out.join("cache");
    for app in [FixtureApp::Python, FixtureApp::StaticSite, FixtureApp::Node] {
        build(fixture, app, &cache, out);
    }
    let all = info(&cache);
    show("after the Python, static and Node builds", &all);
    assert!(entry_bytes(&all) > footprint);

    let pruned = prune(&cache, &["--max-size", &footprint.to_string()]);
    let after = info(&cache);
    show("after prune --max-size", &after);
    assert_eq!(pruned["remainingBytes"], footprint, "{pruned}");
    // Kind by kind, what is left is what the Node build alone leaves: the
    // other apps' store paths, layers, phases and caches are gone.
    assert_eq!(sizes(&after), sizes(&node_alone));
    let store: Vec<String> = std::fs::read_dir(cache.join("store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    for gone in ["python3", "nginx"] {
        let path = fixture.store_path(gone);
        assert!(
            !store.iter().any(|name| path.ends_with(name.as_str())),
            "{path} is still in the store"
        );
    }

    let rebuilt = build(fixture, FixtureApp::Node, &cache, out);
    show("after the Node rebuild", &info(&cache));
    assert_no_phase_ran(&rebuilt);
    let packed = rebuilt["packed"].as_array().unwrap();
    assert!(
        packed.iter().all(|layer| layer == "app files"),
        "packed more than the app layer: {packed:?}"
    );
}

#[test]
fn a_prune_during_a_build_of_another_app_loses_nothing_either_needs() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let out = work.path();
    let cache = out.join("cache");
    build(fixture, FixtureApp::Python, &cache, out);

    let command = build_command(fixture, FixtureApp::Node, &cache, out);
    let mut node = run_until(command, "[install]");
    // Everything not held goes: the Python app's entries, and the shared
    // ones the Node build has not reached yet.
    let during_phase = prune(&cache, &["--max-size", "0"]);
    assert!(
        !names(&during_phase["removed"]).is_empty(),
        "{during_phase}"
    );
    assert!(!names(&during_phase["held"]).is_empty(), "{during_phase}");
    assert!(node.wait().unwrap().success(), "the Node build failed");

    let first = build(fixture, FixtureApp::Node, &cache, out);
    let command = build_command(fixture, FixtureApp::Python, &cache, out);
    let mut python = run_until(command, "] phases: ");
    let while_packing = prune(&cache, &["--max-size", "0"]);
    assert!(python.wait().unwrap().success(), "the Python build failed");
    assert!(!names(&while_packing["held"]).is_empty(), "{while_packing}");

    let again = build(fixture, FixtureApp::Python, &cache, out);
    assert_no_phase_ran(&again);
    assert_eq!(again["packed"], serde_json::json!([]), "{again}");
    let node_again = build(fixture, FixtureApp::Node, &cache, out);
    assert_eq!(node_again["digest"], first["digest"]);

    // KILN_CACHE_MAX_SIZE prunes when the build is done, says what it
    // removed, and keeps what the build used.
    let output = build_command(fixture, FixtureApp::Python, &cache, out)
        .env("KILN_CACHE_MAX_SIZE", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let bounded: Value = serde_json::from_slice(&output.stdout).unwrap();
    let removed = names(&bounded["cachePruned"]["removed"]);
    assert!(
        removed.iter().any(|name| name.contains("nodejs")),
        "the Node app's packages stayed: {removed:?}"
    );
    assert!(stderr.contains("] cache: removed "), "{stderr}");
    let python_again = build(fixture, FixtureApp::Python, &cache, out);
    assert_no_phase_ran(&python_again);
    assert_eq!(python_again["packed"], serde_json::json!([]));
}
