//! Which Nix evaluates package names: the host's `nix-instantiate` when
//! there is one, else a Nix kiln realizes itself from the binary caches by
//! a pinned store path, so a machine with no Nix at all can still resolve.
//! Either runs in the sandbox (see [`super::sandboxed`]).

use std::path::{Path, PathBuf};

use kiln_store::NoProgress;

use super::packages::{realize, PackageSources, Wanted};
use super::sandboxed::NixEvaluator;

/// Nix releases by system, the store paths Nix's own `upgrade-nix` falls
/// back to (nixpkgs' `nixos/modules/installer/tools/nix-fallback-paths.nix`,
/// Nix 2.31.2), all in the public NixOS cache.
const FALLBACK_PATHS: [(&str, &str); 2] = [
    (
        "x86_64-linux",
        "/nix/store/x30lnlgk1s16rynrfslbf8phr6h6rqf2-nix-2.31.2",
    ),
    (
        "aarch64-linux",
        "/nix/store/xnybj9lk0kwvmr2va253avanq7m3cpyg-nix-2.31.2",
    ),
];

/// Which Nix evaluator resolution may run.
#[derive(Debug, Clone)]
pub enum Evaluator {
    /// `nix-instantiate` from `PATH`, else the Nix at the fallback store
    /// path realized from the caches (none: only the lock answers).
    Auto(Option<StoreEvaluator>),
    /// This host program.
    Program(PathBuf),
    /// The Nix at this store path, realized from the caches
    /// (`--evaluator`, `KILN_EVALUATOR`).
    Store(StoreEvaluator),
    /// None: only the lock answers.
    Disabled,
}

/// A Nix to realize from the binary caches and run.
#[derive(Debug, Clone)]
pub struct StoreEvaluator {
    /// Its store path (`/nix/store/<hash>-nix-<version>`).
    pub nix: String,
    /// The caches and keys its closure is fetched and checked with.
    pub sources: PackageSources,
    /// kiln's cache folder, whose store receives it.
    pub cache_root: PathBuf,
}

impl Evaluator {
    /// The evaluator `sources` ask for: `--evaluator` when given, else the
    /// host's, else the fallback release for this system.
    pub fn for_sources(sources: &PackageSources, cache_root: &Path) -> Evaluator {
        let store = |nix: String| StoreEvaluator {
            nix,
            sources: sources.clone(),
            cache_root: cache_root.to_path_buf(),
        };
        match &sources.evaluator {
            Some(nix) => Evaluator::Store(store(nix.clone())),
            None => Evaluator::Auto(fallback_path(&super::current_system()).map(store)),
        }
    }

    /// The evaluator, ready to run; `None` when there is none to run, an
    /// error saying why one could not be had. A Nix from the caches is
    /// fetched (and its signatures checked) here, only when an evaluation
    /// is needed.
    pub fn find(&self) -> Result<Option<NixEvaluator>, String> {
        let host = |program: &Path| {
            NixEvaluator::host(program)
                .map_err(|err| format!("the evaluator {} cannot run: {err}", program.display()))
        };
        match self {
            Evaluator::Disabled => Ok(None),
            Evaluator::Program(program) => host(program).map(Some),
            Evaluator::Store(store) => store.realize().map(Some),
            Evaluator::Auto(fallback) => match host_nix_instantiate() {
                Some(program) => host(&program).map(Some),
                None => fallback.as_ref().map(StoreEvaluator::realize).transpose(),
            },
        }
    }
}

impl StoreEvaluator {
    /// Fetches this Nix with its closure into kiln's store.
    fn realize(&self) -> Result<NixEvaluator, String> {
        let failed = |message: String| format!("the evaluator {} {message}", self.nix);
        let wanted = Wanted {
            profile: vec![self.nix.clone()],
            roots: vec![self.nix.clone()],
            ..Wanted::default()
        };
        let packages = realize(&wanted, &self.sources, &self.cache_root, &NoProgress)
            .map_err(|err| failed(format!("could not be fetched ({err:#})")))?;
        let evaluator = NixEvaluator::from_store(&self.nix, packages.store_binds());
        let program = packages
            .roots
            .first()
            .map(|root| root.local.join("bin/nix-instantiate"));
        if !program.is_some_and(|p| p.exists()) {
            return Err(failed(
                "has no bin/nix-instantiate; --evaluator must name a Nix package".into(),
            ));
        }
        Ok(evaluator)
    }
}

/// The fallback Nix release for `system`, if kiln knows one.
fn fallback_path(system: &str) -> Option<String> {
    FALLBACK_PATHS
        .iter()
        .find(|(name, _)| *name == system)
        .map(|(_, path)| path.to_string())
}

/// `nix-instantiate` on `PATH`, if any.
fn host_nix_instantiate() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nix-instantiate"))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            candidate
                .metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_systems_have_a_fallback_nix() {
        let path = fallback_path("x86_64-linux").unwrap();
        assert!(kiln_store::parse_store_path(&path).is_ok(), "{path}");
        assert!(fallback_path("aarch64-linux").is_some());
        assert!(fallback_path("sparc-plan9").is_none());
    }

    #[test]
    fn no_host_program_is_a_clear_error() {
        let err = Evaluator::Program("/nonexistent/nix-instantiate".into())
            .find()
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/nix-instantiate"), "{err}");
    }
}
