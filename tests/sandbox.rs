//! The build sandbox as root, through the library API, against the real
//! kernel, the fixture nixpkgs and umoci.

mod sandbox_support;

use std::fs;
use std::io::Read;
use std::net::TcpListener;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kiln::sandbox::{cache_binds, preflight, Network, SandboxError};
use kiln_harness::{require, FixtureNixpkgs};
use sandbox_support::*;

fn fixture() -> Option<&'static FixtureNixpkgs> {
    if !require(&["umoci"]) {
        return None;
    }
    FixtureNixpkgs::get()
}

#[test]
fn this_machine_passes_preflight() {
    if fixture().is_none() {
        return;
    }
    preflight::check().expect("rootless sandboxes work here");
}

#[test]
fn diff_applied_over_the_lowers_gives_the_expected_tree() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    make_base(&base);
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let mut first = phase(fixture, &[], &upper, &DIFF_COMMANDS, &lines);
    first.lowers = vec![base.clone()];
    let diff = first.run().expect("the phase succeeds");
    assert_eq!(diff.upper, upper);
    assert_overlay_diff(&upper);
    assert_eq!(tree_applied_by_umoci(&[&base], &upper), expected_tree());

    // A second phase over the first one's diff sees the same tree.
    let second_upper = empty_dir(dir.path(), "upper2");
    let lines = Lines::default();
    let mut second = phase(
        fixture,
        &[],
        &second_upper,
        &[
            "test ! -e /data/remove-me.txt && echo deletion-seen",
            "ls /replaced | tr '\\n' ' ' && echo",
            "stat -c %a /srv/new.txt",
        ],
        &lines,
    );
    second.lowers = vec![base, upper];
    second.run().expect("the second phase succeeds");
    assert!(lines.has("deletion-seen"), "{:?}", lines.all());
    assert!(lines.has("only.txt "), "{:?}", lines.all());
    assert!(lines.has("750"), "{:?}", lines.all());
    assert_eq!(fs::read_dir(&second_upper).unwrap().count(), 0);
}

#[test]
fn commands_cannot_reach_outside_their_root() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = world_readable_secret(dir.path());
    // A descriptor of a host file that a careless caller leaves inheritable.
    let c_secret = std::ffi::CString::new(secret.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let leaked = unsafe { libc::open(c_secret.as_ptr(), libc::O_RDONLY) };
    assert!(leaked > 2);
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let script = escape_script(fixture, &secret);
    let sandbox = phase(fixture, &[], &upper, &[script.as_str()], &lines);
    let result = sandbox.run();
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(leaked) };
    result.expect("the probe script itself succeeds");
    assert_no_escape(&lines.all());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host only\n");
    assert!(fixture.modified_store_paths().is_empty());
}

#[test]
fn network_none_blocks_host_loopback_and_default_reaches_it() {
    let Some(fixture) = fixture() else { return };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let command = format!("echo hello-from-sandbox > /dev/tcp/127.0.0.1/{port}");
    let dir = tempfile::tempdir().unwrap();

    let upper = empty_dir(dir.path(), "none");
    let mut isolated = phase(fixture, &[], &upper, &[&command], &Lines::default());
    isolated.network = Network::None;
    let err = isolated.run().expect_err("no network, no connection");
    assert!(
        matches!(&err, SandboxError::CommandFailed { ending, .. } if ending.contains("code 1")),
        "{err}"
    );
    assert!(listener.accept().is_err(), "nothing connected");

    let upper = empty_dir(dir.path(), "host");
    phase(fixture, &[], &upper, &[&command], &Lines::default())
        .run()
        .expect("the host network reaches loopback");
    listener.set_nonblocking(false).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    let mut received = String::new();
    stream.read_to_string(&mut received).unwrap();
    assert_eq!(received, "hello-from-sandbox\n");
}

#[test]
fn fixture_node_and_python_venv_run_and_the_venv_lands_in_the_diff() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let sandbox = phase(
        fixture,
        &["nodejs_20", "python3"],
        &upper,
        &[
            "node -e 'console.log(\"node says \" + 6 * 7)'",
            "python3 -m venv /opt/venv",
            "/opt/venv/bin/python -c 'import sys; print(\"venv\", sys.prefix)'",
        ],
        &lines,
    );
    sandbox.run().expect("node and python run");
    assert!(lines.has("node says 42"), "{:?}", lines.all());
    assert!(lines.has("venv /opt/venv"), "{:?}", lines.all());
    let config = fs::read_to_string(upper.join("opt/venv/pyvenv.cfg")).unwrap();
    assert!(config.contains(fixture.store_path("python3")), "{config}");
    assert!(fs::symlink_metadata(upper.join("opt/venv/bin/python")).is_ok());
    assert!(fixture.modified_store_paths().is_empty());
}

