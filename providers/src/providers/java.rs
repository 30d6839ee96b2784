//! Java apps: Maven (`pom.xml`, with or without the wrapper) or Gradle
//! (`gradlew`); JDK and Gradle versions from `NIXPACKS_JDK_VERSION`,
//! `NIXPACKS_GRADLE_VERSION` or the Gradle wrapper; Spring Boot and
//! WildFly Swarm get `$PORT`.

use regex::Regex;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

const DEFAULT_JDK_VERSION: u32 = 17;
const DEFAULT_GRADLE_VERSION: u32 = 8;
const JAVA_NIXPKGS_ARCHIVE: &str = "59dc10b5a6f2a592af36375c68fda41246794b86";

/// The Java provider.
pub struct Java;

impl Provider for Java {
    fn name(&self) -> &'static str {
        "java"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        // Upstream checks some polyglot Maven files as folders; kept as is.
        Ok(app.includes_file("pom.xml")
            || app.includes_directory("pom.atom")
            || app.includes_directory("pom.clj")
            || app.includes_directory("pom.groovy")
            || ["pom.rb", "pom.scala", "pom.yaml", "pom.yml", "gradlew"]
                .iter()
                .any(|f| app.includes_file(f)))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let gradle = app.includes_file("gradlew");
        let (setup, build) = if gradle {
            let gradle_version = gradle_version(app, env)?;
            let jdk = jdk_pkg(jdk_version(env, Some(gradle_version))?)?;
            let mut setup = Phase::setup(Some(vec![jdk, gradle_pkg(gradle_version)?]));
            setup.nixpkgs_archive = Some(JAVA_NIXPKGS_ARCHIVE.into());
            let mut build = Phase::build(None);
            if !app.is_file_executable("gradlew") {
                build.add_cmd("chmod +x gradlew");
            }
            let gradle_exe = if app.includes_file("gradle/wrapper/gradle-wrapper.properties") {
                "./gradlew"
            } else {
                "gradle"
            };
            build.add_cmd(format!("{gradle_exe} clean build -x check -x test"));
            build.add_cache_directory("/root/.gradle");
            build.depends_on_phase("setup");
            (setup, build)
        } else {
            let jdk = jdk_pkg(jdk_version(env, None)?)?;
            let mut setup = Phase::setup(Some(vec![jdk, Pkg::new("maven")]));
            setup.nixpkgs_archive = Some(JAVA_NIXPKGS_ARCHIVE.into());
            let mvn = if app.includes_file("mvnw")
                && app.includes_file(".mvn/wrapper/maven-wrapper.properties")
            {
                "chmod +x ./mvnw && ./mvnw"
            } else {
                "mvn"
            };
            let mut build = Phase::build(Some(format!(
                "{mvn} -DoutputFile=target/mvn-dependency-list.log -B -DskipTests clean dependency:list install"
            )));
            build.add_cache_directory(".m2/repository");
            build.depends_on_phase("setup");
            (setup, build)
        };
        let start = StartPhase::new(start_command(app, gradle)?);
        Ok(Some(BuildPlan::new(vec![setup, build], Some(start))))
    }
}

fn start_command(app: &App, gradle: bool) -> Result<String, PlanError> {
    let build_gradle = ["build.gradle", "build.gradle.kts"]
        .into_iter()
        .find(|f| app.includes_file(f))
        .map(|f| app.read_file(f))
        .transpose()?
        .unwrap_or_default();
    if gradle {
        let spring = [
            "org.springframework.boot:spring-boot",
            "spring-boot-gradle-plugin",
            "org.springframework.boot",
            "org.grails:grails-",
        ]
        .iter()
        .any(|marker| build_gradle.contains(marker));
        let port = if spring { "-Dserver.port=$PORT" } else { "" };
        Ok(format!(
            "java $JAVA_OPTS -jar {port} $(ls -1 build/libs/*jar | grep -v plain)"
        ))
    } else if app.includes_file("pom.xml") {
        let pom = app.read_file("pom.xml").unwrap_or_default();
        let port = if pom.contains("<groupId>org.wildfly.swarm") {
            "-Dswarm.http.port=$PORT"
        } else if pom.contains("<groupId>org.springframework.boot")
            && pom.contains("<artifactId>spring-boot")
        {
            "-Dserver.port=$PORT"
        } else {
            ""
        };
        Ok(format!("java {port} $JAVA_OPTS -jar target/*jar"))
    } else {
        Ok("java $JAVA_OPTS -jar target/*jar".into())
    }
}

fn version_setting(env: &Environment, name: &str) -> Result<Option<u32>, PlanError> {
    env.config(name)
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| PlanError::Provider {
                provider: "java",
                message: format!("NIXPACKS_{name}=`{v}` is not a whole number such as 17"),
            })
        })
        .transpose()
}

/// The JDK: `NIXPACKS_JDK_VERSION`, else 11 for Gradle 6, 8 for older Gradle, else 17.
fn jdk_version(env: &Environment, gradle: Option<u32>) -> Result<u32, PlanError> {
    if let Some(version) = version_setting(env, "JDK_VERSION")? {
        return Ok(version);
    }
    Ok(match gradle {
        Some(6) => 11,
        Some(v) if v <= 5 => 8,
        _ => DEFAULT_JDK_VERSION,
    })
}

fn jdk_pkg(version: u32) -> Result<Pkg, PlanError> {
    let name = match version {
        21 => "jdk21",
        20 => "jdk20",
        19 => "jdk",
        17 => "jdk17",
        11 => "jdk11",
        8 => "jdk8",
        _ => {
            return Err(PlanError::Provider {
                provider: "java",
                message: format!("JDK {version} is not available; use 8, 11, 17, 19, 20 or 21"),
            })
        }
    };
    Ok(Pkg::new(name))
}

fn gradle_pkg(version: u32) -> Result<Pkg, PlanError> {
    let name = match version {
        8 => "gradle",
        7 => "gradle_7",
        6 => "gradle_6",
        5 => "gradle_5",
        4 => "gradle_4",
        _ => {
            return Err(PlanError::Provider {
                provider: "java",
                message: format!("Gradle {version} is not available; use 4 to 8 (NIXPACKS_GRADLE_VERSION or the wrapper's distributionUrl)"),
            })
        }
    };
    Ok(Pkg::new(name))
}

/// `NIXPACKS_GRADLE_VERSION`, else the major version in the wrapper's `distributionUrl`.
fn gradle_version(app: &App, env: &Environment) -> Result<u32, PlanError> {
    if let Some(version) = version_setting(env, "GRADLE_VERSION")? {
        return Ok(version);
    }
    let properties = "gradle/wrapper/gradle-wrapper.properties";
    if !app.includes_file(properties) {
        return Ok(DEFAULT_GRADLE_VERSION);
    }
    let text = app.read_file(properties)?;
    let url = Regex::new(r"(distributionUrl[\S].*[gradle])(-)([0-9|\.]*)").expect("valid pattern");
    let Some(version) = url.captures(&text).map(|c| c[3].to_string()) else {
        return Ok(DEFAULT_GRADLE_VERSION);
    };
    let major = Regex::new(r#"^(?:[\sa-zA-Z-"']*)(\d*)(?:\.*)(\d*)(?:\.*\d*)(?:["']?)$"#)
        .expect("valid pattern");
    Ok(major
        .captures(version.trim())
        .map_or(DEFAULT_GRADLE_VERSION, |m| m[1].parse().unwrap_or_default()))
}
