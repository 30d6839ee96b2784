//! Scala apps built with sbt: `build.sbt`; `sbt stage` (the
//! sbt-native-packager layout) with sbt on the JDK from
//! `NIXPACKS_JDK_VERSION`, run in a matching Temurin JRE image.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

/// JDK major version, its Nix package and the JRE image the app runs in;
/// the first row is the default for versions not listed.
const JDKS: &[(u32, &str, &str)] = &[
    (17, "jdk17", "eclipse-temurin:17.0.9_9-jre-jammy"),
    (21, "jdk21", "eclipse-temurin:21.0.1_12-jre-jammy"),
    (20, "jdk20", "eclipse-temurin:20.0.2_9-jre-jammy"),
    (19, "jdk", "eclipse-temurin:19.0.2_7-jre-jammy"),
    (11, "jdk11", "eclipse-temurin:11.0.21_9-jre-jammy"),
    (8, "jdk8", "eclipse-temurin:8u392-b08-jre-jammy"),
];
const SBT_CACHE_DIRS: &[&str] = &["/root/.sbt", "/root/.ivy2/cache", "/root/.cache/coursier"];
const STAGED_APP: &str = "./target/universal";

/// The Scala provider.
pub struct Scala;

impl Provider for Scala {
    fn name(&self) -> &'static str {
        "scala"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("build.sbt"))
    }

    fn plan(&self, _app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let (_, jdk, run_image) = jdk(env)?;
        let sbt = Pkg::new("sbt").with_override("jre", jdk);
        let mut build = Phase::build(Some("sbt stage".into()));
        for dir in SBT_CACHE_DIRS {
            build.add_cache_directory(*dir);
        }
        build.depends_on_phase("setup");
        let mut start = StartPhase::new(format!("{STAGED_APP}/stage/bin/main"));
        start.run_image = Some(run_image.into());
        start.add_file_dependency(STAGED_APP);
        Ok(Some(BuildPlan::new(
            vec![Phase::setup(Some(vec![sbt])), build],
            Some(start),
        )))
    }
}

/// The row of [`JDKS`] for `NIXPACKS_JDK_VERSION`.
fn jdk(env: &Environment) -> Result<(u32, &'static str, &'static str), PlanError> {
    let wanted = match env.config("JDK_VERSION") {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| PlanError::Provider {
            provider: "scala",
            message: format!("NIXPACKS_JDK_VERSION=`{v}` is not a whole number such as 17"),
        })?),
    };
    Ok(*JDKS
        .iter()
        .find(|(version, _, _)| Some(*version) == wanted)
        .unwrap_or(&JDKS[0]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jdk_for(version: &str) -> Result<(u32, &'static str, &'static str), PlanError> {
        jdk(&Environment::from_args(
            &[format!("NIXPACKS_JDK_VERSION={version}")],
            |_| None,
        ))
    }

    #[test]
    fn jdk_version_picks_package_and_run_image() {
        assert_eq!(jdk(&Environment::default()).unwrap().1, "jdk17");
        assert_eq!(jdk_for("21").unwrap().1, "jdk21");
        assert_eq!(
            jdk_for("8").unwrap().2,
            "eclipse-temurin:8u392-b08-jre-jammy"
        );
        assert_eq!(jdk_for("18").unwrap().1, "jdk17");
        assert!(jdk_for("seventeen").is_err());
    }
}
