//! The rootless build sandbox: runs a phase's commands in new user, mount,
//! pid, ipc and uts namespaces (and, on request, an empty network
//! namespace), over an overlay root, and hands back the overlay's upper
//! folder as that phase's diff.
//!
//! Inside, the commands are uid 0 mapped to the caller. The root is an
//! overlay of the given lower folders; each store path of the phase's
//! closure is bound read-only at `/nix/store/<name>` and no other is
//! visible; cache folders are bound read-write and never captured; `/proc`,
//! a minimal `/dev`, `/tmp` and the host's `resolv.conf` and `hosts` are
//! mounted on top. The mount points live in a lower layer of the sandbox's
//! own, so the upper folder holds only what the commands wrote: new and
//! changed files, whiteouts (character devices 0:0) for deletions and
//! directories marked opaque (`user.overlay.opaque=y`) where a directory was
//! replaced. Every mount lives in the sandbox's mount namespace and every
//! process in its pid namespace, so both vanish with it, also when a command
//! fails or the phase is killed.

mod cache_dirs;
mod caps;
mod child;
mod env;
mod error;
mod hide;
mod host_trust;
mod idmap;
mod interrupt;
mod mounts;
mod output;
pub mod preflight;
mod protocol;
mod quote;
mod run;
mod scratch;
mod validate;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

pub use cache_dirs::{app_cache_key, cache_binds};
pub use env::{add_unset, phase_environment, PhaseEnvironment, DEFAULT_PATH};
pub use error::SandboxError;
pub use host_trust::{CaChoice, HostTrust, CA_BUNDLE_INSIDE, CA_VARIABLES, PROXY_VARIABLES};
pub use interrupt::{cancel_on_interrupt, forward_interrupts};
pub use output::Output;
pub use quote::shell_quote;

/// A store path made visible, read-only, at `/nix/store/<name>`. A store
/// path that is itself a symlink (a NAR whose root is a link) is shown as
/// the same link inside the sandbox, never bound: a bind would follow it
/// to whatever it names on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreBind {
    /// The folder (or file) on the host, e.g. in kiln's store.
    pub host: PathBuf,
    /// `<hash>-<name>`.
    pub name: String,
}

/// A host folder made visible at a place inside the sandbox: read-write
/// for caches (kept for the next build, never captured), read-only for
/// [`Sandbox::read_only`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderBind {
    /// The folder on the host.
    pub host: PathBuf,
    /// Absolute path inside the sandbox.
    pub inside: PathBuf,
}

/// Network access of the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network, so builds can download dependencies.
    #[default]
    Host,
    /// A fresh network namespace with nothing in it.
    None,
}

/// One phase to run: its inputs and where its diff goes.
pub struct Sandbox {
    /// Phase name: the prefix of its output lines and the subject of errors.
    pub name: String,
    /// Root folders stacked under the phase, lowest first: the base files,
    /// the app files, earlier phases' diffs.
    pub lowers: Vec<PathBuf>,
    /// The empty folder that receives this phase's diff. It must be on a
    /// filesystem with user xattrs, and kiln creates a work folder beside it.
    pub upper: PathBuf,
    /// The phase's whole closure; no other store path is visible.
    pub store_paths: Vec<StoreBind>,
    /// Cache folders (see [`cache_binds`]).
    pub caches: Vec<FolderBind>,
    /// Host folders bound read-only at their place inside (a host
    /// program's files, a source tree a tool reads); nothing under them can
    /// be written.
    pub read_only: Vec<FolderBind>,
    /// A host folder shown at `/app` copy-on-write, whose changes are thrown
    /// away (`kiln shell`); builds put the app in `lowers` instead.
    pub app_source: Option<PathBuf>,
    /// The whole environment of the commands (see [`phase_environment`]).
    pub env: Vec<(String, String)>,
    /// Working directory of the commands.
    pub workdir: PathBuf,
    /// The closure's bash, which runs each command with `-c`.
    pub bash: PathBuf,
    /// The commands, run in order until one fails.
    pub commands: Vec<String>,
    /// Instead of the commands through bash, this program with these
    /// arguments, run once with no shell (see [`Sandbox::program`]).
    pub argv: Option<Vec<String>>,
    /// Network access.
    pub network: Network,
    /// The whole phase is killed after this long.
    pub timeout: Option<Duration>,
    /// Where the commands' output goes.
    pub output: Output,
    /// Set to true (from a Ctrl-C handler, say) to kill the phase.
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Sandbox {
    /// A phase named `name` running `commands` with `bash`, writing its diff
    /// to `upper`; no lowers, store paths or caches yet, working directory
    /// `/app`, host network, no timeout, output prefixed on stderr.
    pub fn new(name: &str, bash: PathBuf, upper: PathBuf, commands: Vec<String>) -> Sandbox {
        Sandbox {
            name: name.to_string(),
            lowers: Vec::new(),
            upper,
            store_paths: Vec::new(),
            caches: Vec::new(),
            read_only: Vec::new(),
            app_source: None,
            env: Vec::new(),
            workdir: PathBuf::from("/app"),
            bash,
            commands,
            argv: None,
            network: Network::Host,
            timeout: None,
            output: Output::prefixed_stderr(name),
            cancel: None,
        }
    }

    /// A run named `name` of one program with no shell: `argv[0]` is its
    /// absolute path inside the sandbox, in a bound store path or a
    /// read-only folder. For tools whose closure has no bash (a Nix
    /// evaluator). Otherwise as [`Sandbox::new`].
    pub fn program(name: &str, argv: Vec<String>, upper: PathBuf) -> Sandbox {
        let program = PathBuf::from(argv.first().cloned().unwrap_or_default());
        Sandbox {
            argv: Some(argv),
            ..Sandbox::new(name, program, upper, Vec::new())
        }
    }

    /// The argument lists run, in order: each command through bash, or the
    /// one program.
    pub fn argvs(&self) -> Vec<Vec<String>> {
        match &self.argv {
            Some(argv) => vec![argv.clone()],
            None => self
                .commands
                .iter()
                .map(|command| {
                    vec![
                        self.bash.display().to_string(),
                        "-c".to_string(),
                        command.clone(),
                    ]
                })
                .collect(),
        }
    }

    /// Runs the phase. On success the upper folder holds its diff; on any
    /// failure the error says which phase, step or command and why. Either
    /// way no mount, process or temporary folder of the sandbox is left.
    pub fn run(self) -> Result<PhaseDiff, SandboxError> {
        run::run(self)
    }
}

/// The diff a successful phase left in its upper folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseDiff {
    /// The upper folder, in overlay format (whiteout devices, opaque xattrs).
    pub upper: PathBuf,
}
