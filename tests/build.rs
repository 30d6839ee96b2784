//! `kiln build` end to end: each fixture app built offline with the fixture
//! nixpkgs, unpacked by umoci, run by runc and asked for its page over
//! loopback; the same build twice gives the same digest; failures exit 1
//! and write nothing; plain stage lines off a terminal, bars on one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_harness::apps::FixtureApp;
use kiln_harness::process::free_port;
use kiln_harness::summary::phases_cached;
use kiln_harness::validators::Bundle;
use kiln_harness::{require, AsUser, FixtureNixpkgs, Registry, RegistryKind};

const IMAGE_TOOLS: [&str; 3] = ["umoci", "runc", "curl"];

/// `kiln build` arguments for `app_dir` with the fixture's nixpkgs and cache.
fn build_args(fixture: &FixtureNixpkgs, app_dir: &Path, cache: &Path) -> Vec<String> {
    let mut args = vec![
        "--cache-dir".into(),
        cache.display().to_string(),
        "build".into(),
        app_dir.display().to_string(),
    ];
    args.extend(fixture.kiln_source_args());
    args
}

fn kiln(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .expect("run kiln")
}

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

/// The fixture nixpkgs, when it and the image tools are there (else the
/// test skips, or fails under CI).
fn fixture_and_image_tools() -> Option<&'static FixtureNixpkgs> {
    FixtureNixpkgs::with_tools(&IMAGE_TOOLS)
}

/// The tools a test of a registry needs.
const REGISTRY_TOOLS: [&str; 2] = ["docker-registry", "skopeo"];

/// Builds `app` as root into `oci:<work>/layout:latest` with a cache in
/// `work`; returns the layout and the printed digest.
fn build_into_layout(fixture: &FixtureNixpkgs, app: FixtureApp, work: &Path) -> (PathBuf, String) {
    let layout = work.join("layout");
    let mut args = build_args(fixture, &app.dir(), &work.join("cache"));
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    let digest = succeed(kiln(&args), &format!("kiln build {}", app.name()));
    (layout, digest.trim().to_string())
}

/// Builds `app` as root into `oci:<tmp>:latest`, runs it and fetches its
/// page; returns the printed digest.
fn builds_and_answers(app: FixtureApp) -> Option<String> {
    let fixture = fixture_and_image_tools()?;
    let work = tempfile::tempdir().unwrap();
    let (layout, digest) = build_into_layout(fixture, app, work.path());
    app.answers_from(&layout, "latest");
    Some(digest)
}

#[test]
fn node_app_builds_and_answers() {
    builds_and_answers(FixtureApp::Node);
}

#[test]
fn python_app_builds_and_answers() {
    builds_and_answers(FixtureApp::Python);
}

#[test]
fn shell_app_builds_and_answers() {
    builds_and_answers(FixtureApp::Shell);
}

#[test]
fn configured_app_builds_and_answers() {
    builds_and_answers(FixtureApp::Configured);
}

#[test]
fn same_build_twice_gives_the_same_digest() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let digests: Vec<String> = (0..2)
        .map(|_| {
            // A fresh cache each time: nothing is reused between the builds.
            let work = tempfile::tempdir().unwrap();
            let mut args = build_args(fixture, &FixtureApp::Node.dir(), &work.path().join("cache"));
            let archive = work.path().join("node.oci.tar");
            args.extend([
                "--output".into(),
                format!("oci-archive:{}", archive.display()),
            ]);
            succeed(kiln(&args), "kiln build").trim().to_string()
        })
        .collect();
    assert!(digests[0].starts_with("sha256:"), "{digests:?}");
    assert_eq!(digests[0], digests[1]);
}

/// Runs kiln with `args` as the unprivileged test user in `dir`.
fn kiln_as(user: &AsUser, args: &[String], dir: &Path) -> Output {
    user.command(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run kiln as the test user")
}

/// Builds `app` as the unprivileged test user, checks the image is the
/// user's, runs it and fetches its page.
fn builds_as_the_test_user(app: FixtureApp) -> Option<String> {
    let fixture = FixtureNixpkgs::get()?;
    let user = AsUser::get()?;
    if !require(&IMAGE_TOOLS) {
        return None;
    }
    let work = user.tempdir();
    let layout = work.path().join("layout");
    let mut args = build_args(fixture, &app.dir(), &work.path().join("cache"));
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    let output = kiln_as(&user, &args, work.path());
    let digest = succeed(
        output,
        &format!("kiln build {} as the test user", app.name()),
    );
    assert!(digest.trim().starts_with("sha256:"), "{digest}");
    let index = std::fs::metadata(layout.join("index.json")).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::uid(&index),
        user.uid(),
        "the image is the user's"
    );
    app.answers_from(&layout, "latest");
    Some(digest.trim().to_string())
}

