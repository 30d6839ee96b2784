//! The command line: what `kiln --help` documents, parsed with clap.
//!
//! Only parsing lives here; `crate::run` wires each subcommand to the code
//! that carries it out.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
#[command(name = "kiln", version, propagate_version = true, max_term_width = 100)]
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

/// What kiln can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the build plan for an app folder, as `nixpacks plan` does.
    ///
    /// The plan says which packages each phase needs, which commands it runs
    /// and how the app starts. It is the same JSON Nixpacks prints, so
    /// existing `nixpacks.toml` files and plans keep working.
    Plan(PlanCommand),

    /// Print the providers (languages) detected in an app folder.
    Detect(DetectCommand),

    /// Build an app folder into an OCI image.
    ///
    /// Plans the app, fetches its packages, runs its install and build
    /// phases in a rootless sandbox and packs the result. With neither
    /// `--output` nor `--push`, writes `<name>.oci.tar` in the current folder.
    Build(Box<BuildCommand>),

    /// Make an image straight from Nix packages, with no app and no build.
    Pack(PackCommand),

    /// Open a shell in the build sandbox of an app, with its packages on PATH.
    Shell(ShellCommand),

    /// Fetch Nix store paths and their closure from binary caches into
    /// kiln's store.
    Realize(RealizeCommand),

    /// Resolve the plan's packages to store paths and write `kiln.lock`.
    ///
    /// A committed `kiln.lock` lets machines without Nix build the app.
    Lock(LockCommand),

    /// Inspect or prune kiln's cache.
    Cache(CacheCommand),
}

/// Plan options shared by every subcommand that plans an app.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The app folder.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Command for the install phase, replacing the provider's.
    #[arg(short, long, value_name = "CMD")]
    pub install_cmd: Option<String>,

    /// Command for the build phase, replacing the provider's.
    #[arg(short, long, value_name = "CMD")]
    pub build_cmd: Option<String>,

    /// Command that starts the app, replacing the provider's.
    #[arg(short, long, value_name = "CMD")]
    pub start_cmd: Option<String>,

    /// Extra Nix packages for the setup phase (comma separated; repeat for more).
    #[arg(short, long, value_name = "PKGS", value_delimiter = ',')]
    pub pkgs: Vec<String>,

    /// Extra apt packages, comma separated (needs a Debian or Ubuntu base image).
    #[arg(short, long, value_name = "PKGS", value_delimiter = ',')]
    pub apt: Vec<String>,

    /// Extra Nix libraries, comma separated, added to LD_LIBRARY_PATH.
    #[arg(long, value_name = "LIBS", value_delimiter = ',')]
    pub libs: Vec<String>,

    /// Environment for the build: `KEY=VALUE`, or `KEY` to take the value
    /// from kiln's own environment. Repeat for more.
    #[arg(short, long, value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,

    /// Config file to read instead of `nixpacks.toml` / `nixpacks.json`.
    #[arg(short, long, env = "NIXPACKS_CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A JSON plan merged over the detected one.
    #[arg(long, value_name = "JSON")]
    pub json_plan: Option<String>,
}

/// `kiln plan`.
#[derive(Debug, Args)]
pub struct PlanCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    /// Output format of the plan.
    #[arg(short, long, value_enum, default_value_t = PlanFormat::Json)]
    pub format: PlanFormat,
}

/// How `kiln plan` prints the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// Nixpacks' plan JSON.
    Json,
    /// The same plan as TOML, ready to paste into `nixpacks.toml`.
    Toml,
}

/// `kiln detect`.
#[derive(Debug, Args)]
pub struct DetectCommand {
    /// The app folder.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    /// Environment seen by detection: `KEY=VALUE` or `KEY`.
    #[arg(short, long, value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
}

