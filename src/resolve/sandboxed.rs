//! Running the Nix evaluator inside kiln's rootless sandbox, because the
//! expression imports what an app's config names (overlays) and the app is
//! untrusted: no network, an environment holding only what Nix needs, the
//! nixpkgs folder and overlays read-only, Nix's own `restrict-eval` on top,
//! its state on the sandbox's private `/tmp`, and nothing else of the host
//! (no home, no app files, no kiln secrets) visible.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::sandbox::{FolderBind, Network, Output, Sandbox, SandboxError, StoreBind};

/// Where the nixpkgs folder appears inside the sandbox.
pub const NIXPKGS_INSIDE: &str = "/nixpkgs";

/// Where overlays appear inside the sandbox (`/overlays/<n>.nix`, or a
/// folder `/overlays/<n>`).
pub const OVERLAYS_INSIDE: &str = "/overlays";

/// Where the plan's package expressions appear inside the sandbox, one file
/// each (`/expressions/<n>.nix`).
pub const EXPRESSIONS_INSIDE: &str = "/expressions";

/// A Nix evaluator and the files it needs, ready to run in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NixEvaluator {
    /// `nix-instantiate` as the sandbox sees it.
    pub program: PathBuf,
    /// The store paths of its closure (a Nix realized from the caches).
    pub store_paths: Vec<StoreBind>,
    /// Host folders it needs, read-only (a host Nix's `/usr`).
    pub host_folders: Vec<FolderBind>,
    /// Top-level links of the host the program's loader and libraries are
    /// reached through (`lib64 -> usr/lib64` on merged-/usr systems).
    pub host_links: Vec<(String, PathBuf)>,
}

/// Top-level folders a host program and its libraries live under.
const HOST_PROGRAM_FOLDERS: [&str; 7] = ["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"];

impl NixEvaluator {
    /// The host's `nix-instantiate` at `path`: a Nix in the host's
    /// `/nix/store` (the store is shown read-only), or a distribution's
    /// (its `/usr` and library folders are shown read-only, nothing else).
    pub fn host(path: &Path) -> std::io::Result<NixEvaluator> {
        let real = path.canonicalize()?;
        // Nix is one program that acts on the name it is started by: the
        // `nix-instantiate` link beside the real file, which the folders
        // bound below hold (a link elsewhere, in a profile say, may not be).
        let beside = real.with_file_name("nix-instantiate");
        let program = match beside.exists() {
            true => beside,
            false => real.clone(),
        };
        if real.starts_with("/nix/store") {
            return Ok(NixEvaluator {
                program,
                store_paths: Vec::new(),
                host_folders: vec![FolderBind {
                    host: PathBuf::from("/nix/store"),
                    inside: PathBuf::from("/nix/store"),
                }],
                host_links: Vec::new(),
            });
        }
        let mut host_folders = Vec::new();
        let mut host_links = Vec::new();
        for name in HOST_PROGRAM_FOLDERS {
            let host = Path::new("/").join(name);
            match host.symlink_metadata() {
                Ok(meta) if meta.file_type().is_symlink() => {
                    host_links.push((name.to_string(), std::fs::read_link(&host)?));
                }
                Ok(meta) if meta.is_dir() => host_folders.push(FolderBind {
                    inside: host.clone(),
                    host,
                }),
                _ => {}
            }
        }
        Ok(NixEvaluator {
            program,
            store_paths: Vec::new(),
            host_folders,
            host_links,
        })
    }

    /// `nix-instantiate` of the Nix at store path `nix` whose closure is
    /// `closure` (realized by kiln).
    pub fn from_store(nix: &str, closure: Vec<StoreBind>) -> NixEvaluator {
        NixEvaluator {
            program: Path::new(nix).join("bin/nix-instantiate"),
            store_paths: closure,
            host_folders: Vec::new(),
            host_links: Vec::new(),
        }
    }
}

/// What one evaluation reads: the nixpkgs folder and the overlays, as host
/// paths.
pub struct EvaluationFiles<'a> {
    /// The nixpkgs folder.
    pub nixpkgs: &'a Path,
    /// Overlay files or folders, in order.
    pub overlays: &'a [PathBuf],
    /// The texts of the package expression files, in order.
    pub expressions: &'a [String],
}

impl EvaluationFiles<'_> {
    /// The overlays as the sandbox sees them.
    pub fn overlays_inside(&self) -> Vec<String> {
        self.overlays
            .iter()
            .enumerate()
            .map(|(index, overlay)| match overlay.is_dir() {
                true => format!("{OVERLAYS_INSIDE}/{index}"),
                false => format!("{OVERLAYS_INSIDE}/{index}.nix"),
            })
            .collect()
    }
}

/// Runs `evaluator` on `expression` in a sandbox whose scratch folders go
/// under `work` (a folder on a filesystem with user xattrs: kiln's cache).
/// Returns the JSON line Nix printed, or what went wrong (Nix's last lines
/// when it failed).
pub fn run(
    evaluator: &NixEvaluator,
    files: &EvaluationFiles<'_>,
    expression: &str,
    work: &Path,
) -> Result<String, String> {
    let io = |e: std::io::Error| {
        format!(
            "could not prepare the evaluation in {}: {e}",
            work.display()
        )
    };
    let scratch = crate::cache::records::WorkDir::new(work, "eval-").map_err(io)?;
    let sandbox = sandbox(evaluator, files, expression, scratch.path()).map_err(io)?;
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    let mut sandbox = sandbox;
    sandbox.output = Output::Lines(Box::new(move |line| {
        if let Ok(mut lines) = sink.lock() {
            lines.push(line.to_string());
        }
    }));
    let outcome = sandbox.run();
    let lines = std::mem::take(&mut *lines.lock().unwrap_or_else(|e| e.into_inner()));
    match outcome {
        Ok(_) => lines
            .iter()
            .rev()
            .find(|line| line.starts_with('{'))
            .cloned()
            .ok_or_else(|| format!("Nix printed no result: {}", last_lines(&lines))),
        Err(SandboxError::CommandFailed { .. }) => Err(last_lines(&lines)),
        Err(other) => Err(other.to_string()),
    }
}

