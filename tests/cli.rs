//! The `kiln` command line as a user meets it: help that documents every
//! subcommand, usage errors that name the flag, exit codes.

mod common;

use std::process::Command;

use common::{kiln, stderr, stdout};

#[test]
fn top_level_help_lists_every_subcommand_and_global_option() {
    let output = kiln(&["--help"]);
    assert!(output.status.success());
    let help = stdout(&output);
    for word in [
        "plan",
        "detect",
        "build",
        "pack",
        "shell",
        "realize",
        "lock",
        "cache",
        "sbom",
        "keygen",
        "--verbose",
        "--quiet",
        "--json",
        "--cache-dir",
        "no Docker daemon",
    ] {
        assert!(help.contains(word), "kiln --help lacks {word}:\n{help}");
    }
}

#[test]
fn plan_help_documents_nixpacks_flags() {
    let help = stdout(&kiln(&["plan", "--help"]));
    for flag in [
        "--install-cmd",
        "--build-cmd",
        "--start-cmd",
        "--pkgs",
        "--apt",
        "--libs",
        "--env",
        "--config",
        "--json-plan",
        "--format",
    ] {
        assert!(
            help.contains(flag),
            "kiln plan --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn build_help_documents_output_store_layer_and_sandbox_flags() {
    let help = stdout(&kiln(&["build", "--help"]));
    for flag in [
        "--name",
        "--tag",
        "--label",
        "--output",
        "--push",
        "--base-image",
        "--compression",
        "--max-layers",
        "--cache-key",
        "--no-cache",
        "--platform",
        "--nixpkgs",
        "--substituter",
        "--trusted-public-key",
        "--network",
        "--insecure-registry",
        "--pkgs",
        "--start-cmd",
        "--no-sbom",
        "--sbom-format",
        "--no-provenance",
        "--sign-key",
    ] {
        assert!(
            help.contains(flag),
            "kiln build --help lacks {flag}:\n{help}"
        );
    }
}

#[test]
fn sbom_help_names_every_kind_of_image_it_reads() {
    let help = stdout(&kiln(&["sbom", "--help"]));
    for word in [
        "oci:DIR",
        "oci-archive:FILE",
        "docker://",
        "--insecure-registry",
        "referrers",
    ] {
        assert!(
            help.contains(word),
            "kiln sbom --help lacks {word}:\n{help}"
        );
    }
}

#[test]
fn sbom_of_something_that_is_not_a_layout_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:latest", dir.path().display());
    let output = kiln(&["sbom", &layout]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains("index.json") && err.contains(&dir.path().display().to_string()),
        "{err}"
    );
}

#[test]
fn shell_refuses_a_store_path_outside_the_store_before_doing_anything() {
    let app = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "shell",
        app.path().to_str().unwrap(),
        "--store-path",
        "/etc",
        "--",
        "true",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--store-path /etc is not a path directly in /nix/store"),
        "{message}"
    );
    assert!(stdout(&output).is_empty());
}

#[test]
fn an_output_kiln_cannot_write_is_a_usage_error_naming_it() {
    let app = tempfile::tempdir().unwrap();
    let output = kiln(&[
        "build",
        app.path().to_str().unwrap(),
        "--output",
        "ftp://example/app",
    ]);
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("--output ftp://example/app") && message.contains("docker://"),
        "{message}"
    );
}

#[test]
fn bad_usage_exits_2_and_names_the_problem() {
    let output = kiln(&["build", "--compression", "brotli"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("brotli"), "{}", stderr(&output));
}

#[test]
fn cache_info_reports_each_part_as_json() {
    let cache = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(cache.path().join("blobs/sha256")).unwrap();
    std::fs::write(cache.path().join("blobs/sha256/abc"), b"12345").unwrap();
    let dir = cache.path().to_str().unwrap();
    let output = kiln(&["--json", "--cache-dir", dir, "cache", "info"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let info: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(info["cacheDir"], dir);
    assert_eq!(info["totalBytes"], 5);
    let names: Vec<&str> = info["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "store",
            "resolutions",
            "nixpkgs",
            "blobs",
            "layers",
            "phases",
            "build-cache",
            "bases",
            "work"
        ]
    );
    assert_eq!(info["kinds"][3]["entries"], 1);
    assert_eq!(info["leftovers"], serde_json::json!([]));
}

#[test]
fn rust_log_and_verbosity_choose_what_is_logged_to_stderr_only() {
    let cache = tempfile::tempdir().unwrap();
    let dir = cache.path().to_str().unwrap();
    let run = |verbosity: Option<&str>, rust_log: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command.args(["--cache-dir", dir, "cache", "info"]);
        command.args(verbosity);
        command.env_remove("RUST_LOG");
        if let Some(filter) = rust_log {
            command.env("RUST_LOG", filter);
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        assert!(stdout(&output).starts_with("cache: "));
        stderr(&output).contains("measuring the cache")
    };
    assert!(!run(None, None), "debug lines shown by default");
    assert!(run(Some("-vv"), None), "-vv does not show debug lines");
    assert!(
        run(None, Some("debug")),
        "RUST_LOG=debug does not show debug lines"
    );
    assert!(
        !run(Some("-vv"), Some("error")),
        "RUST_LOG does not win over -vv"
    );
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let output = kiln(&["--version"]);
    assert!(output.status.success());
    let version = stdout(&output);
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("git");
    let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
    assert!(
        version.starts_with(&format!("kiln {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{version}"
    );
    assert!(
        !head.is_empty() && version.contains(&head),
        "{version} does not name HEAD {head}"
    );
}
