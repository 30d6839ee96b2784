//! `kiln detect`: the providers (languages) an app folder has.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kiln_providers::GeneratePlanOptions;

use super::args::EnvArgs;
use crate::report::outln;

/// `kiln detect`.
#[derive(Debug, Args)]
pub struct DetectCommand {
    /// The app folder.
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,

    #[command(flatten)]
    pub env: EnvArgs,
}

/// Prints the providers, comma separated, as upstream does.
pub fn run(command: &DetectCommand) -> anyhow::Result<()> {
    command.env.warn_missing();
    let options = GeneratePlanOptions {
        env: command.env.environment()?,
        ..GeneratePlanOptions::default()
    };
    let providers = kiln_providers::detect_providers(&command.dir, &options)
        .with_context(|| format!("could not detect providers in {}", command.dir.display()))?;
    outln!("{}", providers.join(", "));
    Ok(())
}
