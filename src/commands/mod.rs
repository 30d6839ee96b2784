//! The command line: what `kiln --help` documents, one file per subcommand.
//!
//! Each subcommand's file holds its flags (clap) and a `run` that turns
//! them into the plain option structs the stages take, calls the stages and
//! prints the result through [`crate::report`]. Flags several subcommands
//! share live in [`args`]. Nothing below this module knows the command line.

pub mod args;
pub mod build;
pub mod cache;
pub mod detect;
pub mod keygen;
pub mod lock;
pub mod pack;
pub mod plan;
pub mod realize;
pub mod sbom;
pub mod shell;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

/// Build OCI container images from application source, with no Docker daemon
/// and no root.
///
/// kiln detects your app's language the way Nixpacks does (and reads the same
/// `nixpacks.toml`), fetches the Nix packages the plan needs straight from Nix
/// binary caches, runs the build commands in a rootless sandbox, and packs one
/// layer per package, so images are small, rebuilds are fast and the same
/// input always gives the same digest.
///
/// Typical use:
///
///   kiln plan .                          show what kiln will do
///
///   kiln build . --name app              build ./ into app.oci.tar
///
///   kiln build . --push registry.example/app:1.0
#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("KILN_COMMIT"), ")"),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Say more about what kiln is doing (-v info, -vv debug, -vvv trace).
    /// `RUST_LOG` overrides this when set.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Print only errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print the result as JSON on stdout, for scripts.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where kiln keeps realized store paths, layer blobs and build caches.
    /// Default: `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`.
    #[arg(long, global = true, env = "KILN_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

impl GlobalArgs {
    /// kiln's cache folder: `--cache-dir`, else the default; created 0700
    /// when missing, since it holds the builder's files.
    pub fn cache_root(&self) -> anyhow::Result<PathBuf> {
        let root = crate::cache::cache_dir(self.cache_dir.as_deref())?;
        crate::cache::create_private_root(&root)
            .with_context(|| format!("could not create the cache folder {}", root.display()))?;
        Ok(root)
    }
}

/// What kiln can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build plan for an app folder, as `nixpacks plan` does.
    ///
    /// The plan says which packages each phase needs, which commands it runs
    /// and how the app starts. It is the same JSON Nixpacks prints, so
    /// existing `nixpacks.toml` files and plans keep working.
    Plan(plan::PlanCommand),

    /// Print the providers (languages) detected in an app folder.
    Detect(detect::DetectCommand),

    /// Build an app folder into an OCI image.
    ///
    /// Plans the app, fetches its packages, runs its install and build
    /// phases in a rootless sandbox and packs the result. With neither
    /// `--output` nor `--push`, writes `<name>.oci.tar` in the current folder.
    Build(Box<build::BuildCommand>),

    /// Make an image straight from Nix packages, with no app and no build.
    ///
    /// The packages are resolved and fetched the way `kiln build` fetches a
    /// plan's: from `kiln.lock` or an evaluation, then from the binary
    /// caches; no Nix needs to be installed when the lock names them.
    Pack(Box<pack::PackCommand>),

    /// Open a shell (or run a command) in the build sandbox of an app,
    /// with the packages and environment its plan gives the phases.
    Shell(Box<shell::ShellCommand>),

    /// Fetch Nix store paths and their closure from binary caches into
    /// kiln's store.
    Realize(realize::RealizeCommand),

    /// Resolve the plan's packages to store paths and write `kiln.lock`.
    ///
    /// A committed `kiln.lock` lets machines without Nix build the app.
    Lock(lock::LockCommand),

    /// Inspect or prune kiln's cache.
    Cache(cache::CacheCommand),

    /// Print the SBOM kiln attached to an image it built.
    ///
    /// Reads the SPDX document from the image's OCI 1.1 referrers: in an
    /// `oci:` layout or `oci-archive:` file, the artifact listed in
    /// `index.json` whose subject is the image; in a registry, the one
    /// listed under the image's referrers tag (`sha256-<hex>`). Digests are
    /// checked on the way.
    Sbom(sbom::SbomCommand),

    /// Write an ECDSA P-256 key pair for `--sign-key`.
    ///
    /// Images pushed with `--sign-key PREFIX.key` are signed in cosign's
    /// format; `cosign verify --key PREFIX.pub` and `sigstoreSigned`
    /// policies with `keyPath: PREFIX.pub` check them.
    Keygen(keygen::KeygenCommand),
}

/// A command line kiln cannot act on; ends kiln with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Exit code for a finished run: 0 ok, 1 the work failed, 2 usage.
pub fn exit_code(result: &anyhow::Result<()>) -> i32 {
    match result {
        Ok(()) => 0,
        Err(err) if err.is::<UsageError>() => 2,
        Err(_) => 1,
    }
}

/// Carries out one parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let global = &cli.global;
    match &cli.command {
        Command::Plan(command) => plan::run(command),
        Command::Detect(command) => detect::run(command),
        Command::Build(command) => build::run(global, command),
        Command::Pack(command) => pack::run(global, command),
        Command::Shell(command) => shell::run(global, command),
        Command::Realize(command) => realize::run(global, command),
        Command::Lock(command) => lock::run(global, command),
        Command::Cache(command) => cache::run(global, command),
        Command::Sbom(command) => sbom::run(command),
        Command::Keygen(command) => keygen::run(command),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn pkgs_accept_commas_and_repeats() {
        let cli = Cli::try_parse_from(["kiln", "plan", "app", "-p", "a,b", "-p", "c"]).unwrap();
        let Command::Plan(plan) = cli.command else {
            panic!("parsed as another subcommand");
        };
        assert_eq!(plan.plan.pkgs, ["a", "b", "c"]);
        assert_eq!(plan.plan.dir, PathBuf::from("app"));
    }

    #[test]
    fn quiet_and_verbose_conflict() {
        let err = Cli::try_parse_from(["kiln", "-q", "-v", "detect"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }
}
