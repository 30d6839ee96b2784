//! COBOL apps: any `.cbl` file; GnuCOBOL compiles the one named by
//! `NIXPACKS_COBOL_APP_NAME`, else an `index.cbl`, else the first, with
//! `NIXPACKS_COBOL_COMPILE_ARGS` (default `-x -o`).

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

const DEFAULT_COMPILE_ARGS: &str = "-x -o";

/// The COBOL provider.
pub struct Cobol;

impl Provider for Cobol {
    fn name(&self) -> &'static str {
        "cobol"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.has_match("*.cbl"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let args = env
            .config("COBOL_COMPILE_ARGS")
            .unwrap_or_else(|| DEFAULT_COMPILE_ARGS.into());
        let source = source_file(app, env)?;
        let program = std::path::Path::new(&source)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut build = Phase::build(Some(format!("cobc {args} {program} {source}")));
        build.depends_on_phase("setup");
        Ok(Some(BuildPlan::new(
            vec![
                Phase::setup(Some(vec![Pkg::new("gnu-cobol"), Pkg::new("gcc")])),
                build,
            ],
            Some(StartPhase::new(format!("./{program}"))),
        )))
    }
}

/// The source file to compile, relative to the app folder.
fn source_file(app: &App, env: &Environment) -> Result<String, PlanError> {
    let named = env.config("COBOL_APP_NAME").map(|n| format!("*{n}.cbl"));
    for pattern in named
        .iter()
        .map(String::as_str)
        .chain(["*index.cbl", "*.cbl"])
    {
        if let Some(file) = app.find_files(pattern)?.first() {
            return Ok(app.relative(file));
        }
    }
    Ok("./".into())
}