#[test]
fn node_app_builds_as_an_unprivileged_user_into_the_same_image_as_root() {
    let Some(as_user) = builds_as_the_test_user(FixtureApp::Node) else {
        return;
    };
    let as_root = builds_and_answers(FixtureApp::Node).expect("root can build what the user can");
    assert_eq!(
        as_user, as_root,
        "the same input gives the same digest for any user"
    );
}

#[test]
fn python_app_builds_as_an_unprivileged_user() {
    builds_as_the_test_user(FixtureApp::Python);
}

#[test]
fn shell_and_configured_apps_build_as_an_unprivileged_user() {
    builds_as_the_test_user(FixtureApp::Shell);
    builds_as_the_test_user(FixtureApp::Configured);
}

/// Builds `app` with `extra` flags into an OCI archive, expecting failure:
/// exit code 1 and no archive left behind. Returns what kiln printed on
/// stderr, or None when the fixture is unavailable.
fn fails_with(app: &Path, extra: &[&str]) -> Option<String> {
    let fixture = FixtureNixpkgs::get()?;
    let work = tempfile::tempdir().unwrap();
    let archive = work.path().join("image.oci.tar");
    let mut args = build_args(fixture, app, &work.path().join("cache"));
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "--output".into(),
        format!("oci-archive:{}", archive.display()),
    ]);
    let output = kiln(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!archive.exists(), "no image after a failed build: {stderr}");
    Some(stderr)
}

#[test]
fn apt_packages_without_a_debian_base_are_refused() {
    let Some(stderr) = fails_with(&FixtureApp::Shell.dir(), &["--apt", "curl"]) else {
        return;
    };
    assert!(stderr.contains("apt packages"), "{stderr}");
    assert!(stderr.contains("Debian or Ubuntu base image"), "{stderr}");
}

#[test]
fn a_failing_build_command_exits_1_and_writes_no_image() {
    let Some(stderr) = fails_with(
        &FixtureApp::Node.dir(),
        &["--build-cmd", "echo about to fail; exit 7"],
    ) else {
        return;
    };
    assert!(stderr.contains("phase build"), "{stderr}");
    assert!(stderr.contains("exit 7"), "names the command: {stderr}");
}

#[test]
fn a_missing_package_names_it_and_exits_1() {
    let Some(stderr) = fails_with(
        &FixtureApp::Shell.dir(),
        &["--pkgs", "no-such-package-anywhere"],
    ) else {
        return;
    };
    assert!(stderr.contains("no-such-package-anywhere"), "{stderr}");
}

#[test]
fn a_bad_config_names_the_file_and_exits_1() {
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("nixpacks.toml"),
        "[phases.build\ncmds = [\"true\"]\n",
    )
    .unwrap();
    let Some(stderr) = fails_with(app.path(), &[]) else {
        return;
    };
    assert!(stderr.contains("nixpacks.toml"), "{stderr}");
}

#[test]
fn pushed_images_pulled_back_run_the_same() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&REGISTRY_TOOLS) else {
        return;
    };
    if !require(&IMAGE_TOOLS) {
        return;
    }
    let registry = Registry::start(RegistryKind::Plain);
    let apps = [
        FixtureApp::Node,
        FixtureApp::Python,
        FixtureApp::StaticSite,
        FixtureApp::Shell,
        FixtureApp::Configured,
    ];
    let work = tempfile::tempdir().unwrap();
    for app in apps {
        let reference = format!("{}/fixtures/{}:v1", registry.host(), app.name());
        let mut args = build_args(fixture, &app.dir(), &work.path().join("cache"));
        args.extend([
            "--push".into(),
            reference.clone(),
            "--insecure-registry".into(),
            registry.host(),
        ]);
        let printed = succeed(kiln(&args), &format!("kiln build --push {}", app.name()));
        let inspect = kiln_harness::validators::skopeo_inspect(
            &format!("docker://{reference}"),
            &["--tls-verify=false"],
        );
        assert_eq!(inspect["Digest"], printed.trim(), "{}", app.name());
        let pulled = work.path().join(format!("pulled-{}", app.name()));
        kiln_harness::validators::skopeo_copy(
            &format!("docker://{reference}"),
            &format!("oci:{}:v1", pulled.display()),
            &["--src-tls-verify=false"],
        );
        app.answers_from(&pulled, "v1");
    }
}

