//! F# apps: an `.fsproj`; planned like every .NET app, always with the
//! default SDK.

use super::csharp::dotnet_plan;
use super::Provider;
use crate::plan::BuildPlan;
use crate::{App, Environment, PlanError};

/// The F# provider.
pub struct FSharp;

impl Provider for FSharp {
    fn name(&self) -> &'static str {
        "f#"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.has_match("*.fsproj"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        dotnet_plan(app, "dotnet-sdk", "*.fsproj").map(Some)
    }
}
