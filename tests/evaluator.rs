//! The fixture's Nix evaluator (issue 14's "Nix from the binary cache")
//! runs with nothing of the host: inside kiln's own sandbox, with no
//! network, only `HOME` in its environment and only its closure at
//! `/nix/store`, it evaluates the fixture nixpkgs to the same store paths
//! the host's Nix does.

mod sandbox_support;

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use kiln::sandbox::{Network, Sandbox};
use kiln_harness::nixpkgs::{EVALUATOR_ARGS, EVALUATOR_ENV};
use kiln_harness::FixtureNixpkgs;
use sandbox_support::*;

#[test]
fn fixture_evaluator_evaluates_the_fixture_nixpkgs_with_nothing_of_the_host() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let instantiate = format!(
        "{}/bin/nix-instantiate --eval --strict --json {}",
        fixture.evaluator(),
        EVALUATOR_ARGS.join(" ")
    );
    // The sandbox runs each command with bash, so bash's closure is bound
    // too; it is glibc's, which the evaluator's closure holds already.
    let store = closure(fixture, &["nix", "bash"]);
    let commands = [
        // Only bash builtins: no host program is there to run.
        "[[ ! -e /usr && ! -e /etc/nix && ! -e /nix/var ]] && echo host-hidden".to_string(),
        "echo /nix/store/* > /store.txt".to_string(),
        format!("{instantiate} -E builtins.currentSystem > /system.json"),
        format!("{instantiate} -E '(import /app {{}}).bash.outPath' > /bash.json"),
        // The restricted mode issue 14 asks for, with nixpkgs on the search
        // path as the only allowed folder.
        format!(
            "{instantiate} --option restrict-eval true -I nixpkgs=/app \
             -E '(import <nixpkgs> {{}}).nodejs_20.outPath' > /node.json"
        ),
    ];
    let mut sandbox = Sandbox::new(
        "evaluate",
        PathBuf::from(fixture.store_path("bash")).join("bin/bash"),
        upper.clone(),
        commands.to_vec(),
    );
    sandbox.store_paths = store.clone();
    sandbox.app_source = Some(fixture.nixpkgs_dir().to_path_buf());
    sandbox.env = EVALUATOR_ENV
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    sandbox.network = Network::None;
    let lines = Lines::default();
    sandbox.output = lines.output();
    sandbox
        .run()
        .unwrap_or_else(|e| panic!("the evaluator failed: {e}\n{:?}", lines.all()));

    assert!(lines.has("host-hidden"), "{:?}", lines.all());
    let read = |name: &str| fs::read_to_string(upper.join(name)).unwrap();
    let seen: BTreeSet<String> = read("store.txt")
        .split_whitespace()
        .map(String::from)
        .collect();
    let bound: BTreeSet<String> = store
        .iter()
        .map(|bind| format!("/nix/store/{}", bind.name))
        .collect();
    assert_eq!(seen, bound, "only the closure is at /nix/store");
    assert_eq!(read("system.json"), "\"x86_64-linux\"");
    // The host's Nix evaluated these when it built the fixture.
    assert_eq!(
        read("bash.json"),
        format!("\"{}\"", fixture.store_path("bash"))
    );
    assert_eq!(
        read("node.json"),
        format!("\"{}\"", fixture.store_path("nodejs_20"))
    );
}
