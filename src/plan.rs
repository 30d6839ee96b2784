//! `kiln plan` and `kiln detect`: plan an app folder and print it.

use anyhow::Context;
use kiln_providers::{Environment, GeneratePlanOptions, PlanFlags};

use crate::cli::{DetectCommand, PlanArgs, PlanCommand, PlanFormat};
use crate::output::outln;

/// The plan options the CLI flags describe; `--env KEY` takes the value
/// from kiln's own environment.
pub fn options(args: &PlanArgs) -> anyhow::Result<GeneratePlanOptions> {
    let flags = PlanFlags {
        install_cmd: args.install_cmd.clone(),
        build_cmd: args.build_cmd.clone(),
        start_cmd: args.start_cmd.clone(),
        pkgs: args.pkgs.clone(),
        apt: args.apt.clone(),
        libs: args.libs.clone(),
        json_plan: args.json_plan.clone(),
    };
    Ok(GeneratePlanOptions {
        env: Environment::from_args(&args.env, |name| std::env::var(name).ok()),
        config_file: args.config.clone(),
        cli_plan: flags.to_plan()?,
    })
}

/// `kiln plan`: prints the plan as JSON or TOML on stdout; ignored config
/// keys are warned about on stderr.
pub fn plan(command: &PlanCommand) -> anyhow::Result<()> {
    let args = &command.plan;
    let generated = kiln_providers::generate(&args.dir, &options(args)?)
        .with_context(|| format!("could not plan {}", args.dir.display()))?;
    for warning in &generated.warnings {
        tracing::warn!("{warning}");
    }
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

/// `kiln detect`: prints the providers, comma separated, as upstream does.
pub fn detect(command: &DetectCommand) -> anyhow::Result<()> {
    let options = GeneratePlanOptions {
        env: Environment::from_args(&command.env, |name| std::env::var(name).ok()),
        ..GeneratePlanOptions::default()
    };
    let providers = kiln_providers::detect_providers(&command.dir, &options)
        .with_context(|| format!("could not detect providers in {}", command.dir.display()))?;
    outln!("{}", providers.join(", "));
    Ok(())
}
