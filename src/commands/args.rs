//! Flags several subcommands share, and how each group becomes the plain
//! options a stage takes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use kiln_providers::{Environment, GeneratePlanOptions, PlanFlags};

use super::UsageError;
use crate::layer::{Format, PackSettings};
use crate::pipeline::{CacheRepoOptions, Delivery, ImageOptions, Target};
use crate::registry::{Credentials, Platform, RegistryConfig};
use crate::resolve::PackageSources;
use crate::sandbox::{CaChoice, HostTrust};
use crate::sbom::SbomFormat;
use crate::sign::Key;

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

    #[command(flatten)]
    pub env: EnvArgs,

    /// Config file to read instead of `nixpacks.toml` / `nixpacks.json`.
    #[arg(short, long, env = "NIXPACKS_CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// A JSON plan merged over the detected one.
    #[arg(long, value_name = "JSON")]
    pub json_plan: Option<String>,
}

impl PlanArgs {
    /// The plan options these flags describe.
    pub fn options(&self) -> anyhow::Result<GeneratePlanOptions> {
        let flags = PlanFlags {
            install_cmd: self.install_cmd.clone(),
            build_cmd: self.build_cmd.clone(),
            start_cmd: self.start_cmd.clone(),
            pkgs: self.pkgs.clone(),
            apt: self.apt.clone(),
            libs: self.libs.clone(),
            json_plan: self.json_plan.clone(),
        };
        Ok(GeneratePlanOptions {
            env: self.env.environment()?,
            config_file: self.config.clone(),
            cli_plan: flags.to_plan()?,
        })
    }

    /// Plans the app folder, warning about what the plan ignored and the
    /// `--env` names kiln's environment lacks.
    pub fn generate(&self) -> anyhow::Result<kiln_providers::GeneratedPlan> {
        self.env.warn_missing();
        let generated = kiln_providers::generate(&self.dir, &self.options()?)
            .with_context(|| format!("could not plan {}", self.dir.display()))?;
        for warning in &generated.warnings {
            tracing::warn!("{warning}");
        }
        Ok(generated)
    }
}

/// The host's TLS trust for build commands: `--ca-file`, `--no-host-ca`.
#[derive(Debug, Args)]
pub struct TrustArgs {
    /// CA bundle (PEM) that build commands trust, bound read-only at
    /// /run/kiln/ca-certificates.crt with SSL_CERT_FILE, PIP_CERT,
    /// NODE_EXTRA_CA_CERTS and the like pointing at it. Default: the host's
    /// (SSL_CERT_FILE, else the system bundle), so a network that re-signs
    /// TLS with a company CA works as it does on the host. Never in the
    /// image.
    #[arg(long, value_name = "FILE", conflicts_with = "no_host_ca")]
    pub ca_file: Option<PathBuf>,

    /// Give build commands no CA bundle of the host's: each tool trusts
    /// only its own roots.
    #[arg(long)]
    pub no_host_ca: bool,
}

impl TrustArgs {
    /// The bundle chosen and kiln's own proxy variables.
    pub fn trust(&self) -> anyhow::Result<HostTrust> {
        let choice = match (&self.ca_file, self.no_host_ca) {
            (_, true) => CaChoice::Off,
            (Some(file), false) => CaChoice::File(file.clone()),
            (None, false) => CaChoice::Host,
        };
        HostTrust::from_host(&choice)
    }
}

/// `--env`: one rule for what the plan sees and what the phases run with.
#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Environment for the build: `KEY=VALUE`, or `KEY` (or `KEY=`) to
    /// take the value from kiln's own environment. Repeat for more.
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub values: Vec<String>,
}

impl EnvArgs {
    /// The variables, read as upstream Nixpacks reads them: `KEY` and
    /// `KEY=` take kiln's own value and are left out when kiln has none
    /// (see [`EnvArgs::warn_missing`]); a value with no name is a usage
    /// error.
    pub fn environment(&self) -> anyhow::Result<Environment> {
        if let Some(item) = self.values.iter().find(|item| name_of(item).is_empty()) {
            return Err(UsageError(format!("--env {item:?} has no name before `=`")).into());
        }
        Ok(Environment::from_args(&self.values, |name| {
            std::env::var(name).ok()
        }))
    }

    /// Warns, once per command, of each `KEY` (or `KEY=`) that kiln's own
    /// environment lacks: the build does not get it. The values are read
    /// more than once (the plan, the sandbox), the warning is not.
    pub fn warn_missing(&self) {
        for item in &self.values {
            let name = name_of(item);
            let borrowed = !item.contains('=') || item.ends_with('=');
            if borrowed && !name.is_empty() && std::env::var_os(name).is_none() {
                tracing::warn!(
                    "--env {item}: kiln's environment has no {name}, so the build does not get it; use {name}=VALUE"
                );
            }
        }
    }

