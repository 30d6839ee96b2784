//! Registries: push an OCI image layout to a registry and pull base images
//! from one, with no daemon in between.
//!
//! The wire protocol is `oci-client`'s (async, tokio). The runtime lives
//! inside this module: [`push_layout`] and [`pull_image`] are plain blocking
//! calls for the rest of kiln, which is synchronous;
//! [`push_layout_with_progress`] reports to a [`PushProgress`] as it goes. [`unpack_layers`] turns
//! pulled layers into a root filesystem folder.

mod auth;
mod blob_stream;
mod connect;
mod error;
mod layout;
mod manifest;
mod progress;
mod pull;
mod push;
mod retry;
mod unpack;

pub use auth::{AuthEnv, CredentialSource, Credentials};
pub use error::RegistryError;
pub use layout::{LayoutBlob, LayoutImage};
pub use manifest::Platform;
pub use progress::{BlobFate, NoPushProgress, PushProgress};
pub use pull::{pull_image, PulledImage, PulledLayer};
pub use push::{push_layout, push_layout_with_progress, PushOutcome, PushRequest};
pub use unpack::{unpack_layers, UnpackError};

use std::path::PathBuf;

/// How kiln talks to registries: credentials, trust and concurrency. Built
/// once from the command line and shared by pushes and pulls.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// User name and password given on the command line or in
    /// `KILN_REGISTRY_USERNAME`/`KILN_REGISTRY_PASSWORD`; they win over every
    /// auth file.
    pub credentials: Option<Credentials>,
    /// Where auth files and credential helpers are looked up.
    pub auth_env: AuthEnv,
    /// `HOST[:PORT]` entries allowed over plain HTTP or unverified TLS.
    pub insecure_hosts: Vec<String>,
    /// Extra PEM certificates trusted besides the system roots.
    pub ca_files: Vec<PathBuf>,
    /// How many blobs move at once.
    pub jobs: usize,
}

impl RegistryConfig {
    /// Default blob concurrency (`--push-jobs`).
    pub const DEFAULT_JOBS: usize = 4;
}

impl RegistryConfig {
    /// The configuration the command line asks for: `args` plus the
    /// `--insecure-registry` hosts.
    pub fn from_args(args: &crate::cli::RegistryArgs, insecure_hosts: &[String]) -> Self {
        let credentials = match (&args.registry_username, &args.registry_password) {
            (Some(username), Some(password)) => Some(Credentials {
                username: username.clone(),
                password: password.clone(),
            }),
            _ => None,
        };
        RegistryConfig {
            credentials,
            insecure_hosts: insecure_hosts.to_vec(),
            ca_files: args.registry_ca_file.clone(),
            jobs: usize::from(args.push_jobs),
            ..RegistryConfig::default()
        }
    }
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            credentials: None,
            auth_env: AuthEnv::from_process(),
            insecure_hosts: Vec::new(),
            ca_files: Vec::new(),
            jobs: Self::DEFAULT_JOBS,
        }
    }
}

/// The tokio runtime a registry call runs on; kiln outside this module is
/// synchronous.
fn runtime() -> Result<tokio::runtime::Runtime, RegistryError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RegistryError::Runtime)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<RegistryConfig, clap::Error> {
        let cli = Cli::try_parse_from(["kiln", "build", "."].iter().chain(args))?;
        let Command::Build(build) = cli.command else {
            panic!("not a build command")
        };
        Ok(RegistryConfig::from_args(
            &build.output.registry,
            &build.output.insecure_registry,
        ))
    }

    #[test]
    fn command_line_flags_become_the_registry_config() {
        let config = parse(&[
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
    fn defaults_and_usage_errors() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.jobs, RegistryConfig::DEFAULT_JOBS);
        assert!(parse(&["--push-jobs", "0"]).is_err());
        if std::env::var_os("KILN_REGISTRY_PASSWORD").is_none() {
            assert!(parse(&["--registry-username", "u"]).is_err());
        }
    }
}