/// A Debian base image pushed to the test registry, as a `--base-image`
/// reference; with the registry (kept alive by the caller) and the base's
/// layer digests. `None` when the test should be skipped.
fn debian_base(work: &Path) -> Option<(Registry, String, Vec<String>)> {
    if !require(&REGISTRY_TOOLS) {
        return None;
    }
    let layout = work.join("debian");
    kiln_harness::debian::debian_image(&layout, "t")?;
    let registry = Registry::start(RegistryKind::Plain);
    let reference = format!("{}/library/debian:bookworm", registry.host());
    kiln_harness::validators::skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{reference}"),
        &["--dest-tls-verify=false"],
    );
    let layers = kiln_harness::images::layout_layer_digests(&layout, "t");
    Some((registry, reference, layers))
}

/// On a Debian base pulled from a registry, `aptPkgs` are installed by apt
/// in the sandbox and a later phase runs what they installed; the base's
/// layers are the image's first, unchanged, and its own users stay; a
/// second build reuses the apt step and gives the same digest.
#[test]
fn apt_app_builds_on_a_debian_base_image_and_answers() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let Some((registry, base, base_layers)) = debian_base(work.path()) else {
        return;
    };
    let app = FixtureApp::Apt;
    let build = |output: &str| {
        let mut args = build_args(fixture, &app.dir(), &work.path().join("cache"));
        args.extend([
            "--base-image".into(),
            base.clone(),
            "--insecure-registry".into(),
            registry.host(),
            "--output".into(),
            output.to_string(),
        ]);
        build_json(&args)
    };
    let layout = work.path().join("layout");
    let first = build(&format!("oci:{}:latest", layout.display()));
    assert!(!phase_cached(&first, "apt"), "{first}");
    let layers: Vec<String> = layer_digests(&first).into_iter().map(|(_, d)| d).collect();
    assert_eq!(layers[..base_layers.len()], base_layers[..], "{first}");
    app.answers_from(&layout, "latest");

    let bundle = Bundle::unpack(&layout, "latest");
    let passwd = std::fs::read_to_string(bundle.rootfs().join("etc/passwd")).unwrap();
    assert!(passwd.contains("_apt:"), "Debian's users stay: {passwd}");
    assert!(bundle.rootfs().join("usr/bin/hello").is_file());
    assert!(
        bundle.rootfs().join("bin").is_symlink(),
        "merged /usr kept: /bin is still a link"
    );

    let again = build(&format!(
        "oci-archive:{}",
        work.path().join("again.tar").display()
    ));
    assert!(phase_cached(&again, "apt"), "{again}");
    assert_eq!(first["digest"], again["digest"]);
}

/// As the unprivileged user, the Node app builds on a Debian base pulled
/// from a registry and answers; its first layers are the base's.
#[test]
fn node_app_builds_on_a_debian_base_as_an_unprivileged_user() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let Some(user) = AsUser::get() else {
        return;
    };
    let work = user.tempdir();
    let Some((registry, base, base_layers)) = debian_base(work.path()) else {
        return;
    };
    let app = FixtureApp::Node;
    let layout = work.path().join("layout");
    let mut args = build_args(fixture, &app.dir(), &work.path().join("cache"));
    args.splice(0..0, ["--json".to_string()]);
    args.extend([
        "--base-image".into(),
        base,
        "--insecure-registry".into(),
        registry.host(),
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    let output = kiln_as(&user, &args, work.path());
    let summary: serde_json::Value =
        serde_json::from_str(&succeed(output, "kiln build on debian as the test user")).unwrap();
    let layers: Vec<String> = layer_digests(&summary)
        .into_iter()
        .map(|(_, d)| d)
        .collect();
    assert_eq!(layers[..base_layers.len()], base_layers[..], "{summary}");
    app.answers_from(&layout, "latest");
}

/// A base image without apt cannot take `aptPkgs`: the error names the
/// image.
#[test]
fn apt_packages_on_a_base_without_apt_are_refused() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&REGISTRY_TOOLS) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(RegistryKind::Plain);
    let reference = format!("{}/library/busybox:1", registry.host());
    let layout = work.path().join("busybox");
    kiln_harness::images::busybox_image(&layout, "t");
    kiln_harness::validators::skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &format!("docker://{reference}"),
        &["--dest-tls-verify=false"],
    );
    let archive = work.path().join("image.oci.tar");
    let mut args = build_args(fixture, &FixtureApp::Apt.dir(), &work.path().join("cache"));
    args.extend([
        "--base-image".into(),
        reference.clone(),
        "--insecure-registry".into(),
        registry.host(),
        "--output".into(),
        format!("oci-archive:{}", archive.display()),
    ]);
    let output = kiln(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no apt-get") && stderr.contains(&reference),
        "{stderr}"
    );
    assert!(!archive.exists());
}

