//! Scheme sites built with Haunt: `haunt.scm`; the site is built with
//! `haunt build` and `init.scm` starts it under Guile.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Scheme (Haunt) provider.
pub struct Scheme;

impl Provider for Scheme {
    fn name(&self) -> &'static str {
        "scheme"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("haunt.scm"))
    }

    fn plan(&self, _app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut build = Phase::build(Some("haunt build".into()));
        build.depends_on_phase("setup");
        Ok(Some(BuildPlan::new(
            vec![
                Phase::setup(Some(vec![Pkg::new("haunt"), Pkg::new("guile")])),
                build,
            ],
            Some(StartPhase::new("guile init.scm --auto-compile")),
        )))
    }
}
