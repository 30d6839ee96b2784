//! Gleam apps: `gleam.toml` with its `manifest.toml`; the compiler
//! release named after the locked `gleam_stdlib` version is downloaded by a
//! script of ours, and the app is exported as an Erlang shipment and started.

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, StaticAssets};
use crate::{App, Environment, PlanError};

const INSTALL_SCRIPT: &str = "get-gleam.sh";
const SHIPMENT_DIR: &str = "build/erlang-shipment";
/// The release downloaded when the manifest locks no `gleam_stdlib`.
const FALLBACK_RELEASE: &str = "main";

/// The Gleam provider.
pub struct Gleam;

#[derive(Debug, Deserialize)]
struct Manifest {
    #[serde(default)]
    packages: Vec<LockedPackage>,
}

#[derive(Debug, Deserialize)]
struct LockedPackage {
    name: String,
    version: String,
}

impl Provider for Gleam {
    fn name(&self) -> &'static str {
        "gleam"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.has_match("gleam.toml") && app.has_match("manifest.toml"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let manifest: Manifest = app.read_toml("manifest.toml")?;
        // Upstream names the compiler release after the locked stdlib's
        // version; plans must name the same one.
        let release = manifest
            .packages
            .iter()
            .find(|p| p.name == "gleam_stdlib")
            .map_or(FALLBACK_RELEASE, |p| p.version.as_str());
        let setup = Phase::setup(Some(
            ["wget", "erlang", "elixir", "rebar3"]
                .into_iter()
                .map(Pkg::new)
                .collect(),
        ));
        let mut install = Phase::install(Some(format!(
            "sh {} {release}",
            app.asset_path(INSTALL_SCRIPT)
        )));
        install.add_file_dependency("gleam.toml");
        install.add_file_dependency("manifest.toml");
        install.add_cmd("gleam deps download");
        let build = Phase::build(Some("gleam export erlang-shipment".into()));
        let mut start = StartPhase::new(format!("./{SHIPMENT_DIR}/entrypoint.sh run"));
        start.add_file_dependency(SHIPMENT_DIR);

        let mut plan = BuildPlan::new(vec![setup, install, build], Some(start));
        plan.add_static_assets(StaticAssets::from([(
            INSTALL_SCRIPT.into(),
            include_str!("get-gleam.sh").into(),
        )]));
        Ok(Some(plan))
    }
}