#[test]
fn cache_directories_persist_between_phases_and_stay_out_of_the_diff() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let caches = cache_binds(
        &dir.path().join("build-cache"),
        "app",
        &["node_modules/.cache".into(), "/root/.npm".into()],
    )
    .unwrap();
    let first_upper = empty_dir(dir.path(), "upper1");
    let mut first = phase(
        fixture,
        &[],
        &first_upper,
        &["echo cached > /root/.npm/entry && echo built > /app/node_modules/.cache/out && echo kept > /app/result"],
        &Lines::default(),
    );
    first.caches = caches.clone();
    first.run().expect("the first phase succeeds");
    assert_eq!(
        tree(&first_upper),
        ["/app dir 755", "/app/result file 644 kept\n"]
    );
    assert_eq!(
        fs::read_to_string(caches[1].host.join("entry")).unwrap(),
        "cached\n"
    );

    let second_upper = empty_dir(dir.path(), "upper2");
    let lines = Lines::default();
    let mut second = phase(
        fixture,
        &[],
        &second_upper,
        &["cat /root/.npm/entry /app/node_modules/.cache/out"],
        &lines,
    );
    second.caches = caches;
    second.run().expect("the second phase succeeds");
    assert_eq!(lines.all(), ["cached", "built"]);
}

#[test]
fn failing_command_reports_phase_command_code_and_last_30_lines() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let failing = "for i in $(seq 1 40); do echo line $i; done; echo oops >&2; exit 3";
    let mut sandbox = phase(
        fixture,
        &[],
        &upper,
        &["echo first", failing, "echo never"],
        &lines,
    );
    sandbox.name = "build".into();
    let err = sandbox.run().expect_err("the phase fails");
    let SandboxError::CommandFailed {
        phase,
        command,
        ending,
        last_lines,
    } = &err
    else {
        panic!("unexpected error: {err}");
    };
    assert_eq!(phase, "build");
    assert_eq!(command, failing);
    assert_eq!(ending, "exited with code 3");
    let expected: Vec<String> = (12..=40)
        .map(|i| format!("line {i}"))
        .chain(["oops".to_string()])
        .collect();
    assert_eq!(last_lines, &expected);
    let message = err.to_string();
    assert!(
        message.starts_with("phase `build` failed: `for i in"),
        "{message}"
    );
    assert!(message.contains("exited with code 3") && message.contains("line 40"));
    assert!(!lines.has("never"));
}

#[test]
fn init_reaps_orphans_forwards_signals_and_a_timeout_kills_the_tree() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    // The subshell leaves `sleep` an orphan, which init adopts. Once killed
    // it has ended, and init must reap it: its /proc entry goes. The wait
    // is bounded only so that an init that never reaps fails the test
    // instead of hanging it.
    let orphan = "( sleep 300 & echo $! > /tmp/orphan ); pid=$(cat /tmp/orphan); kill $pid; \
         for _ in {1..600}; do [ -e /proc/$pid ] || break; sleep 0.1; done; \
         if [ -e /proc/$pid ]; then echo orphan left: $(grep '^State:' /proc/$pid/status); \
         else echo orphan reaped; fi; \
         echo zombies $(grep -l '^State:.*Z' /proc/[0-9]*/status | wc -l)";
    phase(fixture, &[], &upper, &[orphan], &lines)
        .run()
        .expect("the phase succeeds");
    assert!(
        lines.has("orphan reaped") && lines.has("zombies 0"),
        "{:?}",
        lines.all()
    );

    // init passes signals on to the running command.
    let upper = empty_dir(dir.path(), "upper-signal");
    let lines = Lines::default();
    let forwarded = "trap 'echo got-term; exit 0' TERM; kill -TERM 1; sleep 30 & wait";
    phase(fixture, &[], &upper, &[forwarded], &lines)
        .run()
        .expect("the command handles the forwarded signal and exits 0");
    assert_eq!(lines.all(), ["got-term"]);

    let upper = empty_dir(dir.path(), "upper2");
    let mut slow = phase(
        fixture,
        &[],
        &upper,
        &["sleep 300 & (sleep 300 &) ; sleep 300"],
        &Lines::default(),
    );
    let marker = mark(&mut slow, "KILN_TREE_MARKER");
    slow.timeout = Some(Duration::from_secs(2));
    let err = slow.run().expect_err("the phase times out");
    assert!(matches!(err, SandboxError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("sleep 300"), "{err}");
    assert!(processes_with(&marker).is_empty(), "processes left");

    let upper = empty_dir(dir.path(), "upper3");
    let mut cancelled = phase(fixture, &[], &upper, &["sleep 300"], &Lines::default());
    mark(&mut cancelled, "KILN_TREE_MARKER");
    let flag = Arc::new(AtomicBool::new(false));
    cancelled.cancel = Some(flag.clone());
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        flag.store(true, Ordering::SeqCst);
    });
    let err = cancelled.run().expect_err("the phase is cancelled");
    setter.join().unwrap();
    assert!(matches!(err, SandboxError::Cancelled { .. }), "{err}");
    assert!(processes_with(&marker).is_empty(), "processes left");
}

