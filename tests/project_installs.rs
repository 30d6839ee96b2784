//! Install phases that install the project itself see the whole app,
//! though the plan (printed exactly as upstream's) narrows them with
//! `onlyIncludeFiles`: a flit `pyproject.toml` project, whose `pip install .`
//! needs its README and package folder, builds and answers; so does a
//! Poetry project, whose `poetry install` installs it too.

use std::path::Path;
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::{require, FixtureNixpkgs};

#[test]
fn a_flit_project_installed_with_pip_install_dot_builds_and_answers() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["umoci", "runc", "curl"]) {
        return;
    }
    let app = FixtureApp::PythonFlitProject;
    let plan = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("plan")
        .arg(app.dir())
        .output()
        .unwrap();
    assert!(plan.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let install = &plan["phases"]["install"];
    assert_eq!(
        install["onlyIncludeFiles"],
        serde_json::json!(["pyproject.toml"])
    );
    assert!(install["cmds"][0]
        .as_str()
        .unwrap()
        .ends_with("&& pip install ."));

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = build(fixture, app, work.path(), &layout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "phase install: sees the whole app, not only its onlyIncludeFiles: `pip install .` installs the project itself"
        ),
        "{stderr}"
    );
    app.answers_from(&layout, "latest");
}

/// `kiln build app` into `oci:<layout>:latest` with a cache in `work`.
fn build(fixture: &FixtureNixpkgs, app: FixtureApp, work: &Path, layout: &Path) -> Output {
    app.build_command(
        env!("CARGO_BIN_EXE_kiln"),
        fixture,
        &work.join("cache"),
        layout,
    )
    .output()
    .unwrap()
}

#[test]
fn a_poetry_project_installed_by_poetry_install_builds_and_answers() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["umoci", "runc", "curl"]) {
        return;
    }
    let app = FixtureApp::PythonPoetryProject;
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let output = build(fixture, app, work.path(), &layout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    app.answers_from(&layout, "latest");
}
