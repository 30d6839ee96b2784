//! `kiln-providers`: turns an application folder into a Nixpacks-compatible
//! build plan.
//!
//! This crate owns the `App` view of the source folder, the `Environment` of
//! `NIXPACKS_*` variables and `--env` values, the `BuildPlan` with its phases,
//! plan merging (provider < config file < environment < CLI flags), and one
//! module per language provider. It is pure: it reads the app folder and does
//! no other I/O, starts no processes and touches no network.
//!
//! The one entry point is [`generate_plan`] (or [`generate`], which also
//! says which folder was planned and which config keys were ignored).

#![warn(missing_docs)]

pub mod app;
pub mod config;
pub mod environment;
mod generator;
pub mod order;
pub mod plan;
pub mod providers;

use std::path::PathBuf;

pub use app::{App, AppError};
pub use config::{BuildNetwork, ConfigError, ConfigWarning, KilnSettings};
pub use environment::Environment;
pub use generator::{
    detect_providers, generate, generate_plan, GeneratePlanOptions, GeneratedPlan, PlanFlags,
};
pub use order::OrderError;
pub use plan::{BuildPlan, Phase, Pkg, StartPhase};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A file of the app could not be read or parsed.
    #[error(transparent)]
    App(#[from] AppError),
    /// The config file is malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `NIXPACKS_CONFIG_FILE` names a file the app does not have.
    #[error("config file {file} (from NIXPACKS_CONFIG_FILE) does not exist in {}; fix the path, relative to the app folder", app_dir.display())]
    ConfigFileMissing {
        /// The file as given.
        file: String,
        /// The app folder.
        app_dir: PathBuf,
    },
    /// The config file is neither `.toml` nor `.json`.
    #[error("config file {file}: unknown format; name it with a .toml or .json extension")]
    ConfigFormat {
        /// The file as given.
        file: String,
    },
    /// The plan's `providers` names a provider that does not exist.
    #[error("unknown provider `{name}` in `providers`; valid providers: {}", valid.join(", "))]
    UnknownProvider {
        /// The name given.
        name: String,
        /// Every provider name there is.
        valid: Vec<&'static str>,
    },
    /// A provider found something in the app it cannot plan.
    #[error("{provider}: {message}")]
    Provider {
        /// The provider's name.
        provider: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
}
