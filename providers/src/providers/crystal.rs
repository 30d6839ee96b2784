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

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(shard: &str) -> Result<Option<BuildPlan>, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("shard.yml"), shard).unwrap();
        Crystal.plan(&App::new(dir.path()).unwrap(), &Environment::default())
    }

    #[test]
    fn first_target_in_the_file_starts() {
        let plan =
            plan_for("name: x\ntargets:\n  zeta:\n    main: a.cr\n  alpha:\n    main: b.cr\n")
                .unwrap()
                .unwrap();
        assert_eq!(plan.start_phase.unwrap().cmd.as_deref(), Some("./bin/zeta"));
    }

    #[test]
    fn no_targets_is_a_clear_error() {
        let err = plan_for("name: x\n").unwrap_err().to_string();
        assert!(err.contains("no targets"), "{err}");
    }
}
