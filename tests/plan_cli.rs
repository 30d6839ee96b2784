//! `kiln plan` and `kiln detect` as a user runs them: the plan on stdout,
//! warnings on stderr, errors that name the file, line and column, and
//! exit codes 0 (planned), 1 (cannot plan), 2 (usage).

mod common;

use std::path::{Path, PathBuf};

use kiln_providers::config::{parse, ConfigFormat};

use common::{kiln, stderr, stdout};

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/apps")
        .join(name)
        .display()
        .to_string()
}

fn app_with(files: &[(&str, &str)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path: PathBuf = dir.path().join(name);
        std::fs::write(path, text).unwrap();
    }
    let path = dir.path().display().to_string();
    (dir, path)
}

#[test]
fn plan_prints_nixpacks_json_for_a_node_app() {
    let output = kiln(&["plan", &fixture("node-server")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan["providers"], serde_json::json!([]));
    assert_eq!(plan["phases"]["install"]["cmds"][0], "npm ci");
    assert_eq!(plan["start"]["cmd"], "npm run start");
    assert!(
        plan["phases"]["setup"].get("name").is_none(),
        "phase names are left out"
    );
    assert!(stdout(&output).starts_with("{\n  \"providers\": [],\n  \"buildImage\": "));
}

#[test]
fn flags_and_env_shape_the_plan() {
    let output = kiln(&[
        "plan",
        &fixture("python-server"),
        "--start-cmd",
        "python other.py",
        "--pkgs",
        "ffmpeg",
        "--env",
        "NIXPACKS_PYTHON_VERSION=3.12",
        "--env",
        "GREETING=hi",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan["start"]["cmd"], "python other.py");
    assert_eq!(plan["phases"]["setup"]["nixPkgs"][0], "ffmpeg");
    assert_eq!(plan["phases"]["setup"]["nixPkgs"][1], "python312");
    assert_eq!(plan["variables"]["GREETING"], "hi");
}

#[test]
fn toml_output_reads_back_as_the_same_plan() {
    let json = kiln(&["plan", &fixture("configured-app")]);
    let toml = kiln(&["plan", &fixture("configured-app"), "--format", "toml"]);
    assert_eq!(toml.status.code(), Some(0), "{}", stderr(&toml));
    let (from_toml, warnings) = parse(&stdout(&toml), ConfigFormat::Toml, "out.toml").unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let (from_json, _) = parse(&stdout(&json), ConfigFormat::Json, "out.json").unwrap();
    assert_eq!(from_toml, from_json);
}

#[test]
fn malformed_config_names_file_line_and_column_and_exits_1() {
    let (_dir, path) = app_with(&[(
        "nixpacks.toml",
        "[phases.setup]\nnixPkgs = [\"go\"\n[start]\n",
    )]);
    let output = kiln(&["plan", &path]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("nixpacks.toml:3:"), "{message}");
    assert!(stdout(&output).is_empty());
}

#[test]
fn unknown_config_key_is_a_warning_with_the_closest_key() {
    let (_dir, path) = app_with(&[
        ("nixpacks.toml", "[start]\ncmmd = \"go\"\n"),
        ("index.html", ""),
    ]);
    let output = kiln(&["plan", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("unknown key `start.cmmd`"), "{message}");
    assert!(message.contains("did you mean `start.cmd`?"), "{message}");
}

#[test]
fn unknown_provider_lists_the_valid_ones() {
    let (_dir, path) = app_with(&[("nixpacks.json", "{\"providers\": [\"nodee\"]}")]);
    let output = kiln(&["plan", &path]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("unknown provider `nodee`"), "{message}");
    assert!(message.contains("node, python"), "{message}");
}

#[test]
fn config_flag_reads_another_file() {
    let (_dir, path) = app_with(&[("ci.json", "{\"start\": {\"cmd\": \"./run\"}}")]);
    let output = kiln(&["plan", &path, "--config", "ci.json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let plan: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(plan["start"]["cmd"], "./run");
}

#[test]
fn missing_app_folder_is_a_clear_error() {
    let output = kiln(&["plan", "/nonexistent/kiln-app"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("/nonexistent/kiln-app"));
}

#[test]
fn detect_prints_the_provider() {
    let output = kiln(&["detect", &fixture("python-server")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stdout(&output), "python\n");
    let output = kiln(&["detect", &fixture("shell-app")]);
    assert_eq!(stdout(&output), "\n");
}

#[test]
fn phase_cycle_is_printed_with_a_warning_naming_the_phases() {
    let (_dir, path) = app_with(&[(
        "nixpacks.toml",
        "[phases.a]\ndependsOn = [\"b\"]\n[phases.b]\ndependsOn = [\"a\"]\n",
    )]);
    let output = kiln(&["plan", &path]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("cycle: a -> b -> a"),
        "{}",
        stderr(&output)
    );
}

/// `kiln plan . | head -1`: the reader leaving early is no error of kiln's.
#[test]
fn plan_into_a_closed_pipe_ends_quietly() {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["plan", &fixture("node-server")])
        .env_remove("RUST_LOG")
        .stdout(writer)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}