/// `start.runImage` with upstream's slim image: the image holds kiln's
/// base packages and `start.onlyIncludeFiles` only, not the build's tools
/// or other app files, and it answers.
#[test]
fn run_image_keeps_only_the_included_files_and_answers() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let app = FixtureApp::RunImage;
    let work = tempfile::tempdir().unwrap();
    let (layout, _) = build_into_layout(fixture, app, work.path());
    app.answers_from(&layout, "latest");
    let bundle = Bundle::unpack(&layout, "latest");
    let root = bundle.rootfs();
    assert!(root.join("app/out/busybox").is_file());
    assert!(root.join("app/out/www/index.html").is_file());
    for left_out in ["app/build-notes.txt", "app/nixpacks.toml"] {
        assert!(!root.join(left_out).exists(), "{left_out} is in the image");
    }
    let store: Vec<String> = std::fs::read_dir(root.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(store.iter().any(|p| p.contains("-bash-")), "{store:?}");
    assert!(!store.iter().any(|p| p.contains("python")), "{store:?}");
}

/// `kiln build` arguments that push the shell app to `reference` on the
/// plain-HTTP registry `host`, with a cache in `work`.
fn shell_app_push_args(
    fixture: &FixtureNixpkgs,
    work: &Path,
    reference: &str,
    host: &str,
) -> Vec<String> {
    let mut args = build_args(fixture, &FixtureApp::Shell.dir(), &work.join("cache"));
    args.extend([
        "--push".into(),
        reference.into(),
        "--insecure-registry".into(),
        host.into(),
    ]);
    args
}

#[test]
fn unreachable_registry_exits_1() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let port = free_port();
    let reference = format!("127.0.0.1:{port}/nowhere/app:v1");
    let args = shell_app_push_args(
        fixture,
        work.path(),
        &reference,
        &format!("127.0.0.1:{port}"),
    );
    let output = kiln(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}

/// The static site builds with its assets, site and the profile where
/// upstream's nginx config looks for it, and nginx serves the site.
#[test]
fn static_site_builds_with_assets_and_profile_and_answers() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let app = FixtureApp::StaticSite;
    let work = tempfile::tempdir().unwrap();
    let (layout, _) = build_into_layout(fixture, app, work.path());
    let bundle = Bundle::unpack(&layout, "latest");
    let rootfs = bundle.rootfs();
    let read = |path: &str| std::fs::read_to_string(rootfs.join(path)).unwrap_or_default();
    assert_eq!(read("app/site/index.html"), app.body());
    assert!(read("assets/nginx.conf").contains("root\t  /app/site;"));
    let environments: Vec<_> = std::fs::read_dir(rootfs.join("nix/store"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("-user-environment"))
        .collect();
    assert_eq!(environments.len(), 1, "{environments:?}");
    let mime = format!("/nix/store/{}/conf/mime.types", environments[0]);
    let resolved = resolve_in(&rootfs, Path::new(&mime));
    assert!(
        std::fs::read_to_string(&resolved)
            .unwrap()
            .contains("text/html"),
        "{mime} -> {}",
        resolved.display()
    );
    for dir in ["etc/nginx", "var/log/nginx", "var/cache/nginx"] {
        assert!(rootfs.join(dir).is_dir(), "the setup phase made /{dir}");
    }
    app.answers_from(&layout, "latest");
}

/// `path` inside `rootfs`, following symlinks as the container would see
/// them (absolute targets are relative to `rootfs`).
fn resolve_in(rootfs: &Path, path: &Path) -> PathBuf {
    let mut resolved = rootfs.to_path_buf();
    let mut pending: Vec<std::ffi::OsString> = path
        .components()
        .rev()
        .filter_map(|c| match c {
            std::path::Component::Normal(part) => Some(part.to_os_string()),
            _ => None,
        })
        .collect();
    let mut hops = 0;
    while let Some(part) = pending.pop() {
        let next = resolved.join(&part);
        match std::fs::read_link(&next) {
            Ok(target) => {
                hops += 1;
                assert!(hops < 40, "symlink loop at {}", next.display());
                if target.is_absolute() {
                    resolved = rootfs.to_path_buf();
                }
                for component in target.components().rev() {
                    match component {
                        std::path::Component::Normal(p) => pending.push(p.to_os_string()),
                        std::path::Component::ParentDir => pending.push("..".into()),
                        _ => {}
                    }
                }
            }
            Err(_) if part == ".." => {
                resolved.pop();
            }
            Err(_) => resolved = next,
        }
    }
    resolved
}

