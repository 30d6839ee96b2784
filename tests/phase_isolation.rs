//! What a hostile app's build commands must not reach: the terminal kiln
//! runs on (keystrokes pushed with `TIOCSTI` land in the user's shell) and
//! the `cacheDirectories` of other apps (a poisoned npm cache).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiln_harness::FixtureNixpkgs;

/// Python that tries every way to the host's terminal and prints what
/// worked, or `no host terminal`.
const TERMINAL_PROBE: &str = r#"import fcntl, os, termios
escaped = []
try:
    tty = os.open("/dev/tty", os.O_RDWR)
    escaped.append("opened /dev/tty")
    try:
        fcntl.ioctl(tty, termios.TIOCSTI, b" ")
        escaped.append("TIOCSTI on /dev/tty")
    except OSError:
        pass
except OSError:
    pass
for fd in (0, 1, 2):
    try:
        fcntl.ioctl(fd, termios.TIOCSTI, b" ")
        escaped.append("TIOCSTI on fd %d" % fd)
    except OSError:
        pass
# Fields after the command name: state, ppid, pgrp, session, tty_nr.
tty_nr = open("/proc/self/stat").read().rsplit(")", 1)[1].split()[4]
if tty_nr != "0":
    escaped.append("controlling terminal %s" % tty_nr)
print("escaped: " + ", ".join(escaped) if escaped else "no host terminal")
"#;

/// An app built from its `nixpacks.toml` alone, with python3 and `files`.
fn app(parent: &Path, name: &str, build_cmds: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = parent.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        "providers = []\n\n[phases.setup]\nnixPkgs = [\"python3\"]\n\n\
         [phases.build]\ndependsOn = [\"setup\"]\ncmds = [{build_cmds}]\n\
         cacheDirectories = [\"/root/.probe-cache\"]\n\n[start]\ncmd = \"true\"\n"
    );
    std::fs::write(dir.join("nixpacks.toml"), config).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

