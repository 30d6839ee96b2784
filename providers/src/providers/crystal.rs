//! Crystal apps: `shard.yml`; `shards` installs and builds, the first
//! target in the file starts.

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Crystal provider.
pub struct Crystal;

/// The part of `shard.yml` the plan needs; the mapping keeps file order.
#[derive(Debug, Deserialize)]
struct Shard {
    #[serde(default)]
    targets: serde_yaml::Mapping,
}

impl Provider for Crystal {
    fn name(&self) -> &'static str {
        "crystal"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("shard.yml"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let shard: Shard = app.read_yaml("shard.yml")?;
        let target = shard
            .targets
            .keys()
            .find_map(|key| key.as_str())
            .ok_or_else(|| PlanError::Provider {
                provider: "crystal",
                message: "shard.yml has no targets; add one (`targets: {app: {main: src/app.cr}}`) so there is a binary to start".into(),
            })?;
        Ok(Some(BuildPlan::new(
            vec![
                Phase::setup(Some(vec![Pkg::new("crystal"), Pkg::new("shards")])),
                Phase::install(Some("shards install".into())),
                Phase::build(Some("shards build".into())),
            ],
            Some(StartPhase::new(format!("./bin/{target}"))),
        )))
    }
}