fn build_json(args: &[String]) -> serde_json::Value {
    let mut args = args.to_vec();
    args.insert(0, "--json".into());
    let stdout = succeed(kiln(&args), "kiln build --json");
    serde_json::from_str(&stdout).expect("--json prints one JSON object")
}

fn phase_cached(summary: &serde_json::Value, name: &str) -> bool {
    let phase = summary["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {summary}"));
    phase["cached"].as_bool().expect("cached is a boolean")
}

fn layer_digests(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["holds"].as_str().unwrap().to_string(),
                l["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Builds a copy of `app` with a build command, edits `source` (a comment
/// in `comment` syntax that changes no behaviour), builds again: the
/// install phase, which sees only the manifests and lockfiles, is reused
/// with its layer, the build phase runs again, and the image answers.
fn rebuild_after_a_source_edit_reuses_the_install_phase(
    app: FixtureApp,
    source: &str,
    comment: &str,
) {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join(app.name());
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(app.dir()).unwrap() {
        let file = entry.unwrap().path();
        std::fs::copy(&file, copy.join(file.file_name().unwrap())).unwrap();
    }
    let layout = work.path().join("layout");
    let build = |tag: &str| {
        let mut args = build_args(fixture, &copy, &work.path().join("cache"));
        args.extend([
            "--build-cmd".into(),
            format!("cp {source} {source}.copy"),
            "--output".into(),
            format!("oci:{}:{tag}", layout.display()),
        ]);
        build_json(&args)
    };
    let first = build("first");
    assert!(!phase_cached(&first, "install"));
    assert!(!phase_cached(&first, "build"));

    let mut text = std::fs::read_to_string(copy.join(source)).unwrap();
    text.push_str(&format!("\n{comment} an edit that changes no behaviour\n"));
    std::fs::write(copy.join(source), text).unwrap();
    let second = build("second");
    assert!(
        phase_cached(&second, "install"),
        "the install ran again: {second}"
    );
    assert!(
        !phase_cached(&second, "build"),
        "the build phase must see the edit"
    );
    assert_ne!(first["digest"], second["digest"]);

    let (before, after) = (layer_digests(&first), layer_digests(&second));
    assert_eq!(before.len(), after.len());
    let app_layer = before
        .iter()
        .position(|(holds, _)| holds == "app files")
        .expect("an app files layer");
    assert_eq!(
        before[..app_layer],
        after[..app_layer],
        "layers below the app are unchanged"
    );
    assert_ne!(before[app_layer], after[app_layer]);
    let install = |layers: &[(String, String)]| {
        layers
            .iter()
            .find(|(holds, _)| holds == "phase install")
            .cloned()
            .expect("a phase install layer")
    };
    assert_eq!(
        install(&before),
        install(&after),
        "the install layer is the same"
    );
    app.answers_from(&layout, "second");
}

#[test]
fn node_rebuild_after_a_source_edit_reuses_the_install_phase() {
    rebuild_after_a_source_edit_reuses_the_install_phase(FixtureApp::Node, "server.js", "//");
}

#[test]
fn python_rebuild_after_a_source_edit_reuses_the_requirements_install() {
    rebuild_after_a_source_edit_reuses_the_install_phase(FixtureApp::Python, "main.py", "#");
}

/// Copies the Node fixture app to `dest` under `umask`, as a checkout on a
/// runner with that umask has it, then runs the shell `then` in the copy;
/// as `user` when given (the copy is then theirs).
fn node_checkout(dest: &Path, umask: &str, then: &str, user: Option<&AsUser>) {
    let script = r#"umask "$1" && mkdir "$2" && cp -r "$3/." "$2" && cd "$2" && eval "$4""#;
    let mut command = match user {
        Some(user) => user.command("/bin/sh"),
        None => Command::new("/bin/sh"),
    };
    let output = command
        .args(["-c", script, "sh", umask])
        .arg(dest)
        .arg(FixtureApp::Node.dir())
        .arg(then)
        .output()
        .expect("run sh");
    succeed(output, &format!("checkout under umask {umask}"));
}

/// Builds three checkouts of the Node app, each with a `public/` folder,
/// one after the other with one cache: made under umask 022, under umask
/// 077, and under 022 with `server.js` made 600. As `user` when given.
/// Returns each build's `--json` summary; the layout is `<work>/layout`
/// with the tags `umask-022`, `umask-077` and `one-600`.
fn build_node_checkouts(
    fixture: &FixtureNixpkgs,
    work: &Path,
    user: Option<&AsUser>,
) -> Vec<serde_json::Value> {
    let public = "mkdir public && echo hello > public/hello.txt";
    let checkouts = [
        ("umask-022", "022", public.to_string()),
        ("umask-077", "077", public.to_string()),
        ("one-600", "022", format!("{public} && chmod 600 server.js")),
    ];
    let mut summaries = Vec::new();
    for (tag, umask, then) in checkouts {
        let app = work.join(tag);
        node_checkout(&app, umask, &then, user);
        let mut args = build_args(fixture, &app, &work.join("cache"));
        args.insert(0, "--json".into());
        args.extend([
            "--output".into(),
            format!("oci:{}:{tag}", work.join("layout").display()),
        ]);
        let output = match user {
            Some(user) => kiln_as(user, &args, work),
            None => kiln(&args),
        };
        let stdout = succeed(output, &format!("kiln build of the {tag} checkout"));
        summaries.push(serde_json::from_str(&stdout).expect("--json prints one JSON object"));
    }
    summaries
}

/// The same commit checked out under two umasks builds to one image, as
/// root and as the unprivileged user, and a checkout's modes do not change
/// the install phase's key: the later builds take it from the phase cache.
#[test]
fn node_checkouts_under_other_umasks_build_the_same_image() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let Some(user) = AsUser::get() else {
        return;
    };
    let root_work = tempfile::tempdir().unwrap();
    let user_work = user.tempdir();
    let as_root = build_node_checkouts(fixture, root_work.path(), None);
    let as_user = build_node_checkouts(fixture, user_work.path(), Some(&user));
    for summaries in [&as_root, &as_user] {
        assert!(!phase_cached(&summaries[0], "install"), "{}", summaries[0]);
        for later in &summaries[1..] {
            assert!(phase_cached(later, "install"), "npm ci ran again: {later}");
        }
    }
    let digest = &as_root[0]["digest"];
    assert!(digest.as_str().is_some_and(|d| d.starts_with("sha256:")));
    for summary in as_root.iter().chain(&as_user) {
        assert_eq!(&summary["digest"], digest, "{summary}");
    }
    FixtureApp::Node.answers_from(&root_work.path().join("layout"), "umask-077");
}

/// Builds a checkout of the Node app made under umask 077, with the shell
/// `then` run in it, and `extra` build flags; returns the unpacked image.
fn private_node_image(fixture: &FixtureNixpkgs, then: &str, extra: &[&str]) -> Bundle {
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("app");
    node_checkout(&app, "077", then, None);
    let layout = work.path().join("layout");
    let mut args = build_args(fixture, &app, &work.path().join("cache"));
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    succeed(kiln(&args), "kiln build of the umask 077 checkout");
    Bundle::unpack(&layout, "latest")
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    meta.permissions().mode() & 0o7777
}

/// The app files get git's modes, and a mode a build phase sets is kept.
#[test]
fn a_mode_set_by_a_build_phase_stays_in_the_image() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let bundle = private_node_image(
        fixture,
        "echo secret > secret.txt && echo note > note.txt",
        &["--build-cmd", "chmod 600 secret.txt"],
    );
    let app = bundle.rootfs().join("app");
    assert_eq!(mode(&app.join("secret.txt")), 0o600, "the phase's chmod");
    for file in ["note.txt", "server.js", "package.json"] {
        assert_eq!(mode(&app.join(file)), 0o644, "{file}");
    }
    assert_eq!(mode(&app), 0o755);
}

