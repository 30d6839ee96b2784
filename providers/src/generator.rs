//! `generate_plan`: detection, the provider plan, Procfile, config file,
//! environment and CLI flags merged in upstream's priority order.

use std::path::{Path, PathBuf};

use crate::app::App;
use crate::config::{self, ConfigFormat, ConfigWarning, KilnSettings};
use crate::environment::Environment;
use crate::plan::{self, BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::providers::{self, procfile, Provider};
use crate::PlanError;

/// Everything besides the app folder that shapes a plan.
#[derive(Debug, Clone, Default)]
pub struct GeneratePlanOptions {
    /// `--env` values, with the `NIXPACKS_*` settings among them.
    pub env: Environment,
    /// Config file to read instead of `nixpacks.toml`/`nixpacks.json`,
    /// relative to the app folder unless absolute.
    pub config_file: Option<PathBuf>,
    /// The plan made of CLI flags; see [`PlanFlags::to_plan`].
    pub cli_plan: BuildPlan,
}

/// The plan-shaping CLI flags, as upstream's `nixpacks plan` takes them.
#[derive(Debug, Clone, Default)]
pub struct PlanFlags {
    /// `--install-cmd`
    pub install_cmd: Option<String>,
    /// `--build-cmd`
    pub build_cmd: Option<String>,
    /// `--start-cmd`
    pub start_cmd: Option<String>,
    /// `--pkgs`
    pub pkgs: Vec<String>,
    /// `--apt`
    pub apt: Vec<String>,
    /// `--libs`
    pub libs: Vec<String>,
    /// `--json-plan`
    pub json_plan: Option<String>,
}

impl PlanFlags {
    /// The plan these flags stand for: `--json-plan` below the other flags.
    pub fn to_plan(&self) -> Result<BuildPlan, PlanError> {
        let mut flags = BuildPlan::default();
        if !self.pkgs.is_empty() || !self.apt.is_empty() || !self.libs.is_empty() {
            let with_hole = |items: &[String]| {
                let mut items = items.to_vec();
                items.push(plan::HOLE.into());
                items
            };
            let mut setup = Phase::setup(Some(
                with_hole(&self.pkgs).into_iter().map(Pkg::new).collect(),
            ));
            setup.apt_pkgs = Some(with_hole(&self.apt));
            setup.nix_libs = Some(with_hole(&self.libs));
            flags.add_phase(setup);
        }
        if let Some(cmd) = &self.install_cmd {
            flags.add_phase(Phase::install(Some(cmd.clone())));
        }
        if let Some(cmd) = &self.build_cmd {
            flags.add_phase(Phase::build(Some(cmd.clone())));
        }
        if let Some(cmd) = &self.start_cmd {
            flags.set_start_phase(StartPhase::new(cmd.clone()));
        }
        match &self.json_plan {
            Some(json) => {
                let (json_plan, _) = config::parse(json, ConfigFormat::Json, "--json-plan")?;
                Ok(json_plan.merge(&flags))
            }
            None => Ok(flags),
        }
    }
}

/// A generated plan with what else a caller needs to know.
#[derive(Debug, Clone)]
pub struct GeneratedPlan {
    /// The plan.
    pub plan: BuildPlan,
    /// The folder the plan is for: the app folder, or its only subfolder
    /// when the app folder itself has nothing to build (as upstream does).
    pub app_dir: PathBuf,
    /// Config file keys that were ignored.
    pub warnings: Vec<ConfigWarning>,
    /// The config file's `[kiln]` table, which is not part of the plan.
    pub kiln: KilnSettings,
}

/// What the config file, the environment and the CLI flags say.
struct Before {
    plan: BuildPlan,
    kiln: KilnSettings,
    warnings: Vec<ConfigWarning>,
}

/// Plans an app folder; see [`generate`] for the folder and warnings too.
pub fn generate_plan(
    app_dir: &Path,
    options: &GeneratePlanOptions,
) -> Result<BuildPlan, PlanError> {
    generate(app_dir, options).map(|generated| generated.plan)
}

/// Plans an app folder the way `nixpacks plan` does.
pub fn generate(app_dir: &Path, options: &GeneratePlanOptions) -> Result<GeneratedPlan, PlanError> {
    let app = App::new(app_dir)?;
    let env = &options.env;
    let Before {
        plan: before,
        kiln,
        warnings,
    } = plan_before_providers(&app, options)?;
    let env = env.with(before.variables.as_ref().unwrap_or(&Variables::new()));

    let provider_plan = plan_from_providers(&app, &env, before.providers.as_deref())?;
    let procfile_plan = procfile::plan(&app)?;
    let mut plan = BuildPlan::merge_all([&provider_plan, &procfile_plan, &before]);
    if !env.variables().is_empty() {
        plan.add_variables(env.variables().clone());
    }
    plan.pin(env.config_is_truthy("DEBIAN"));

    if plan.phases.as_ref().is_none_or(|p| p.is_empty()) {
        let mut dirs = app.paths.iter().filter(|p| p.is_dir());
        if let (Some(only), None) = (dirs.next(), dirs.next()) {
            // Only descend for real: a symlink back up (`sub -> ..`) would
            // otherwise recurse forever.
            let inside = only
                .canonicalize()
                .is_ok_and(|o| o != app.source && o.starts_with(&app.source));
            if inside {
                return generate(only, options);
            }
        }
    }
    Ok(GeneratedPlan {
        plan,
        app_dir: app.source,
        warnings,
        kiln,
    })
}

/// The providers `nixpacks detect` prints for an app folder.
pub fn detect_providers(
    app_dir: &Path,
    options: &GeneratePlanOptions,
) -> Result<Vec<String>, PlanError> {
    let app = App::new(app_dir)?;
    let before = plan_before_providers(&app, options)?.plan;
    Ok(
        provider_names(&app, &options.env, before.providers.as_deref())?
            .into_iter()
            .map(|p| p.name().to_string())
            .collect(),
    )
}

/// Config file < environment < CLI flags: everything that is not a provider.
fn plan_before_providers(app: &App, options: &GeneratePlanOptions) -> Result<Before, PlanError> {
    let from_file = file_plan(app, options)?;
    let env_plan = env_plan(&options.env);
    Ok(Before {
        plan: BuildPlan::merge_all([&from_file.plan, &env_plan, &options.cli_plan]),
        ..from_file
    })
}

fn file_plan(app: &App, options: &GeneratePlanOptions) -> Result<Before, PlanError> {
    let chosen = if let Some(file) = &options.config_file {
        Some(file.display().to_string())
    } else if let Some(file) = options.env.config("CONFIG_FILE") {
        if !app.includes_file(&file) {
            return Err(PlanError::ConfigFileMissing {
                file,
                app_dir: app.source.clone(),
            });
        }
        Some(file)
    } else {
        ["nixpacks.toml", "nixpacks.json"]
            .into_iter()
            .find(|f| app.includes_file(f))
            .map(String::from)
    };
    let Some(file) = chosen else {
        return Ok(Before {
            plan: BuildPlan::default(),
            kiln: KilnSettings::default(),
            warnings: Vec::new(),
        });
    };
    let format = match Path::new(&file).extension().and_then(|e| e.to_str()) {
        Some("toml") => ConfigFormat::Toml,
        Some("json") => ConfigFormat::Json,
        _ => return Err(PlanError::ConfigFormat { file }),
    };
    let text = app.read_file(&file)?;
    let (plan, warnings) = config::parse(&text, format, &file)?;
    let kiln = config::parse_kiln_settings(&text, format, &file)?;
    Ok(Before {
        plan,
        kiln,
        warnings,
    })
}

/// The plan the `NIXPACKS_*` variables describe.
fn env_plan(env: &Environment) -> BuildPlan {
    let split = |value: String| -> Vec<String> {
        value
            .split([' ', ','])
            .filter(|s| !s.is_empty())
            .map(String::from)
            .chain([plan::HOLE.to_string()])
            .collect()
    };
    let mut phases = Vec::new();
    let mut setup = Phase::new("setup");
    if let Some(pkgs) = env.config("PKGS") {
        setup.nix_pkgs = Some(split(pkgs));
    }
    if let Some(apt) = env.config("APT_PKGS") {
        setup.apt_pkgs = Some(split(apt));
    }
    if let Some(libs) = env.config("LIBS") {
        // Upstream splits libraries on spaces only.
        let mut libs: Vec<String> = libs.split(' ').map(String::from).collect();
        libs.push(plan::HOLE.into());
        setup.nix_libs = Some(libs);
    }
    if setup != Phase::new("setup") {
        phases.push(setup);
    }
    for (name, cmd_var, cache_var) in [
        ("install", "INSTALL_CMD", "INSTALL_CACHE_DIRS"),
        ("build", "BUILD_CMD", "BUILD_CACHE_DIRS"),
    ] {
        if let Some(cmd) = env.config(cmd_var) {
            let mut phase = if name == "install" {
                Phase::install(Some(cmd))
            } else {
                Phase::build(Some(cmd))
            };
            if let Some(dirs) = env.config(cache_var) {
                for dir in dirs.split([' ', ',']).filter(|s| !s.is_empty()) {
                    phase.add_cache_directory(dir);
                }
            }
            phases.push(phase);
        }
    }
    BuildPlan::new(phases, env.config("START_CMD").map(StartPhase::new))
}

/// The providers to plan with: the first detected one where the plan's
/// `providers` list has its hole (by default, only it).
fn provider_names(
    app: &App,
    env: &Environment,
    chosen: Option<&[String]>,
) -> Result<Vec<&'static dyn Provider>, PlanError> {
    let mut detected = Vec::new();
    for provider in providers::all() {
        if provider.detect(app, env)? {
            detected.push(provider.name().to_string());
            break;
        }
    }
    let mut names = Some(detected);
    let chosen = chosen.map_or_else(|| vec![plan::HOLE.to_string()], <[String]>::to_vec);
    plan::fill_hole(&mut names, &Some(chosen));
    plan::remove_holes(&mut names);
    names
        .unwrap_or_default()
        .iter()
        .map(|name| providers::by_name(name))
        .collect()
}