/// Nix's error: from its last `error:` line on (what went wrong, then
/// where; newer Nix indents the innermost one under its context), else its
/// last lines; at most [`ERROR_LINES`].
fn last_lines(lines: &[String]) -> String {
    let start = lines
        .iter()
        .rposition(|line| line.trim_start().starts_with("error:"))
        .unwrap_or(lines.len().saturating_sub(6));
    let end = lines.len().min(start + ERROR_LINES);
    lines[start..end].join("\n")
}

/// The most lines of Nix's error kept in kiln's message.
const ERROR_LINES: usize = 20;

/// The sandbox of one evaluation, its folders under `scratch`.
fn sandbox(
    evaluator: &NixEvaluator,
    files: &EvaluationFiles<'_>,
    expression: &str,
    scratch: &Path,
) -> std::io::Result<Sandbox> {
    let lower = scratch.join("lower");
    std::fs::create_dir(&lower)?;
    for (name, target) in &evaluator.host_links {
        std::os::unix::fs::symlink(target, lower.join(name))?;
    }
    let upper = scratch.join("upper");
    std::fs::create_dir(&upper)?;

    let mut read_only = evaluator.host_folders.clone();
    read_only.push(FolderBind {
        host: files.nixpkgs.to_path_buf(),
        inside: PathBuf::from(NIXPKGS_INSIDE),
    });
    for (overlay, inside) in files.overlays.iter().zip(files.overlays_inside()) {
        read_only.push(FolderBind {
            host: overlay.clone(),
            inside: PathBuf::from(inside),
        });
    }
    let mut argv: Vec<String> = vec![
        evaluator.program.display().to_string(),
        "--eval".into(),
        "--strict".into(),
        "--json".into(),
        // Computing store paths writes nothing: Nix's in-memory store is
        // enough, and no store of the host is touched.
        "--readonly-mode".into(),
        "--store".into(),
        "dummy://".into(),
        "--option".into(),
        "restrict-eval".into(),
        "true".into(),
        // Nothing can be built here, and a plan's overlay must not make
        // the evaluation wait on a build.
        "--option".into(),
        "allow-import-from-derivation".into(),
        "false".into(),
        "-I".into(),
        NIXPKGS_INSIDE.into(),
    ];
    if !files.overlays.is_empty() {
        argv.extend(["-I".into(), OVERLAYS_INSIDE.into()]);
    }
    if !files.expressions.is_empty() {
        let folder = scratch.join("expressions");
        std::fs::create_dir(&folder)?;
        for (index, text) in files.expressions.iter().enumerate() {
            std::fs::write(folder.join(format!("{index}.nix")), text)?;
        }
        read_only.push(FolderBind {
            host: folder,
            inside: PathBuf::from(EXPRESSIONS_INSIDE),
        });
        argv.extend(["-I".into(), EXPRESSIONS_INSIDE.into()]);
    }
    argv.extend(["-E".into(), expression.to_string()]);

    let mut sandbox = Sandbox::program("evaluate", argv, upper);
    sandbox.lowers = vec![lower];
    sandbox.store_paths = evaluator.store_paths.clone();
    sandbox.read_only = read_only;
    sandbox.env = environment();
    sandbox.workdir = PathBuf::from("/tmp");
    sandbox.network = Network::None;
    Ok(sandbox)
}

/// Only what Nix needs: somewhere to keep its (throwaway) state and
/// settings, all on the sandbox's private `/tmp`; no `NIX_PATH`, no proxy,
/// no credentials.
fn environment() -> Vec<(String, String)> {
    [
        ("HOME", "/tmp"),
        ("NIX_CONF_DIR", "/tmp/nix-conf"),
        ("NIX_STATE_DIR", "/tmp/nix-state"),
        ("NIX_LOG_DIR", "/tmp/nix-log"),
        ("XDG_CACHE_HOME", "/tmp/cache"),
        ("XDG_CONFIG_HOME", "/tmp/config"),
        ("XDG_DATA_HOME", "/tmp/data"),
        ("PATH", "/nonexistent"),
    ]
    .map(|(key, value)| (key.to_string(), value.to_string()))
    .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn the_error_starts_at_nix_s_innermost_error_line() {
        let old_style = lines("warning: x\nerror: undefined variable 'php81'\n\n       at /e/0.nix:2:1:\n\n            1| pkgs: with pkgs;\n            2| (php81)\n             | ^");
        assert!(last_lines(&old_style).starts_with("error: undefined variable 'php81'"));
        let nested = lines(
            "error:\n       … while evaluating\n\n       error: attribute 'x' missing\n       at y",
        );
        assert_eq!(
            last_lines(&nested),
            "       error: attribute 'x' missing\n       at y"
        );
        let plain = lines("1\n2\n3\n4\n5\n6\n7");
        assert_eq!(last_lines(&plain), "2\n3\n4\n5\n6\n7");
        let long: Vec<String> = std::iter::once("error: e".to_string())
            .chain((0..50).map(|n| n.to_string()))
            .collect();
        assert_eq!(last_lines(&long).lines().count(), ERROR_LINES);
    }
}