/// A script only its owner may run in the checkout (0700, in a 0700
/// folder) is 0755 in the image, and a user other than root runs it and
/// reads the app's files.
#[test]
fn an_executable_script_is_0755_and_runs_as_a_non_root_user() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let script = r#"#!/bin/bash
echo "uid $UID"
echo "$(</app/package.json)"
"#;
    let bundle = private_node_image(
        fixture,
        &format!("mkdir bin && printf '%s' '{script}' > bin/hello && chmod 700 bin/hello"),
        &[],
    );
    let app = bundle.rootfs().join("app");
    assert_eq!(mode(&app.join("bin")), 0o755);
    assert_eq!(mode(&app.join("bin/hello")), 0o755);
    bundle.prepare(|config| {
        let process = &mut config["process"];
        process["args"] = serde_json::json!(["/app/bin/hello"]);
        process["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
        // No capabilities either: nothing may read past the modes.
        process["capabilities"] = serde_json::json!({});
    });
    let output = bundle.run_to_completion("kiln-build-modes-non-root");
    let stdout = succeed(output, "runc run /app/bin/hello as uid 1000");
    assert!(stdout.contains("uid 1000"), "{stdout}");
    assert!(stdout.contains(r#""name": "node-server""#), "{stdout}");
}

/// The Node image holds its packages' closure, the app and little else:
/// compressed, under 1.5 times the closure's and the app's own layers.
#[test]
fn node_image_is_its_closure_and_app_with_no_base_bloat() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut args = build_args(fixture, &FixtureApp::Node.dir(), &work.path().join("cache"));
    let archive = work.path().join("node.oci.tar");
    args.extend([
        "--output".into(),
        format!("oci-archive:{}", archive.display()),
    ]);
    let summary = build_json(&args);
    let layers = summary["layers"].as_array().unwrap();
    let size_of = |keep: &dyn Fn(&str) -> bool| -> u64 {
        layers
            .iter()
            .filter(|l| keep(l["holds"].as_str().unwrap()))
            .map(|l| l["size"].as_u64().unwrap())
            .sum()
    };
    let total = size_of(&|_| true);
    let own = size_of(&|holds| holds.starts_with("store paths:") || holds == "app files");
    eprintln!("node image: {total} bytes compressed; closure and app files: {own} bytes");
    assert!(own > 0);
    assert!(total * 2 < own * 3, "{total} >= 1.5 x {own}");
}

/// A rebuild reuses the first build's evaluation from kiln's cache: it
/// needs no evaluator, so with no nix on PATH it still builds.
#[test]
fn a_rebuild_evaluates_nothing() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let app = FixtureApp::Node;
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let mut args = build_args(fixture, &app.dir(), &cache);
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    succeed(kiln(&args), "first kiln build");
    let again = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .env_remove("RUST_LOG")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    succeed(again, "kiln build again with no nix on PATH");
    app.answers_from(&layout, "latest");
}

