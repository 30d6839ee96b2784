//! Everything that can go wrong running a phase.

use std::path::PathBuf;
use std::time::Duration;

/// Why a phase did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel or its configuration does not allow rootless sandboxes.
    #[error("the build sandbox cannot run on this machine: {problem}. {fix}")]
    Unavailable {
        /// What is missing.
        problem: String,
        /// How to enable it.
        fix: String,
    },

    /// The sandbox's inputs are unusable.
    #[error("phase `{phase}`: {reason}")]
    InvalidInput {
        /// The phase.
        phase: String,
        /// What is wrong and what to pass instead.
        reason: String,
    },

    /// Preparing the sandbox's folders failed.
    #[error("phase `{phase}`: could not {action} {}: {source}", path.display())]
    Io {
        /// The phase.
        phase: String,
        /// What kiln was doing.
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },

    /// Writing the uid/gid maps of the sandbox failed.
    #[error("could not map the sandbox's uid and gid 0 to you: {detail}; check /etc/subuid, /etc/subgid and that newuidmap/newgidmap are installed setuid (Debian package uidmap)")]
    IdMap {
        /// What failed.
        detail: String,
    },

    /// A step building the sandbox failed.
    #[error("phase `{phase}`: the sandbox could not {step}: {errno}")]
    Setup {
        /// The phase.
        phase: String,
        /// The step.
        step: String,
        /// The error the kernel returned.
        errno: nix::errno::Errno,
    },

    /// The closure's bash could not be started.
    #[error("phase `{phase}`: could not start `{command}` with {}: {errno}{}", bash.display(), exec_hint(*.errno))]
    Exec {
        /// The phase.
        phase: String,
        /// The command.
        command: String,
        /// The bash that should have run it.
        bash: PathBuf,
        /// The error.
        errno: nix::errno::Errno,
    },

    /// A command ended unsuccessfully.
    #[error("phase `{phase}` failed: `{command}` {ending}{}", last_lines_block(.last_lines))]
    CommandFailed {
        /// The phase.
        phase: String,
        /// The command.
        command: String,
        /// "exited with code 2", "was killed by SIGKILL".
        ending: String,
        /// Its last (up to 30) lines of output.
        last_lines: Vec<String>,
    },

    /// The phase ran longer than its timeout and was killed.
    #[error("phase `{phase}` was killed after the phase timeout of {}s{}", timeout.as_secs_f64(), running_block(.command))]
    TimedOut {
        /// The phase.
        phase: String,
        /// The limit.
        timeout: Duration,
        /// The command running then.
        command: Option<String>,
    },

    /// The phase was cancelled (Ctrl-C) and killed.
    #[error("phase `{phase}` was cancelled{}", running_block(.command))]
    Cancelled {
        /// The phase.
        phase: String,
        /// The command running then.
        command: Option<String>,
    },

    /// The sandbox ended without saying how.
    #[error("phase `{phase}`: the sandbox ended unexpectedly ({detail})")]
    Ended {
        /// The phase.
        phase: String,
        /// What is known.
        detail: String,
    },
}

fn last_lines_block(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    format!("; its last {} lines:\n{}", lines.len(), lines.join("\n"))
}

fn running_block(command: &Option<String>) -> String {
    command
        .as_ref()
        .map(|c| format!(" while running `{c}`"))
        .unwrap_or_default()
}

fn exec_hint(errno: nix::errno::Errno) -> &'static str {
    if errno == nix::errno::Errno::ENOENT {
        " (bash or the loader and libraries it needs are missing: is the phase's whole closure bound?)"
    } else {
        ""
    }
}