/// `kiln --cache-dir CACHE build APP` with the fixture's sources, into an
/// OCI layout in `work`.
fn build_args(fixture: &FixtureNixpkgs, app: &Path, work: &Path) -> Vec<String> {
    let mut args = vec![
        "--cache-dir".into(),
        work.join("cache").display().to_string(),
        "build".into(),
        app.display().to_string(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend([
        "--output".into(),
        format!("oci:{}:latest", work.join("layout").display()),
    ]);
    args
}

/// Runs `kiln ARGS` on a pseudo-terminal of `script`'s, so that kiln has
/// a controlling terminal; returns whether it succeeded and what it showed.
fn kiln_on_a_terminal(args: &[String], work: &Path) -> (bool, String) {
    let command: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_kiln").to_string())
        .chain(args.iter().cloned())
        .map(|arg| format!("'{arg}'"))
        .collect();
    let transcript = work.join("transcript");
    let status = Command::new("script")
        .arg("-qec")
        .arg(command.join(" "))
        .arg(&transcript)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .env_remove("RUST_LOG")
        .status()
        .unwrap();
    let shown = String::from_utf8_lossy(&std::fs::read(&transcript).unwrap()).into_owned();
    (status.success(), shown)
}

fn fixture_and_script() -> Option<&'static FixtureNixpkgs> {
    FixtureNixpkgs::with_tools(&["script"])
}

#[test]
fn a_build_phase_gets_no_host_terminal() {
    let Some(fixture) = fixture_and_script() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = app(
        work.path(),
        "probe",
        "\"python3 probe.py\"",
        &[("probe.py", TERMINAL_PROBE)],
    );
    let (ok, shown) = kiln_on_a_terminal(&build_args(fixture, &app, work.path()), work.path());
    assert!(ok, "{shown}");
    assert!(shown.contains("no host terminal"), "{shown}");
    assert!(!shown.contains("escaped"), "{shown}");
}

#[test]
fn kiln_shell_gets_the_terminal_as_stdio_but_not_as_controlling_terminal() {
    let Some(fixture) = fixture_and_script() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = app(
        work.path(),
        "probe",
        "\"true\"",
        &[("probe.py", TERMINAL_PROBE)],
    );
    let mut args = vec![
        "--cache-dir".into(),
        work.path().join("cache").display().to_string(),
        "shell".into(),
        app.display().to_string(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend(["--".into(), "sh".into(), "-c".into()]);
    // stdin a terminal shows the shell was given the caller's terminal.
    args.push("test -t 0 && echo stdin-is-a-terminal; python3 /app/probe.py".into());
    let (ok, shown) = kiln_on_a_terminal(&args, work.path());
    assert!(ok, "{shown}");
    assert!(shown.contains("stdin-is-a-terminal"), "{shown}");
    assert!(shown.contains("no host terminal"), "{shown}");
    assert!(!shown.contains("escaped"), "{shown}");
}

#[test]
fn ctrl_c_to_kiln_shell_reaches_the_command_in_the_shell() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = app(work.path(), "probe", "\"true\"", &[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(work.path().join("cache"))
        .arg("shell")
        .arg(&app)
        .args(fixture.kiln_source_args())
        .args([
            "--",
            "sh",
            "-c",
            "echo started; sleep 300; echo not interrupted",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "started\n");
    // A terminal's Ctrl-C reaches kiln only (the shell has a session of its
    // own): SIGINT to kiln alone.
    let group = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("Ctrl-C did not reach the command in the shell");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(!status.success());
    assert_eq!(rest, "", "the command went on after Ctrl-C");
}

/// A build command that prints what earlier builds left in the cache
/// folder, then leaves its app's name there.
const CACHE_PROBE: &str = "\"echo cache holds: [$(ls /root/.probe-cache | tr '\\\\n' ' ')]\", \
     \"touch /root/.probe-cache/$(cat name)\"";

fn kiln(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run kiln")
}

/// Builds `app` with the cache in `work`; returns what its probe printed.
fn cache_seen(fixture: &FixtureNixpkgs, app: &Path, work: &Path, extra: &[&str]) -> String {
    let mut args = build_args(fixture, app, work);
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let output = kiln(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    let line = stderr
        .lines()
        .find_map(|line| line.split_once("cache holds: ").map(|(_, seen)| seen))
        .unwrap_or_else(|| panic!("no probe line: {stderr}"));
    line.trim().to_string()
}

#[test]
fn cache_directories_are_per_app_unless_a_cache_key_is_shared() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let apps = work.path().join("apps");
    let first = app(&apps, "first", CACHE_PROBE, &[("name", "first\n")]);
    let second = app(&apps, "second", CACHE_PROBE, &[("name", "second\n")]);
    assert_eq!(cache_seen(fixture, &first, work.path(), &[]), "[]");
    assert_eq!(
        cache_seen(fixture, &second, work.path(), &[]),
        "[]",
        "the second app saw the first app's cache"
    );
    // The same app, rebuilt after an edit, keeps its cache.
    std::fs::write(first.join("edit"), "changed\n").unwrap();
    assert_eq!(cache_seen(fixture, &first, work.path(), &[]), "[first ]");
    // An explicit key is shared by whichever apps name it (edits make the
    // phases run again instead of coming from the phase cache).
    let shared = ["--cache-key", "team"];
    std::fs::write(first.join("edit"), "changed again\n").unwrap();
    assert_eq!(cache_seen(fixture, &first, work.path(), &shared), "[]");
    std::fs::write(second.join("edit"), "changed\n").unwrap();
    assert_eq!(
        cache_seen(fixture, &second, work.path(), &shared),
        "[first ]"
    );
}

/// Builds `app` with no phase cache and `extra` arguments; returns whether
/// its build command reached a listener on the host's loopback.
fn reaches_host_loopback(
    fixture: &FixtureNixpkgs,
    app: &Path,
    work: &Path,
    extra: &[&str],
) -> bool {
    let mut args = build_args(fixture, app, work);
    args.push("--no-cache".into());
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let output = kiln(&args);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    match (
        stderr.contains("network: reached"),
        stderr.contains("network: cut off"),
    ) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("no probe line: {stderr}"),
    }
}

#[test]
fn kiln_network_none_in_the_config_cuts_the_build_off_and_leaves_the_plan_as_upstream_s() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let work = tempfile::tempdir().unwrap();
    let probe = format!(
        "\"(echo from-build > /dev/tcp/127.0.0.1/{port}) 2>/dev/null \
         && echo network: reached || echo network: cut off\""
    );
    let plain = app(work.path(), "plain", &probe, &[]);
    let locked = app(work.path(), "locked", &probe, &[]);
    let config = locked.join("nixpacks.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[kiln]\nnetwork = \"none\"\n")).unwrap();

    let plan = |app: &Path| kiln(&["plan".to_string(), app.display().to_string()]);
    let (plain_plan, locked_plan) = (plan(&plain), plan(&locked));
    assert!(locked_plan.status.success());
    assert_eq!(
        plain_plan.stdout, locked_plan.stdout,
        "the plan JSON changed"
    );
    assert_eq!(String::from_utf8_lossy(&locked_plan.stderr), "");

    assert!(reaches_host_loopback(fixture, &plain, work.path(), &[]));
    assert!(!reaches_host_loopback(fixture, &locked, work.path(), &[]));
    assert!(!reaches_host_loopback(
        fixture,
        &plain,
        work.path(),
        &["--network", "none"]
    ));
    // The person running kiln has the last word over the app's config.
    assert!(reaches_host_loopback(
        fixture,
        &locked,
        work.path(),
        &["--network", "host"]
    ));
}

/// Build commands that print what earlier builds left in an absolute and
/// a relative cache folder, then leave a file in each (making the folders
/// when they are not cache folders, with `--no-cache`).
const KEPT_PROBE: &str = "\"echo kept: [$(cat /root/.probe-cache/kept .cache/probe/kept 2>/dev/null | tr '\\\\n' ' ')]\", \
     \"mkdir -p /root/.probe-cache .cache/probe\", \
     \"echo from-build > /root/.probe-cache/kept\", \"echo from-build > .cache/probe/kept\"";

#[test]
fn cache_directories_are_kept_per_cache_key_and_never_in_the_image() {
    let Some(fixture) = FixtureNixpkgs::with_tools(&["umoci"]) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let app = app(work.path(), "kept", KEPT_PROBE, &[]);
    let config = app.join("nixpacks.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace(
        "cacheDirectories = [\"/root/.probe-cache\"]",
        "cacheDirectories = [\"/root/.probe-cache\", \".cache/probe\"]",
    );
    std::fs::write(&config, text).unwrap();
    // Each build edits the app, so its phases run instead of coming from
    // the phase cache.
    let build = |edit: &str, extra: &[&str]| {
        std::fs::write(app.join("edit"), edit).unwrap();
        let mut args = build_args(fixture, &app, work.path());
        args.extend(extra.iter().map(|arg| arg.to_string()));
        let output = kiln(&args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        stderr
            .lines()
            .find_map(|line| {
                line.split_once("kept: ")
                    .map(|(_, seen)| seen.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no probe line: {stderr}"))
    };

    assert_eq!(build("1", &["--cache-key", "team"]), "[]");
    let image = kiln_harness::validators::Bundle::unpack(&work.path().join("layout"), "latest");
    for folder in ["root/.probe-cache", "app/.cache/probe"] {
        let inside = image.rootfs().join(folder);
        let entries: Vec<_> = std::fs::read_dir(&inside)
            .map(|entries| entries.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(
            entries.is_empty(),
            "/{folder} in the image holds {entries:?}"
        );
    }
    // Kept in kiln's cache under the key, one folder per cache directory.
    let kept: Vec<String> = std::fs::read_dir(work.path().join("cache/build-cache/team"))
        .unwrap()
        .map(|folder| std::fs::read_to_string(folder.unwrap().path().join("kept")).unwrap())
        .collect();
    assert_eq!(kept, ["from-build\n", "from-build\n"]);

    assert_eq!(
        build("2", &["--cache-key", "team"]),
        "[from-build from-build ]"
    );
    assert_eq!(build("3", &["--cache-key", "other"]), "[]");
    assert_eq!(build("4", &["--cache-key", "team", "--no-cache"]), "[]");
}
