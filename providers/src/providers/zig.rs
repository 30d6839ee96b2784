//! Zig apps: any `.zig` file; `zig build` in release-safe mode, git
//! submodules fetched first, the binary named after the app folder started.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Zig provider.
pub struct Zig;

impl Provider for Zig {
    fn name(&self) -> &'static str {
        "zig"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.has_match("**/*.zig"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut install = Phase::install(None);
        if app.includes_file(".gitmodules") {
            install.add_cmd("git submodule update --init");
        }
        let binary = app
            .source
            .file_name()
            .map_or_else(|| "*".to_string(), |n| n.to_string_lossy().to_string());
        Ok(Some(BuildPlan::new(
            vec![
                Phase::setup(Some(vec![Pkg::new("zig")])),
                install,
                Phase::build(Some("zig build -Doptimize=ReleaseSafe".into())),
            ],
            Some(StartPhase::new(format!("./zig-out/bin/{binary}"))),
        )))
    }
}