/// Where Nix packages come from: shared by every subcommand that resolves or
/// fetches them.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// A local nixpkgs folder to evaluate package names against, instead of
    /// the plan's nixpkgs archive.
    #[arg(long, env = "KILN_NIXPKGS", value_name = "DIR")]
    pub nixpkgs: Option<PathBuf>,

    /// Binary cache to fetch from, in order (`file://`, `http://`,
    /// `https://`). Replaces the default public NixOS cache.
    #[arg(
        long,
        env = "KILN_SUBSTITUTERS",
        value_name = "URL",
        value_delimiter = ' '
    )]
    pub substituter: Vec<String>,

    /// Public key a narinfo must be signed with (`name:base64`).
    #[arg(
        long,
        env = "KILN_TRUSTED_PUBLIC_KEYS",
        value_name = "KEY",
        value_delimiter = ' '
    )]
    pub trusted_public_key: Vec<String>,

    /// How many downloads run at once.
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub jobs: usize,
}

/// Options for how layers are written.
#[derive(Debug, Args)]
pub struct LayerArgs {
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,

    /// Compression level (gzip 1-9, zstd 1-19). Default: gzip 6, zstd 3.
    #[arg(long, value_name = "N")]
    pub compression_level: Option<u32>,

    /// Most layers the image may have; beyond it, small and rarely shared
    /// packages share layers.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub max_layers: usize,
}

/// Layer compression formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// gzip: readable by every runtime and registry.
    Gzip,
    /// zstd: faster and smaller; needs a recent runtime.
    Zstd,
}

/// Options for where an image goes.
#[derive(Debug, Args)]
pub struct OutputArgs {
    /// Image name (default: the app folder's name).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// Extra tag for the image. Repeat for more.
    #[arg(short, long, value_name = "TAG")]
    pub tag: Vec<String>,

    /// Label for the image config: `KEY=VALUE`. Repeat for more.
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,

    /// Where to write the image: `oci:DIR`, `oci-archive:FILE`,
    /// `docker-archive:FILE`, or `docker://REGISTRY/NAME:TAG`.
    #[arg(short, long, value_name = "DEST")]
    pub output: Option<String>,

    /// Push the image to a registry reference (`registry/name:tag`).
    #[arg(long, value_name = "REFERENCE")]
    pub push: Option<String>,

    /// Registry host allowed over plain HTTP or unverified TLS. Repeat for more.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Platform of the image; only the running machine's platform is built.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
}

/// How kiln talks to registries when it pushes images or pulls base images.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// User name for the registry. Without it kiln looks in
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` and
    /// docker's `config.json` (including credential helpers).
    #[arg(
        long,
        env = "KILN_REGISTRY_USERNAME",
        value_name = "USER",
        requires = "registry_password"
    )]
    pub registry_username: Option<String>,

    /// Password or token for the registry (prefer the environment variable:
    /// arguments are visible to other users of the machine).
    #[arg(
        long,
        env = "KILN_REGISTRY_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD",
        requires = "registry_username"
    )]
    pub registry_password: Option<String>,

    /// How many blobs upload at once.
    #[arg(long, default_value_t = 4, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub push_jobs: u16,

    /// Extra CA certificate (PEM) to trust for registries, besides the
    /// system's. Repeat for more.
    #[arg(long, value_name = "FILE")]
    pub registry_ca_file: Vec<PathBuf>,
}

/// `kiln build`.
#[derive(Debug, Args)]
pub struct BuildCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub layers: LayerArgs,

    /// Image to build on instead of kiln's minimal base, pulled from its
    /// registry; its layers stay the image's first. Needed for `aptPkgs`
    /// (a Debian or Ubuntu image). Overrides the plan's `buildImage`.
    #[arg(long, value_name = "REFERENCE")]
    pub base_image: Option<String>,

    /// Key that selects which build caches (`cacheDirectories`) to share.
    #[arg(long, value_name = "KEY")]
    pub cache_key: Option<String>,

    /// Start with empty build caches and save none.
    #[arg(long)]
    pub no_cache: bool,

    /// Network for build commands: the host's, or none at all.
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub network: Network,
}

/// Network access for build commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    /// The host's network, so builds can download dependencies.
    Host,
    /// A fresh network namespace with nothing in it.
    None,
}

impl From<Network> for crate::sandbox::Network {
    fn from(network: Network) -> Self {
        match network {
            Network::Host => Self::Host,
            Network::None => Self::None,
        }
    }
}

/// `kiln pack`.
#[derive(Debug, Args)]
pub struct PackCommand {
    /// Nix packages to put in the image: store paths (`/nix/store/...`), or
    /// attribute names looked up in `--nixpkgs`.
    #[arg(required = true, value_name = "PATH_OR_ATTRIBUTE")]
    pub packages: Vec<String>,

    /// Command the image runs, through `/bin/bash -l -c` as Nixpacks images
    /// do (`/bin/sh -c` when the packages have no bash).
    #[arg(long, value_name = "CMD")]
    pub cmd: Option<String>,

    /// Entrypoint, one argument per flag (`--entrypoint node --entrypoint
    /// server.js`); with it, `--cmd` is passed as its one argument.
    #[arg(long, value_name = "ARG")]
    pub entrypoint: Vec<String>,

    /// Environment of the image: `KEY=VALUE`. Repeat for more.
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,

    /// Read the closure from FILE (`nix-store --dump-db` output) instead of
    /// asking the host's Nix, for users without access to its database.
    #[arg(long, value_name = "FILE")]
    pub closure: Option<PathBuf>,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub layers: LayerArgs,
}

