//! The `Procfile`: its web process starts the app, its release process runs
//! after the build. Upstream applies it over whichever provider planned the
//! app, so it is not in the detection list.

use std::collections::BTreeMap;

use crate::plan::{BuildPlan, Phase, StartPhase, HOLE};
use crate::{App, PlanError};

/// The plan a `Procfile` adds: an empty plan when there is none.
pub fn plan(app: &App) -> Result<BuildPlan, PlanError> {
    let mut plan = BuildPlan::default();
    if !app.includes_file("Procfile") {
        return Ok(plan);
    }
    let mut processes: BTreeMap<String, String> = app.read_yaml("Procfile")?;
    if let Some(release) = processes.remove("release") {
        let mut phase = Phase::new("release");
        phase.depends_on = Some(vec!["setup".into(), "install".into(), "build".into()]);
        phase.cmds = Some(vec![HOLE.into(), release]);
        plan.add_phase(phase);
    }
    // web first, then worker, then the first process by name.
    let start = processes
        .get("web")
        .or_else(|| processes.get("worker"))
        .or_else(|| processes.values().next());
    if let Some(cmd) = start {
        plan.set_start_phase(StartPhase::new(cmd.clone()));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_for(procfile: &str) -> Result<BuildPlan, PlanError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Procfile"), procfile).unwrap();
        plan(&App::new(dir.path()).unwrap())
    }

    #[test]
    fn web_wins_and_release_becomes_a_phase() {
        let plan =
            plan_for("worker: python worker.py\nweb: gunicorn app\nrelease: ./migrate\n").unwrap();
        assert_eq!(
            plan.start_phase.as_ref().unwrap().cmd.as_deref(),
            Some("gunicorn app")
        );
        let release = plan.phase("release").unwrap();
        assert_eq!(release.cmds.as_deref().unwrap(), ["...", "./migrate"]);
        assert_eq!(
            release.depends_on.as_deref().unwrap(),
            ["setup", "install", "build"]
        );
    }

    #[test]
    fn worker_then_first_by_name() {
        let plan = plan_for("worker: ./w\nclock: ./c\n").unwrap();
        assert_eq!(plan.start_phase.unwrap().cmd.as_deref(), Some("./w"));
        let plan = plan_for("zeta: ./z\nalpha: ./a\n").unwrap();
        assert_eq!(plan.start_phase.unwrap().cmd.as_deref(), Some("./a"));
    }

    #[test]
    fn malformed_procfile_names_the_file() {
        let err = plan_for("web: [unclosed\n").unwrap_err().to_string();
        assert!(err.starts_with("Procfile: not valid YAML"), "{err}");
    }
}