fn plan_from_providers(
    app: &App,
    env: &Environment,
    chosen: Option<&[String]>,
) -> Result<BuildPlan, PlanError> {
    let providers = provider_names(app, env, chosen)?;
    let mut plan = BuildPlan::default();
    let mut metadata = Vec::new();
    for (index, provider) in providers.iter().enumerate() {
        if let Some(mut provider_plan) = provider.plan(app, env)? {
            if index > 0 {
                provider_plan.prefix_phases(provider.name());
            }
            let mut labels = vec![provider.name().to_string()];
            labels.extend(provider.metadata(app, env)?);
            metadata.push(labels.join(","));
            plan = provider_plan.merge(&plan);
        }
    }
    if !providers.is_empty() {
        plan.add_variables(Variables::from([(
            "NIXPACKS_METADATA".to_string(),
            metadata.join(","),
        )]));
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn options(env: &[&str], flags: PlanFlags) -> GeneratePlanOptions {
        GeneratePlanOptions {
            env: Environment::from_args(env, |_| None),
            config_file: None,
            cli_plan: flags.to_plan().unwrap(),
        }
    }

    #[test]
    fn priority_is_provider_then_file_then_env_then_flags() {
        let app = app_with(&[
            ("main.go", "package main"),
            (
                "nixpacks.toml",
                "[phases.setup]\nnixPkgs = ['...', 'from-file']\n[phases.build]\ncmds = ['file build']\n[start]\ncmd = 'file start'\n",
            ),
        ]);
        let flags = PlanFlags {
            start_cmd: Some("flag start".into()),
            pkgs: vec!["from-flag".into()],
            ..PlanFlags::default()
        };
        let plan = generate_plan(
            app.path(),
            &options(
                &["NIXPACKS_PKGS=from-env", "NIXPACKS_BUILD_CMD=env build"],
                flags,
            ),
        )
        .unwrap();
        let setup = plan.phase("setup").unwrap();
        // Each level keeps its hole until the plan is pinned, so the
        // provider's packages fill every hole: upstream prints the same.
        assert_eq!(
            setup.nix_pkgs.as_deref().unwrap(),
            ["from-flag", "go", "from-env", "go", "go", "from-file"]
        );
        assert_eq!(
            plan.phase("build").unwrap().cmds.as_deref().unwrap(),
            ["env build"]
        );
        assert_eq!(plan.start_phase.unwrap().cmd.as_deref(), Some("flag start"));
        let vars = plan.variables.unwrap();
        assert_eq!(vars["NIXPACKS_METADATA"], "go");
        assert_eq!(vars["NIXPACKS_PKGS"], "from-env");
    }

    #[test]
    fn unknown_provider_lists_the_valid_ones() {
        let app = app_with(&[("nixpacks.toml", "providers = ['...', 'cobolt']\n")]);
        let err = generate_plan(app.path(), &GeneratePlanOptions::default()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("`cobolt`"), "{text}");
        assert!(text.contains("node") && text.contains("python"), "{text}");
    }

    #[test]
    fn missing_config_file_from_env_is_an_error() {
        let app = app_with(&[("index.html", "")]);
        let err = generate_plan(
            app.path(),
            &options(&["NIXPACKS_CONFIG_FILE=nope.toml"], PlanFlags::default()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn malformed_config_names_file_line_and_column() {
        let app = app_with(&[("nixpacks.json", "{\n  \"start\": {\"cmd\": [1]}\n}\n")]);
        let err = generate_plan(app.path(), &GeneratePlanOptions::default()).unwrap_err();
        assert!(err.to_string().starts_with("nixpacks.json:2:"), "{err}");
    }

    #[test]
    fn only_subfolder_is_planned_when_the_folder_has_nothing() {
        let app = app_with(&[("inner/index.html", "<p>hi</p>")]);
        let generated = generate(app.path(), &GeneratePlanOptions::default()).unwrap();
        assert!(generated.app_dir.ends_with("inner"));
        assert_eq!(
            detect_providers(&generated.app_dir, &GeneratePlanOptions::default()).unwrap(),
            ["staticfile"]
        );
    }

    #[test]
    fn only_subfolder_linking_back_up_is_not_followed() {
        let app = app_with(&[]);
        std::os::unix::fs::symlink("..", app.path().join("loop")).unwrap();
        let generated = generate(app.path(), &GeneratePlanOptions::default()).unwrap();
        assert_eq!(generated.app_dir, app.path().canonicalize().unwrap());
    }

    #[test]
    fn json_plan_flag_sits_below_other_flags() {
        let flags = PlanFlags {
            json_plan: Some(r#"{"start": {"cmd": "json", "user": "app"}}"#.into()),
            start_cmd: Some("flag".into()),
            ..PlanFlags::default()
        };
        let plan = flags.to_plan().unwrap();
        let start = plan.start_phase.unwrap();
        assert_eq!(start.cmd.as_deref(), Some("flag"));
        assert_eq!(start.user.as_deref(), Some("app"));
    }
}