    /// The variables as `(name, value)` pairs, for the sandbox.
    pub fn pairs(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(self
            .environment()?
            .variables()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// The variable name of a `--env` item (`KEY`, `KEY=`, `KEY=VALUE`).
fn name_of(item: &str) -> &str {
    item.split_once('=').map_or(item, |(name, _)| name)
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

    /// Download every path into kiln's store even when the host's
    /// /nix/store already has it.
    #[arg(long)]
    pub ignore_host_store: bool,

    /// The Nix that evaluates package names, by store path: fetched from
    /// the binary caches with its closure and signatures checked, and run
    /// in the sandbox. Default: the host's `nix-instantiate` when there is
    /// one, else a pinned Nix release from the caches.
    #[arg(long, env = "KILN_EVALUATOR", value_name = "STORE_PATH")]
    pub evaluator: Option<String>,
}

impl StoreArgs {
    /// The package sources these flags name; `--nixpkgs` made absolute
    /// (evaluation runs in another folder).
    pub fn sources(&self) -> anyhow::Result<PackageSources> {
        let non_empty = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let nixpkgs = self
            .nixpkgs
            .as_ref()
            .map(|dir| {
                dir.canonicalize()
                    .with_context(|| format!("--nixpkgs {}: no such folder", dir.display()))
            })
            .transpose()?;
        Ok(PackageSources {
            nixpkgs,
            substituters: non_empty(&self.substituter),
            trusted_public_keys: non_empty(&self.trusted_public_key),
            jobs: self.jobs.max(1),
            verify_signatures: true,
            use_host_store: !self.ignore_host_store,
            evaluator: self
                .evaluator
                .as_ref()
                .map(|path| {
                    kiln_store::parse_store_path(path)
                        .map(|p| p.to_string())
                        .map_err(|err| UsageError(format!("--evaluator {path}: {err}")))
                })
                .transpose()?,
        })
    }
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

impl LayerArgs {
    /// The pack settings (with `SOURCE_DATE_EPOCH`) and layer count.
    pub fn options(&self, labels: &[String]) -> anyhow::Result<ImageOptions> {
        let format = match self.compression {
            Compression::Gzip => Format::Gzip,
            Compression::Zstd => Format::Zstd,
        };
        Ok(ImageOptions {
            settings: PackSettings {
                compression: crate::layer::Compression::new(format, self.compression_level)?,
                source_date_epoch: PackSettings::source_date_epoch_from_env()?,
            },
            max_layers: self.max_layers,
            labels: key_values("--label", labels)?,
        })
    }
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
    /// `docker-archive:FILE`, or `docker://REGISTRY/NAME:TAG` (the same as
    /// `--push REGISTRY/NAME:TAG`).
    #[arg(short, long, value_name = "DEST")]
    pub output: Option<String>,

    /// Push the image to a registry reference (`registry/name:tag`).
    #[arg(long, value_name = "REFERENCE")]
    pub push: Option<String>,

    /// Attach no SBOM. By default the image gets an SBOM of its Nix
    /// closure (every store path with its NAR hash and references) and of
    /// the app's lockfiles, as an OCI 1.1 artifact whose subject is the
    /// image: listed in `oci:` and `oci-archive:` indexes, pushed under the
    /// image's referrers tag (`sha256-<hex>`). `kiln sbom` prints it.
    #[arg(long)]
    pub no_sbom: bool,

    /// The SBOM's format: `spdx` (SPDX 2.3 JSON, artifact type
    /// `application/spdx+json`) or `cyclonedx` (CycloneDX 1.5 JSON,
    /// `application/vnd.cyclonedx+json`).
    #[arg(
        long,
        value_name = "FORMAT",
        default_value = "spdx",
        conflicts_with = "no_sbom"
    )]
    pub sbom_format: SbomFormat,

    /// Sign the pushed image, and its SBOM, with this private key (ECDSA
    /// P-256, PKCS#8 PEM, as `kiln keygen` writes), in cosign's format:
    /// a simple-signing payload under the tag `sha256-<hex>.sig`, which
    /// `cosign verify --key` and `sigstoreSigned` policies (skopeo, podman,
    /// CRI-O with `use-sigstore-attachments`) check. Keyless signing is not
    /// supported.
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,

    /// Registry host allowed over plain HTTP or unverified TLS. Repeat for more.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub insecure_registry: Vec<String>,

    #[command(flatten)]
    pub registry: RegistryArgs,

    /// Platform of the image; only the running machine's platform is built.
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
}

impl OutputArgs {
    /// The SBOM to attach: its format, or `None` with `--no-sbom`.
    pub fn sbom(&self) -> Option<SbomFormat> {
        (!self.no_sbom).then_some(self.sbom_format)
    }

    /// Where the image goes: `--output` and `--push`, else (with neither)
    /// an OCI archive named after the image in the current folder.
    pub fn delivery(&self, name: &str) -> anyhow::Result<Delivery> {
        self.refuse_other_platforms()?;
        let mut targets = Vec::new();
        if let Some(text) = &self.output {
            targets.push(
                text.parse::<Target>()
                    .map_err(|err| UsageError(format!("--output {text}: {err}")))?,
            );
        }
        if let Some(reference) = &self.push {
            targets.push(Target::Push(reference.clone()));
        }
        if targets.is_empty() {
            let file = format!("oci-archive:{}.oci.tar", name.replace('/', "_"));
            targets.push(file.parse::<Target>()?);
        }
        let sign_key = match &self.sign_key {
            None => None,
            Some(path) => {
                if !targets.iter().any(|t| matches!(t, Target::Push(_))) {
                    return Err(UsageError(
                        "--sign-key signs what is pushed; add --push or --output docker://..."
                            .into(),
                    )
                    .into());
                }
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("could not read the signing key {}", path.display())
                })?;
                Some(Arc::new(Key::parse(
                    &text,
                    &path.display().to_string(),
                    &crate::sign::password(),
                )?))
            }
        };
        Ok(Delivery {
            targets,
            tags: self.tag.clone(),
            sign_key,
        })
    }

