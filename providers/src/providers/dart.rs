//! Dart apps: `pubspec.yaml`; `dart pub get`, then `bin/<name>.dart`
//! compiled to a native executable and started.

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// The Dart provider.
pub struct Dart;

#[derive(Debug, Deserialize)]
struct Pubspec {
    name: String,
}

impl Provider for Dart {
    fn name(&self) -> &'static str {
        "dart"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("pubspec.yaml"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let Pubspec { name } = app.read_yaml("pubspec.yaml")?;
        let mut install = Phase::install(Some("dart pub get".into()));
        install.add_file_dependency("pubspec.yaml");
        Ok(Some(BuildPlan::new(
            vec![
                Phase::setup(Some(vec![Pkg::new("dart")])),
                install,
                Phase::build(Some(format!("dart compile exe bin/{name}.dart"))),
            ],
            Some(StartPhase::new(format!("./bin/{name}.exe"))),
        )))
    }
}
