//! Deno apps: `deno.json`/`deno.jsonc`, or sources importing from
//! deno.land; the start task, else `deno run` on the first index file.

use regex::Regex;
use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Deno provider.
pub struct Deno;

#[derive(Debug, Default, Deserialize)]
struct DenoJson {
    tasks: Option<Tasks>,
}

#[derive(Debug, Default, Deserialize)]
struct Tasks {
    start: Option<String>,
}

impl Provider for Deno {
    fn name(&self) -> &'static str {
        "deno"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        let import = Regex::new(
            r#"import .+ from (?:"|'|`)https://deno.land/[^"`']+\.(?:ts|js|tsx|jsx)(?:"|'|`);?"#,
        )
        .expect("valid pattern");
        Ok(app.includes_file("deno.json")
            || app.includes_file("deno.jsonc")
            || app.find_match(&import, "**/*.{ts,tsx,js,jsx}")?)
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut plan = BuildPlan::default();
        plan.add_phase(Phase::setup(Some(vec![Pkg::new("deno")])));
        let index = index_file(app)?;
        if let Some(index) = &index {
            let mut build = Phase::build(Some(format!("deno cache {index}")));
            build.depends_on_phase("setup");
            plan.add_phase(build);
        }
        let task = if app.includes_file("deno.json") || app.includes_file("deno.jsonc") {
            let deno: DenoJson = app
                .read_json("deno.json")
                .or_else(|_| app.read_jsonc("deno.jsonc"))?;
            deno.tasks.and_then(|t| t.start)
        } else {
            None
        };
        if let Some(cmd) = task.or_else(|| index.map(|i| format!("deno run --allow-all {i}"))) {
            plan.set_start_phase(StartPhase::new(cmd));
        }
        Ok(Some(plan))
    }
}

/// The first `index.{ts,tsx,js,jsx}` in the app, relative to it.
fn index_file(app: &App) -> Result<Option<String>, PlanError> {
    Ok(app
        .find_files("**/index.{ts,tsx,js,jsx}")?
        .first()
        .map(|f| app.relative(f)))
}