    /// How registries are reached: `--registry-*` and `--insecure-registry`.
    pub fn registry_config(&self) -> RegistryConfig {
        self.registry.config(&self.insecure_registry)
    }

    fn refuse_other_platforms(&self) -> anyhow::Result<()> {
        if let Some(platform) = &self.platform {
            let here = Platform::host().to_string();
            if platform != &here {
                return Err(UsageError(format!(
                    "--platform {platform}: kiln builds only for the running machine's platform, {here}"
                ))
                .into());
            }
        }
        Ok(())
    }
}

/// A registry build cache shared by machines (`--cache-repo`).
#[derive(Debug, Args)]
pub struct CacheRepoArgs {
    /// Registry repository (`REGISTRY/NAME`) that holds a build cache
    /// shared by every machine given it: phase results, store path layers
    /// and what kiln read from the packages, as small artifacts tagged by
    /// their keys. Looked up when kiln's own cache misses, written after
    /// the build; reached with the registry flags the push uses. It holds
    /// build outputs: share it only among builds you trust alike.
    #[arg(long, env = "KILN_CACHE_REPO", value_name = "REGISTRY/NAME")]
    pub cache_repo: Option<String>,

    /// Read the cache repo, never write to it.
    #[arg(long, requires = "cache_repo")]
    pub cache_repo_read_only: bool,
}

impl CacheRepoArgs {
    /// The cache repo asked for, if any.
    pub fn options(&self) -> Option<CacheRepoOptions> {
        self.cache_repo.as_ref().map(|repository| CacheRepoOptions {
            repository: repository
                .strip_prefix("docker://")
                .unwrap_or(repository)
                .to_string(),
            read_only: self.cache_repo_read_only,
        })
    }
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

impl RegistryArgs {
    /// The registry configuration these flags and `insecure_hosts` ask for.
    pub fn config(&self, insecure_hosts: &[String]) -> RegistryConfig {
        let credentials = match (&self.registry_username, &self.registry_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        RegistryConfig {
            credentials,
            insecure_hosts: insecure_hosts.to_vec(),
            ca_files: self.registry_ca_file.clone(),
            jobs: usize::from(self.push_jobs),
            ..RegistryConfig::default()
        }
    }
}

/// Network access for build commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Network {
    /// The host's network, so builds can download dependencies.
    Host,
    /// A fresh network namespace with nothing in it.
    None,
}

impl Network {
    /// The network of build commands: `--network` when given, else the
    /// app's `[kiln] network`, else the host's (Nixpacks' builds download
    /// their dependencies). The person running kiln has the last word.
    pub fn choose(flag: Option<Network>, config: &kiln_providers::KilnSettings) -> Network {
        flag.unwrap_or(match config.network {
            Some(kiln_providers::BuildNetwork::None) => Network::None,
            Some(kiln_providers::BuildNetwork::Host) | None => Network::Host,
        })
    }
}

impl From<Network> for crate::sandbox::Network {
    fn from(network: Network) -> Self {
        match network {
            Network::Host => Self::Host,
            Network::None => Self::None,
        }
    }
}

/// `KEY=VALUE` pairs of a repeated flag; anything else is a usage error
/// naming the flag.
pub fn key_values(flag: &str, items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|item| match item.split_once('=') {
            Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
            _ => Err(UsageError(format!("{flag} {item}: expected KEY=VALUE")).into()),
        })
        .collect()
}