#[test]
fn bad_inputs_are_refused_with_the_fix() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    fs::write(upper.join("stale"), "x").unwrap();
    let err = phase(fixture, &[], &upper, &["true"], &Lines::default())
        .run()
        .expect_err("a used upper folder is refused");
    assert!(err.to_string().contains("not empty"), "{err}");

    let fresh = empty_dir(dir.path(), "fresh");
    let mut outside = phase(fixture, &[], &fresh, &["true"], &Lines::default());
    outside.bash = "/bin/bash".into();
    let err = outside
        .run()
        .expect_err("bash outside the closure is refused");
    assert!(err.to_string().contains("add the bash package"), "{err}");

    let mut symlinked = phase(fixture, &[], &fresh, &["true"], &Lines::default());
    let base = dir.path().join("base");
    fs::create_dir_all(base.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink("/elsewhere", base.join("tmp")).unwrap();
    symlinked.lowers = vec![base];
    let err = symlinked
        .run()
        .expect_err("a symlink where /tmp is mounted is refused");
    assert!(err.to_string().contains("/tmp"), "{err}");
    assert_eq!(fs::read_dir(&fresh).unwrap().count(), 0);
}

#[test]
fn host_resolver_files_are_bound_unless_the_image_links_them() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    phase(fixture, &[], &upper, &["cat /etc/hosts"], &lines)
        .run()
        .expect("the phase succeeds");
    let host: Vec<String> = fs::read_to_string("/etc/hosts")
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.all(), host);

    let base = dir.path().join("base");
    write_file(&base, "etc/resolv.image", "nameserver 192.0.2.1\n", 0o644);
    std::os::unix::fs::symlink("resolv.image", base.join("etc/resolv.conf")).unwrap();
    let upper = empty_dir(dir.path(), "upper2");
    let lines = Lines::default();
    let mut linked = phase(fixture, &[], &upper, &["cat /etc/resolv.conf"], &lines);
    linked.lowers = vec![base];
    linked.run().expect("the phase succeeds");
    assert_eq!(lines.all(), ["nameserver 192.0.2.1"]);
}

#[test]
fn preflight_names_a_switched_off_user_namespace_limit() {
    let Some(fixture) = fixture() else { return };
    if !require(&["unshare"]) {
        return;
    }
    let app = tempfile::tempdir().unwrap();
    // user.max_user_namespaces is per user namespace: setting it to 0 in a
    // throwaway one is what a locked-down host looks like from inside.
    let kiln = env!("CARGO_BIN_EXE_kiln");
    let bash = format!("--store-path={}", fixture.store_path("bash"));
    let script = format!(
        "echo 0 > /proc/sys/user/max_user_namespaces && exec {kiln} shell {} {bash} -- true",
        app.path().display()
    );
    let output = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user", "sh", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("sysctl user.max_user_namespaces = 0")
            && stderr.contains("sysctl -w user.max_user_namespaces="),
        "{stderr}"
    );
}

#[test]
fn a_store_path_that_is_a_symlink_is_shown_as_the_link_not_its_host_target() {
    let Some(fixture) = fixture() else { return };
    let dir = tempfile::tempdir().unwrap();
    let secret = world_readable_secret(dir.path());
    let secret_dir = dir.path().join("secret-dir");
    fs::create_dir(&secret_dir).unwrap();
    fs::write(secret_dir.join("key"), "host only\n").unwrap();
    let file_link = dir.path().join("aaaa-file-link");
    let dir_link = dir.path().join("aaaa-dir-link");
    std::os::unix::fs::symlink(&secret, &file_link).unwrap();
    std::os::unix::fs::symlink(&secret_dir, &dir_link).unwrap();
    let upper = empty_dir(dir.path(), "upper");
    let lines = Lines::default();
    let mut sandbox = phase(
        fixture,
        &[],
        &upper,
        &[
            "cat /nix/store/aaaa-file-link /nix/store/aaaa-dir-link/key 2>/dev/null; true",
            "readlink /nix/store/aaaa-file-link || echo not-a-link",
            "readlink /nix/store/aaaa-dir-link || echo not-a-link",
        ],
        &lines,
    );
    for link in [&file_link, &dir_link] {
        sandbox.store_paths.push(kiln::sandbox::StoreBind {
            host: link.clone(),
            name: link.file_name().unwrap().to_str().unwrap().to_string(),
        });
    }
    sandbox.run().expect("the phase runs");
    let all = lines.all();
    assert!(!all.iter().any(|l| l.contains("host only")), "{all:?}");
    assert!(lines.has(secret.to_str().unwrap()), "{all:?}");
    assert!(lines.has(secret_dir.to_str().unwrap()), "{all:?}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "host only\n");
}
