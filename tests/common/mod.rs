//! Helpers shared by the command-line tests: run the built `kiln` without
//! the caller's logging or Nixpacks settings, and read what it printed.

use std::process::{Command, Output};

/// Runs the built `kiln` with `args`, clearing `RUST_LOG` and
/// `NIXPACKS_CONFIG_FILE` so the caller's environment cannot change the result.
pub fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NIXPACKS_CONFIG_FILE")
        .output()
        .expect("run kiln")
}

/// What the run printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What the run printed on stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