/// `kiln shell`.
///
/// Until kiln can plan, the shell's packages are the store paths given with
/// `--store-path` (the whole closure, e.g. from `nix-store -qR`); the app
/// folder appears at `/app`, copy-on-write, and what the commands write is
/// thrown away unless `--upper` keeps it.
#[derive(Debug, Args)]
pub struct ShellCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    /// A store path to mount read-only at its place in `/nix/store`. Repeat
    /// for every path of the closure: no other store path is visible. Their
    /// `bin` folders go on PATH and the first `bin/bash` runs the commands.
    #[arg(long = "store-path", value_name = "STORE_PATH")]
    pub store_paths: Vec<PathBuf>,

    /// A root folder under the app (base files, an earlier phase's upper
    /// folder). Repeat, lowest first.
    #[arg(long, value_name = "DIR")]
    pub base: Vec<PathBuf>,

    /// Keep what the commands write (the overlay's upper folder: new and
    /// changed files, whiteouts for deletions) in this empty folder instead
    /// of throwing it away; writes under `/app`, the app folder shown
    /// copy-on-write, are not kept. It never goes into an image.
    #[arg(long, value_name = "DIR")]
    pub upper: Option<PathBuf>,

    /// Network for the commands: the host's, or none at all.
    #[arg(long, value_enum, default_value_t = Network::Host)]
    pub network: Network,

    /// Kill the shell and everything it started after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub phase_timeout: Option<u64>,

    /// Command to run instead of an interactive bash (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// `kiln realize`.
#[derive(Debug, Args)]
pub struct RealizeCommand {
    /// Store paths (`/nix/store/<hash>-<name>`) or nixpkgs attribute names
    /// (`nodejs_18`, `stdenv.cc.cc.lib`) to fetch with their closure.
    /// Attributes are resolved with `--lock`, else with nix-instantiate.
    #[arg(required = true, value_name = "PATH_OR_ATTRIBUTE")]
    pub paths: Vec<String>,

    #[command(flatten)]
    pub store: StoreArgs,

    /// Lock file that resolves attribute names (read only; `kiln lock`
    /// writes it).
    #[arg(long, default_value = "kiln.lock", value_name = "FILE")]
    pub lock: PathBuf,

    /// Accept narinfo files no trusted key signed. Dangerous: a cache (or
    /// anyone between you and it) can then serve any files it likes.
    #[arg(long)]
    pub no_verify: bool,

    /// Download every path into kiln's store even when the host's
    /// /nix/store already has it.
    #[arg(long)]
    pub ignore_host_store: bool,
}

/// `kiln lock`.
#[derive(Debug, Args)]
pub struct LockCommand {
    #[command(flatten)]
    pub plan: PlanArgs,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// `kiln cache`.
#[derive(Debug, Args)]
pub struct CacheCommand {
    #[command(subcommand)]
    pub action: CacheAction,
}

/// What to do with the cache.
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Show where the cache is and how much each part of it holds.
    Info,
    /// Remove realized store paths no recent build used, and what
    /// interrupted runs left. Paths a running kiln holds are kept.
    Prune {
        /// Remove entries not used for this many days (0: every unused one).
        #[arg(long, default_value_t = 30, value_name = "DAYS")]
        older_than: u32,
    },
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
