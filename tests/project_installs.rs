//! Install phases that install the project itself see the whole app,
//! though the plan (printed exactly as upstream's) narrows them with
//! `onlyIncludeFiles`: a flit `pyproject.toml` project, whose `pip install .`
//! needs its README and package folder, builds and answers; so does a
//! Poetry project, whose `poetry install` installs it too.

use kiln_harness::apps::FixtureApp;
use kiln_harness::FixtureNixpkgs;

#[test]
fn a_flit_project_installed_with_pip_install_dot_builds_and_answers() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["umoci", "runc", "curl"]) else {
        return;
    };
    let app = FixtureApp::PythonFlitProject;
    let plan = app.plan(env!("CARGO_BIN_EXE_kiln"));
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
    let (output, layout) = app.build_in(env!("CARGO_BIN_EXE_kiln"), fixture, work.path());
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

#[test]
fn a_poetry_project_installed_by_poetry_install_builds_and_answers() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["umoci", "runc", "curl"]) else {
        return;
    };
    let app = FixtureApp::PythonPoetryProject;
    let work = tempfile::tempdir().unwrap();
    let (output, layout) = app.build_in(env!("CARGO_BIN_EXE_kiln"), fixture, work.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    app.answers_from(&layout, "latest");
}
