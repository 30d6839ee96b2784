//! Deciding whether a test can run: every component present, or a clear
//! verdict. Under `CI=true` nothing is ever skipped.

use std::path::PathBuf;

/// True when running in CI, where a missing component is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The full path of `program` on `PATH`, if it is there.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether every program in `programs` is installed. When one is missing:
/// under CI this panics (a skipped test proves nothing), elsewhere it prints
/// why the test is skipped and returns false.
pub fn require(programs: &[&str]) -> bool {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(&format!(
        "{} not installed (tests/run installs it)",
        missing.join(", ")
    ))
}

/// Whether the test runs as root, which building the fixture nixpkgs into
/// `/nix/store` and running containers with runc need.
pub fn require_root() -> bool {
    if is_root() {
        return true;
    }
    skip_or_fail("this test needs root (tests/run runs the suite as root)")
}

/// True when the effective user is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Under CI: panics with `reason`. Elsewhere: prints the skip and returns false.
pub fn skip_or_fail(reason: &str) -> bool {
    assert!(
        !in_ci(),
        "CI=true and a test component is missing: {reason}"
    );
    eprintln!("SKIPPED: {reason}");
    false
}
