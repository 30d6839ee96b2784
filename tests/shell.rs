//! `kiln shell APP` plans the app by itself: the plan's packages fetched
//! from the fixture's cache and mounted, the phases' environment set, no
//! `--store-path` needed; as root and as the unprivileged test user.

use std::path::Path;
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::{AsUser, FixtureNixpkgs};

/// Runs a command in the Python fixture app's shell; `cache` is the cache
/// folder.
fn python_shell(command: Command, fixture: &FixtureNixpkgs, cache: &Path) -> Output {
    let mut command = command;
    command
        .arg("--cache-dir")
        .arg(cache)
        .arg("shell")
        .arg(FixtureApp::Python.dir())
        .args(fixture.kiln_source_args())
        .args([
            "--",
            "python3",
            "-c",
            "import os, sys; print(1); print(os.environ['PYTHONUNBUFFERED'], os.environ['LD_LIBRARY_PATH'].count('/nix/store/'), sys.executable.startswith('/nix/store/'))",
        ]);
    command.output().expect("run kiln shell")
}

fn prints_one_and_the_plan_environment(output: &Output, who: &str) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kiln shell as {who} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // print(1), then the plan's variable, its two nixLibs, python from the
    // plan's packages.
    assert_eq!(stdout, "1\n1 2 True\n", "as {who}");
}

fn setup() -> Option<&'static FixtureNixpkgs> {
    FixtureNixpkgs::with_tools(&["newuidmap"])
}

#[test]
fn shell_runs_python_of_the_planned_app_as_root() {
    let Some(fixture) = setup() else { return };
    let cache = tempfile::tempdir().unwrap();
    let output = python_shell(
        Command::new(env!("CARGO_BIN_EXE_kiln")),
        fixture,
        cache.path(),
    );
    prints_one_and_the_plan_environment(&output, "root");
}

#[test]
fn shell_runs_python_of_the_planned_app_as_the_test_user() {
    let Some(fixture) = setup() else { return };
    let Some(user) = AsUser::get() else { return };
    let home = user.tempdir();
    let output = python_shell(
        user.command(env!("CARGO_BIN_EXE_kiln")),
        fixture,
        &home.path().join("cache"),
    );
    prints_one_and_the_plan_environment(&output, "the test user");
}