/// An existing folder given on the command line, made absolute.
pub fn existing_dir(flag: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    dir.canonicalize()
        .map_err(|err| UsageError(format!("{flag} {}: {err}", dir.display())).into())
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;
    use crate::commands::{Cli, Command};

    /// `kiln build . ARGS` parsed into its registry configuration with
    /// `KILN_REGISTRY_USERNAME` and `KILN_REGISTRY_PASSWORD` unset, whatever
    /// the environment of the test holds. The lookups are dropped from the
    /// parser rather than the variables removed: every test thread shares
    /// the process environment.
    fn registry(args: &[&str]) -> Result<RegistryConfig, clap::Error> {
        let command = Cli::command().mut_subcommand("build", |build| {
            build
                .mut_arg("registry_username", |arg| arg.env(None))
                .mut_arg("registry_password", |arg| arg.env(None))
        });
        let matches = command.try_get_matches_from(["kiln", "build", "."].iter().chain(args))?;
        let cli = Cli::from_arg_matches(&matches)?;
        let Command::Build(build) = cli.command else {
            panic!("not a build command")
        };
        Ok(build.output.registry_config())
    }

    #[test]
    fn command_line_flags_become_the_registry_config() {
        let config = registry(&[
            "--registry-username",
            "u",
            "--registry-password",
            "p",
            "--push-jobs",
            "2",
            "--registry-ca-file",
            "/ca.pem",
            "--insecure-registry",
            "local:5000",
        ])
        .unwrap();
        assert_eq!(
            config.credentials,
            Some(Credentials {
                username: "u".into(),
                password: "p".into()
            })
        );
        assert_eq!(config.jobs, 2);
        assert_eq!(config.ca_files, [PathBuf::from("/ca.pem")]);
        assert_eq!(config.insecure_hosts, ["local:5000"]);
    }

    #[test]
    fn registry_defaults_and_usage_errors() {
        let config = registry(&[]).unwrap();
        assert_eq!(config.jobs, RegistryConfig::DEFAULT_JOBS);
        assert_eq!(config.credentials, None);
        assert!(registry(&["--push-jobs", "0"]).is_err());
        let alone = registry(&["--registry-username", "u"]).unwrap_err();
        assert_eq!(
            alone.kind(),
            clap::error::ErrorKind::MissingRequiredArgument
        );
        assert!(alone.to_string().contains("--registry-password"), "{alone}");
        let alone = registry(&["--registry-password", "p"]).unwrap_err();
        assert!(alone.to_string().contains("--registry-username"), "{alone}");
    }

    fn env(values: &[&str]) -> anyhow::Result<Vec<(String, String)>> {
        EnvArgs {
            values: values.iter().map(|v| v.to_string()).collect(),
        }
        .pairs()
    }

    #[test]
    fn env_values_follow_one_rule() {
        assert_eq!(env(&["A=1=2"]).unwrap(), [("A".into(), "1=2".into())]);
        let err = env(&["=x"]).unwrap_err();
        assert!(err.is::<UsageError>(), "{err}");
        assert!(env(&["KILN_SURELY_UNSET_VARIABLE"]).unwrap().is_empty());
        assert!(env(&["KILN_SURELY_UNSET_VARIABLE="]).unwrap().is_empty());
        let path = std::env::var("PATH").unwrap();
        assert_eq!(env(&["PATH"]).unwrap(), [("PATH".into(), path.clone())]);
        assert_eq!(env(&["PATH="]).unwrap(), [("PATH".into(), path)]);
    }

    #[test]
    fn outputs_take_docker_references_and_default_to_an_archive() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(["kiln", "build", "."].iter().chain(args)).unwrap();
            let Command::Build(build) = cli.command else {
                panic!("not a build command")
            };
            build.output.delivery("app").map(|d| d.targets)
        };
        assert_eq!(
            parse(&["--output", "docker://h:5000/x:1"]).unwrap(),
            [Target::Push("h:5000/x:1".into())]
        );
        assert_eq!(
            parse(&[]).unwrap(),
            ["oci-archive:app.oci.tar".parse::<Target>().unwrap()]
        );
        let both = parse(&["--output", "oci:out", "--push", "h/x"]).unwrap();
        assert_eq!(both.len(), 2);
        assert!(parse(&["--output", "ftp://x"]).is_err());
        assert!(parse(&["--platform", "plan9/mips"]).is_err());
    }

    #[test]
    fn labels_need_a_key_and_a_value() {
        assert_eq!(
            key_values("--label", &["a=b=c".into()]).unwrap(),
            [("a".into(), "b=c".into())]
        );
        assert!(key_values("--label", &["a".into()]).is_err());
        assert!(key_values("--label", &["=b".into()]).is_err());
    }
}
