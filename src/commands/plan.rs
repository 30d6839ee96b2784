//! `kiln plan`: plan an app folder and print the plan.

use clap::{Args, ValueEnum};

use super::args::PlanArgs;
use crate::report::outln;

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

/// Prints the plan as JSON or TOML on stdout; ignored config keys are
/// warned about on stderr.
pub fn run(command: &PlanCommand) -> anyhow::Result<()> {
    let generated = command.plan.generate()?;
    // Upstream prints such plans too, so this warns instead of failing;
    // `kiln build` refuses them.
    if let Err(err) = generated.plan.phases_in_order() {
        tracing::warn!("{err}");
    }
    let text = match command.format {
        PlanFormat::Json => generated.plan.to_json(),
        PlanFormat::Toml => generated.plan.to_toml(),
    };
    outln!("{text}");
    Ok(())
}
