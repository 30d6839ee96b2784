//! Clojure apps: Leiningen (`project.clj`, with the lein-ring plugin or
//! not) or tools.build (`build.clj`); the JDK from `NIXPACKS_JDK_VERSION`
//! or `.jdk-version`; an uberjar is built and run.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

const DEFAULT_JDK_PKG: &str = "jdk8";
/// Leiningen may leave the uberjar under `target/default+uberjar`; the start
/// command looks in `target` only.
const MOVE_JARS_TO_TARGET: &str = r#"if [ -d /app/target/default+uberjar ]; then find /app/target/default+uberjar -name "*.jar" -exec mv -t /app/target/ {} +; fi"#;
/// Runs the standalone jar, or else the first jar that is not a snapshot.
const START_JAR: &str = r#"JAR_FILE=$(find /app/target -name "*-standalone.jar" -o -name "*.jar" ! -name "*-SNAPSHOT.jar" | head -n 1) && bash -c "java $JAVA_OPTS -jar $JAR_FILE""#;

/// The Clojure provider.
pub struct Clojure;

impl Provider for Clojure {
    fn name(&self) -> &'static str {
        "clojure"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("project.clj") || app.includes_file("build.clj"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let tools_build = app.includes_file("build.clj");
        let (tool, build_cmd) = if tools_build {
            ("clojure", "clojure -T:build uber")
        } else if uses_lein_ring(app) {
            ("leiningen", "lein ring uberjar")
        } else {
            ("leiningen", "lein uberjar")
        };
        let setup = Phase::setup(Some(vec![Pkg::new(tool), jdk_package(app, env)?]));
        let mut build = Phase::build(Some(format!("{build_cmd}; {MOVE_JARS_TO_TARGET}")));
        build.depends_on_phase("setup");
        Ok(Some(BuildPlan::new(
            vec![setup, build],
            Some(StartPhase::new(START_JAR)),
        )))
    }
}

fn uses_lein_ring(app: &App) -> bool {
    app.includes_file("project.clj")
        && app
            .read_file("project.clj")
            .unwrap_or_default()
            .to_lowercase()
            .contains("[lein-ring ")
}

/// `jdk` for `latest`, `jdk11` for 11, else the default JDK 8.
fn jdk_package(app: &App, env: &Environment) -> Result<Pkg, PlanError> {
    let version = match env.config("JDK_VERSION") {
        Some(version) => Some(version),
        None if app.includes_file(".jdk-version") => Some(app.read_file(".jdk-version")?),
        None => None,
    };
    Ok(Pkg::new(match version.as_deref().map(str::trim) {
        Some("latest") => "jdk",
        Some("11") => "jdk11",
        _ => DEFAULT_JDK_PKG,
    }))
}