/// `kiln lock` records what a build of the app resolves; with that lock
/// committed, a machine without Nix builds the app.
#[test]
fn a_locked_app_builds_without_nix() {
    let Some(fixture) = fixture_and_image_tools() else {
        return;
    };
    let app = FixtureApp::Node;
    let work = tempfile::tempdir().unwrap();
    let copy = work.path().join("app");
    let status = Command::new("cp")
        .arg("-r")
        .arg(app.dir())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "copy the app");
    let lock = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("lock")
        .arg(&copy)
        .arg("--nixpkgs")
        .arg(fixture.nixpkgs_dir())
        .output()
        .unwrap();
    succeed(lock, "kiln lock");
    let layout = work.path().join("layout");
    let mut args = build_args(fixture, &copy, &work.path().join("cache"));
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", layout.display()),
    ]);
    let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .env_remove("RUST_LOG")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    succeed(output, "kiln build from kiln.lock with no nix on PATH");
    app.answers_from(&layout, "latest");
}

/// `kiln build` arguments for the shell app into an OCI layout in `work`.
fn shell_app_args(fixture: &FixtureNixpkgs, work: &Path) -> Vec<String> {
    let mut args = build_args(fixture, &FixtureApp::Shell.dir(), &work.join("cache"));
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", work.join("layout").display()),
    ]);
    args
}

/// The stage lines every build of the shell app prints.
const SHELL_APP_STAGES: [&str; 6] = ["plan", "packages", "app", "phases", "pack", "output"];

/// Whether `stderr` has the stage line of `stage`; on a terminal a line
/// can follow a cleared bar (`\r`, `ESC [2K`) on the same row.
fn has_stage_line(stderr: &str, stage: &str) -> bool {
    stderr
        .split(['\r', '\n'])
        .map(|line| line.trim_start_matches("\x1b[2K"))
        .any(|line| line.starts_with('[') && line.contains(&format!("s] {stage}: ")))
}

#[test]
fn off_a_terminal_stderr_has_plain_lines_and_no_bars() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let output = kiln(&shell_app_args(fixture, work.path()));
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    succeed(output, "kiln build");
    assert!(
        !stderr.contains('\r') && !stderr.contains("\x1b[2K"),
        "{stderr:?}"
    );
    for stage in SHELL_APP_STAGES {
        assert!(has_stage_line(&stderr, stage), "no {stage} line: {stderr}");
    }
}

