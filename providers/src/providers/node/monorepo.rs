//! Monorepo tools: moon, nx and turbo pick the build and start commands.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::package_json::PackageJson;
use super::PackageManager;
use crate::{App, Environment, PlanError};

/// The moon project to build (`NIXPACKS_MOON_APP_NAME`), in a moon workspace.
pub fn moon_app(app: &App, env: &Environment) -> Option<String> {
    env.config("MOON_APP_NAME")
        .filter(|_| app.includes_file(".moon/workspace.yml"))
}

/// `<dlx> @moonrepo/cli run app:task`.
pub fn moon_command(
    manager: PackageManager,
    app_name: &str,
    task: Option<String>,
    default_task: &str,
) -> String {
    let task = task.unwrap_or_else(|| default_task.into());
    format!("{} @moonrepo/cli run {app_name}:{task}", manager.dlx())
}

#[derive(Debug, Deserialize)]
struct NxJson {
    #[serde(alias = "defaultProject")]
    default_project: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ProjectJson {
    targets: Targets,
}

#[derive(Debug, Deserialize)]
struct Targets {
    build: Target,
    start: Option<Target>,
}

#[derive(Debug, Deserialize)]
struct Target {
    executor: String,
    options: Option<TargetOptions>,
    configurations: Option<Configurations>,
}

#[derive(Debug, Deserialize)]
struct TargetOptions {
    #[serde(alias = "outputPath")]
    output_path: Option<Value>,
    main: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Configurations {
    production: Option<Value>,
}

/// The nx project: `NIXPACKS_NX_APP_NAME`, else `defaultProject` in `nx.json`.
fn nx_app_name(app: &App, env: &Environment) -> Option<String> {
    env.config("NX_APP_NAME").or_else(|| {
        app.read_json::<NxJson>("nx.json")
            .ok()
            .and_then(|nx| nx.default_project)
    })
}

fn nx_project(app: &App, name: &str) -> Option<ProjectJson> {
    app.read_json(&format!("./apps/{name}/project.json")).ok()
}

/// The nx project when the app is an nx workspace whose project has a `project.json`.
fn nx_app(app: &App, env: &Environment) -> Option<(String, ProjectJson)> {
    let name = nx_app_name(app, env)?;
    if !app.includes_file("nx.json") {
        return None;
    }
    let project = nx_project(app, &name)?;
    Some((name, project))
}

/// `<dlx> nx run app:build:production` in an nx workspace.
pub fn nx_build_command(app: &App, env: &Environment, manager: PackageManager) -> Option<String> {
    let (name, _) = nx_app(app, env)?;
    Some(format!("{} nx run {name}:build:production", manager.dlx()))
}

/// The start command of the nx project.
pub fn nx_start_command(
    app: &App,
    env: &Environment,
    manager: PackageManager,
) -> Result<Option<String>, PlanError> {
    let Some((name, project)) = nx_app(app, env) else {
        return Ok(None);
    };
    let build = &project.targets.build;
    let output = build
        .options
        .as_ref()
        .and_then(|o| o.output_path.as_ref())
        .and_then(Value::as_str)
        .map_or_else(|| format!("dist/apps/{name}"), String::from);
    if let Some(start) = &project.targets.start {
        let production = start
            .configurations
            .as_ref()
            .is_some_and(|c| c.production.is_some());
        let suffix = if production { ":production" } else { "" };
        return Ok(Some(format!(
            "{} nx run {name}:start{suffix}",
            manager.dlx()
        )));
    }
    if build.executor == "@nx/next:build" || build.executor == "@nrwl/next:build" {
        return Ok(Some(format!("cd {output} && npm run start")));
    }
    if let Some(main) = build.options.as_ref().and_then(|o| o.main.as_deref()) {
        let stem = Path::new(main)
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        return Ok(Some(format!("node {output}/{stem}.js")));
    }
    Ok(Some(format!("node {output}/index.js")))
}

#[derive(Debug, Deserialize)]
struct TurboJson {
    #[serde(default)]
    pipeline: HashMap<String, Value>,
    #[serde(default)]
    tasks: HashMap<String, Value>,
}

impl TurboJson {
    fn has_task(&self, name: &str) -> bool {
        self.pipeline.contains_key(name) || self.tasks.contains_key(name)
    }
}

fn turbo_config(app: &App) -> Option<TurboJson> {
    if !app.includes_file("turbo.json") {
        return None;
    }
    app.read_json("turbo.json").ok()
}

/// `npx turbo run build` when turbo has a build task, else the build of
/// `NIXPACKS_TURBO_APP_NAME`.
pub fn turbo_build_command(
    app: &App,
    env: &Environment,
    manager: PackageManager,
) -> Option<String> {
    let turbo = turbo_config(app)?;
    if turbo.has_task("build") {
        return Some("npx turbo run build".into());
    }
    env.config("TURBO_APP_NAME")
        .map(|name| format!("{} turbo run {name}:build", manager.dlx()))
}

/// Starts `NIXPACKS_TURBO_APP_NAME` through its workspace, else turbo's
/// start task.
pub fn turbo_start_command(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Result<Option<String>, PlanError> {
    let Some(turbo) = turbo_config(app) else {
        return Ok(None);
    };
    if let Some(name) = env.config("TURBO_APP_NAME") {
        let workspaces = if manager == PackageManager::Pnpm {
            #[derive(Deserialize)]
            struct PnpmWorkspace {
                packages: Vec<String>,
            }
            match app.read_yaml::<PnpmWorkspace>("pnpm-workspace.yaml") {
                Ok(w) => w.packages,
                // Upstream gives up on turbo's start command here.
                Err(_) => return Ok(None),
            }
        } else {
            pkg.workspace_globs()
        };
        let mut found = false;
        for glob in &workspaces {
            if app
                .find_directories(glob)?
                .iter()
                .any(|d| d.ends_with(&name))
            {
                found = true;
                break;
            }
        }
        if found {
            let cmd = match manager {
                PackageManager::Pnpm => format!("pnpm --filter {name} run start"),
                PackageManager::Yarn => format!("yarn workspace {name} run start"),
                _ => format!("{} --workspace {name} run start", manager.command()),
            };
            return Ok(Some(cmd));
        }
        tracing::warn!("turborepo app `{name}` (NIXPACKS_TURBO_APP_NAME) is not in any workspace");
    }
    Ok(turbo
        .has_task("start")
        .then(|| "npx turbo run start".into()))
}
