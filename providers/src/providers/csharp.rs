//! C# (.NET) apps: a `.csproj`; the SDK major version from
//! `NIXPACKS_CSHARP_SDK_VERSION` or `global.json`. [`dotnet_plan`] is the
//! plan every .NET language shares.

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

/// Where `dotnet publish` puts the app.
const ARTIFACT_DIR: &str = "out";
/// The SDK major version used when none is asked for; its package has no suffix.
const DEFAULT_SDK_MAJOR: u8 = 6;

/// The C# provider.
pub struct CSharp;

#[derive(Debug, Default, Deserialize)]
struct GlobalJson {
    sdk: Option<Sdk>,
}

#[derive(Debug, Default, Deserialize)]
struct Sdk {
    version: Option<String>,
}

impl Provider for CSharp {
    fn name(&self) -> &'static str {
        "c#"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.has_match("*.csproj"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let global_json_version = if app.includes_file("global.json") {
            app.read_json::<GlobalJson>("global.json")?
                .sdk
                .and_then(|sdk| sdk.version)
        } else {
            None
        };
        let version = env.config("CSHARP_SDK_VERSION").or(global_json_version);
        dotnet_plan(app, &sdk_package(version.as_deref()), "*.csproj").map(Some)
    }
}

/// The Nix package of the SDK whose version starts with this major number;
/// anything unreadable gets the default SDK, as upstream does.
fn sdk_package(version: Option<&str>) -> String {
    let major = version
        .and_then(|v| v.split('.').next())
        .and_then(|major| major.parse::<u8>().ok())
        .unwrap_or(DEFAULT_SDK_MAJOR);
    if major == DEFAULT_SDK_MAJOR {
        "dotnet-sdk".into()
    } else {
        format!("dotnet-sdk_{major}")
    }
}

/// The plan of a .NET app: restore, publish to `out/` and start the
/// binary named after the first project file matching `project_glob`.
pub fn dotnet_plan(app: &App, sdk: &str, project_glob: &str) -> Result<BuildPlan, PlanError> {
    let project = app
        .find_files(project_glob)?
        .first()
        .and_then(|p| p.file_stem())
        .map(|stem| stem.to_string_lossy().to_string())
        .ok_or_else(|| PlanError::Provider {
            provider: "dotnet",
            message: format!("no {project_glob} project file found"),
        })?;
    let mut plan = BuildPlan::new(
        vec![
            Phase::setup(Some(vec![Pkg::new(sdk)])),
            Phase::install(Some("dotnet restore".into())),
            Phase::build(Some(format!(
                "dotnet publish --no-restore -c Release -o {ARTIFACT_DIR}"
            ))),
        ],
        Some(StartPhase::new(format!("./{ARTIFACT_DIR}/{project}"))),
    );
    plan.add_variables(Variables::from([
        ("ASPNETCORE_ENVIRONMENT".into(), "Production".into()),
        ("ASPNETCORE_URLS".into(), "http://0.0.0.0:3000".into()),
        (
            "DOTNET_ROOT".into(),
            "/nix/var/nix/profiles/default/".into(),
        ),
    ]));
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_major_version_picks_the_package() {
        assert_eq!(sdk_package(None), "dotnet-sdk");
        assert_eq!(sdk_package(Some("6.0.100")), "dotnet-sdk");
        assert_eq!(sdk_package(Some("8.0.204")), "dotnet-sdk_8");
        assert_eq!(sdk_package(Some("latest")), "dotnet-sdk");
    }
}
