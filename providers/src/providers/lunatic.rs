//! Lunatic apps: Rust crates whose `.cargo/config.toml` runs them with
//! `runner = "lunatic"`; built as the Rust provider builds them, with the
//! lunatic runtime, and started under it.

use regex::Regex;

use super::rust::plan_parts;
use super::Provider;
use crate::plan::{BuildPlan, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Lunatic provider.
pub struct Lunatic;

impl Provider for Lunatic {
    fn name(&self) -> &'static str {
        "lunatic"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        if !app.includes_file("Cargo.toml") {
            return Ok(false);
        }
        let runner = Regex::new(r#"runner\s*=\s*"lunatic""#).expect("valid pattern");
        Ok(app.find_match(&runner, ".cargo/config.toml")?)
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let (mut setup, build, rust_start) = plan_parts(app, env)?;
        setup.add_nix_pkgs(&[Pkg::new("lunatic")]);
        let start = rust_start
            .and_then(|s| s.cmd)
            .map(|binary| StartPhase::new(format!("lunatic {binary}")));
        Ok(Some(BuildPlan::new(vec![setup, build], start)))
    }
}
