//! The build sandbox as the unprivileged test user, through `kiln shell`:
//! rootless claims proven without root.

mod sandbox_support;

use std::path::Path;
use std::process::{Command, Output};

use kiln_harness::process::run;
use kiln_harness::{require, AsUser, FixtureNixpkgs};
use sandbox_support::*;

fn setup() -> Option<(&'static FixtureNixpkgs, AsUser)> {
    if !require(&["umoci", "newuidmap"]) {
        return None;
    }
    let fixture = FixtureNixpkgs::get()?;
    Some((fixture, AsUser::get()?))
}

/// `kiln shell <args>` as the test user, its packages from the fixture.
fn kiln_shell(user: &AsUser, fixture: &FixtureNixpkgs, args: &[&str]) -> Output {
    let output = user
        .command(env!("CARGO_BIN_EXE_kiln"))
        .arg("shell")
        .args(fixture.kiln_source_args())
        .args(args)
        .output()
        .expect("run kiln shell");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    output
}

fn give_tree(user: &AsUser, path: &Path) {
    run(Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", user.uid(), user.gid()))
        .arg(path));
}

#[test]
fn unprivileged_diff_applied_by_umoci_gives_the_expected_tree() {
    let Some((fixture, user)) = setup() else {
        return;
    };
    let home = user.tempdir();
    let base = home.path().join("base");
    make_base(&base);
    let app = home.path().join("app");
    std::fs::create_dir(&app).unwrap();
    give_tree(&user, home.path());
    let upper = home.path().join("upper");
    let script = DIFF_COMMANDS.join(" && ") + " && id -u";
    let mut args = vec![
        app.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--upper",
        upper.to_str().unwrap(),
    ];
    let store = store_path_args(fixture, &["bash", "coreutils", "busybox"]);
    args.extend(store.iter().map(String::as_str));
    args.extend(["--", "bash", "-c", &script]);
    let output = kiln_shell(&user, fixture, &args);
    assert!(output.status.success(), "kiln shell failed");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0\n",
        "uid 0 inside"
    );
    use std::os::unix::fs::MetadataExt;
    let written = std::fs::metadata(upper.join("srv/new.txt")).unwrap();
    assert_eq!(
        written.uid(),
        user.uid(),
        "files belong to the caller outside"
    );
    assert_overlay_diff(&upper);
    assert_eq!(tree_applied_by_umoci(&[&base], &upper), expected_tree());
}

#[test]
fn unprivileged_commands_cannot_reach_outside_their_root() {
    let Some((fixture, user)) = setup() else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    let secret = world_readable_secret(host.path());
    let app = user.tempdir();
    let script = escape_script(fixture, &secret);
    let mut args = vec![app.path().to_str().unwrap()];
    let store = store_path_args(fixture, &["bash", "coreutils", "busybox"]);
    args.extend(store.iter().map(String::as_str));
    args.extend(["--", "bash", "-c", &script]);
    let output = kiln_shell(&user, fixture, &args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "the probe script failed: {stdout}");
    let lines: Vec<String> = stdout.lines().map(String::from).collect();
    assert_no_escape(&lines);
    assert!(fixture.modified_store_paths().is_empty());
}

#[test]
fn unprivileged_failure_exits_1_and_names_phase_and_command() {
    let Some((fixture, user)) = setup() else {
        return;
    };
    let app = user.tempdir();
    let mut args = vec![app.path().to_str().unwrap()];
    let store = store_path_args(fixture, &["bash"]);
    args.extend(store.iter().map(String::as_str));
    args.extend(["--", "bash", "-c", "exit 7"]);
    let output = kiln_shell(&user, fixture, &args);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("phase `shell` failed: `bash -c 'exit 7'` exited with code 7"),
        "{stderr}"
    );
}

#[test]
fn a_user_without_subordinate_ids_gets_the_single_mapping() {
    let Some((fixture, _)) = setup() else { return };
    let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let subuid = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(
        !subuid.lines().any(|l| l.starts_with("nobody:")),
        "this test needs a user without a range in /etc/subuid"
    );
    let app = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        app.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // nobody has no home: its cache is a folder it may write.
    let cache = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        cache.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let store = store_path_args(fixture, &["bash", "coreutils"]);
    let output = Command::new("setpriv")
        .arg(format!("--reuid={}", nobody.uid))
        .arg(format!("--regid={}", nobody.gid))
        .arg("--clear-groups")
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(cache.path())
        .arg("shell")
        .arg(app.path())
        .args(fixture.kiln_source_args())
        .args(&store)
        .args([
            "--",
            "bash",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
        ])
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .expect("run kiln shell as nobody");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let maps: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    let uid = nobody.uid.to_string();
    let gid = nobody.gid.to_string();
    assert_eq!(
        maps,
        [
            vec!["0", uid.as_str(), "1"],
            vec!["0", gid.as_str(), "1"],
            vec!["0"]
        ]
    );
}

#[test]
fn unprivileged_runs_leave_nothing_in_their_temporary_folder() {
    let Some((fixture, user)) = setup() else {
        return;
    };
    let home = user.tempdir();
    let (app, temp) = (home.path().join("app"), home.path().join("tmp"));
    std::fs::create_dir(&app).unwrap();
    std::fs::create_dir(&temp).unwrap();
    give_tree(&user, home.path());
    let mut args = vec![app.to_str().unwrap()];
    let store = store_path_args(fixture, &["bash"]);
    args.extend(store.iter().map(String::as_str));
    args.extend(["--", "bash", "-c", "true"]);
    let output = user
        .command(env!("CARGO_BIN_EXE_kiln"))
        .env("TMPDIR", &temp)
        .arg("shell")
        .args(fixture.kiln_source_args())
        .args(&args)
        .output()
        .expect("run kiln shell");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let left: Vec<_> = std::fs::read_dir(&temp)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
}