#[test]
fn on_a_terminal_bars_are_drawn_and_the_plain_lines_remain() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["script"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let command: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_kiln").to_string())
        .chain(shell_app_args(fixture, work.path()))
        .map(|arg| format!("'{arg}'"))
        .collect();
    let transcript = work.path().join("transcript");
    // `script` runs kiln on a pseudo-terminal of a known size.
    let status = Command::new("script")
        .arg("-qec")
        .arg(format!("stty cols 100 rows 30; {}", command.join(" ")))
        .arg(&transcript)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    let shown = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap()).into_owned();
    assert!(status.success(), "{shown}");
    assert!(
        shown.contains(" store paths ["),
        "no packages bar: {shown:?}"
    );
    assert!(shown.contains(" layers ["), "no pack bar: {shown:?}");
    assert!(shown.contains("\x1b[2K"), "bars never cleared: {shown:?}");
    for stage in SHELL_APP_STAGES {
        assert!(has_stage_line(&shown, stage), "no {stage} line: {shown}");
    }
}

#[test]
fn no_cache_runs_every_phase_again() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let mut args = shell_app_args(fixture, work.path());
    args.extend([
        "--install-cmd".into(),
        "echo installed > installed.txt".into(),
        "--build-cmd".into(),
        "echo built > built.txt".into(),
    ]);
    let phases = |summary: &serde_json::Value, cached: bool| {
        let phases = phases_cached(summary);
        let names: Vec<&str> = phases.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["install", "build"], "{summary}");
        assert!(
            phases.iter().all(|(_, c)| *c == cached),
            "expected every phase cached: {cached}, got {summary}"
        );
    };
    phases(&build_json(&args), false);
    phases(&build_json(&args), true);
    args.push("--no-cache".into());
    phases(&build_json(&args), false);
}

#[test]
fn quiet_leaves_only_the_phase_output_and_errors() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let build = |quiet: bool, command: &str| {
        let work = tempfile::tempdir().unwrap();
        let mut args = shell_app_args(fixture, work.path());
        if quiet {
            args.insert(0, "--quiet".into());
        }
        args.extend(["--build-cmd".into(), command.into()]);
        let output = kiln(&args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        (output, stderr)
    };
    let said = |stderr: &str, text: &str| stderr.lines().any(|l| l == format!("[build] {text}"));

    let (output, loud) = build(false, "echo phase output");
    succeed(output, "kiln build");
    assert!(said(&loud, "phase output"), "{loud}");
    assert!(
        has_stage_line(&loud, "pack") && loud.contains("\nbuilt "),
        "{loud}"
    );

    let (output, quiet) = build(true, "echo phase output");
    let digest = succeed(output, "kiln --quiet build");
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert!(said(&quiet, "phase output"), "{quiet}");
    for stage in SHELL_APP_STAGES {
        assert!(!has_stage_line(&quiet, stage), "a {stage} line: {quiet}");
    }
    assert!(!quiet.contains("built "), "a summary: {quiet}");

    let (output, failed) = build(true, "echo about to fail; exit 7");
    assert_eq!(output.status.code(), Some(1), "{failed}");
    assert!(said(&failed, "about to fail"), "{failed}");
    assert!(failed.contains("exit 7"), "no error: {failed}");
    assert!(!has_stage_line(&failed, "plan"), "{failed}");
}

#[test]
fn registry_credentials_from_the_environment_authenticate_a_push() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&REGISTRY_TOOLS) else {
        return;
    };
    let registry = Registry::start(RegistryKind::BasicAuth);
    let (user, password) = registry.credentials().unwrap();
    let work = tempfile::tempdir().unwrap();
    // A home with no auth files, so only the environment can authenticate.
    let home = work.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let reference = format!("{}/ci/app:v1", registry.host());
    let args = shell_app_push_args(fixture, work.path(), &reference, &registry.host());
    let push = |credentials: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(&args)
            .env_remove("RUST_LOG")
            .env("HOME", &home)
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("DOCKER_CONFIG")
            .env_remove("KILN_REGISTRY_USERNAME")
            .env_remove("KILN_REGISTRY_PASSWORD")
            .envs(credentials.iter().copied())
            .output()
            .expect("run kiln")
    };

    let refused = push(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("401") && stderr.contains("--registry-username"),
        "{stderr}"
    );

    let pushed = push(&[
        ("KILN_REGISTRY_USERNAME", user),
        ("KILN_REGISTRY_PASSWORD", password),
    ]);
    let stderr = String::from_utf8_lossy(&pushed.stderr).into_owned();
    assert!(!stderr.contains(password), "the password leaked: {stderr}");
    let digest = succeed(
        pushed,
        "kiln build --push with the environment's credentials",
    );
    let inspect = kiln_harness::validators::skopeo_inspect(
        &format!("docker://{reference}"),
        &[
            "--tls-verify=false",
            "--creds",
            &format!("{user}:{password}"),
        ],
    );
    assert_eq!(inspect["Digest"], digest.trim());
}
