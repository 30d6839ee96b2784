//! PHP apps: `composer.json` or `index.php`; PHP with the extensions
//! composer requires, php-fpm behind nginx, Laravel's `public/` root, and
//! Node for apps that build assets.
//!
//! The nginx template, php-fpm config and prestart script are kiln's own
//! (upstream's files are not copied), so this provider's `staticAssets`
//! differ from upstream's by design; everything else matches.

use std::collections::HashMap;

use serde::Deserialize;

use super::node;
use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, StaticAssets, Variables};
use crate::{App, Environment, PlanError};

const LEGACY_ARCHIVE: &str = "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db";
const DEFAULT_ARCHIVE: &str = "e24b4c09e963677b1beea49d411cd315a024ad3a";
const DEFAULT_PHP_VERSION: &str = "8.3";
/// PHP version, Nix attribute, nixpkgs revision.
const PHP_VERSIONS: &[(&str, &str, &str)] = &[
    ("7.4", "php74", LEGACY_ARCHIVE),
    ("8.0", "php80", LEGACY_ARCHIVE),
    ("8.1", "php81", DEFAULT_ARCHIVE),
    ("8.2", "php", DEFAULT_ARCHIVE),
    ("8.3", "php83", DEFAULT_ARCHIVE),
    ("8.4", "php84", DEFAULT_ARCHIVE),
];

/// The PHP provider.
pub struct Php;

#[derive(Debug, Deserialize)]
struct ComposerJson {
    require: HashMap<String, String>,
}

impl Provider for Php {
    fn name(&self) -> &'static str {
        "php"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("composer.json") || app.includes_file("index.php"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut phases = vec![setup_phase(app, env)?, install_phase(app)];
        phases.extend(build_phase(app));
        let mut plan = BuildPlan::new(phases, Some(start(app)));
        plan.add_static_assets(StaticAssets::from([
            (
                "nginx.template.conf".to_string(),
                include_str!("nginx.template.conf").to_string(),
            ),
            (
                "php-fpm.conf".to_string(),
                include_str!("php-fpm.conf").to_string(),
            ),
            (
                "scripts/prestart.mjs".to_string(),
                include_str!("prestart.mjs").to_string(),
            ),
        ]));
        let mut variables = Variables::from([("PORT".to_string(), "80".to_string())]);
        if app.includes_file("artisan") {
            variables.insert("IS_LARAVEL".into(), "yes".into());
            variables.insert("NIXPACKS_PHP_ROOT_DIR".into(), "/app/public".into());
        }
        plan.add_variables(variables);
        Ok(Some(plan))
    }
}

/// PHP of the version composer asks for with the extensions it requires,
/// nginx, composer, and Node for asset builds.
fn setup_phase(app: &App, env: &Environment) -> Result<Phase, PlanError> {
    let composer: Option<ComposerJson> = app.read_json("composer.json").ok();
    let version = php_version(composer.as_ref());
    let (_, php, archive) = PHP_VERSIONS
        .iter()
        .find(|(v, _, _)| *v == version)
        .expect("php_version returns a listed version");
    let mut extensions = composer
        .as_ref()
        .map(|c| extensions(c, version))
        .unwrap_or_default();
    extensions.sort_unstable();

    let with_extensions = extensions
        .iter()
        .map(|e| format!("pe.all.{e}"))
        .collect::<Vec<_>>()
        .join(" ");
    let extension_pkgs: Vec<String> = extensions
        .iter()
        .map(|e| format!("{php}Extensions.{e}"))
        .collect();
    let mut pkgs = vec![
        Pkg::new(format!(
            "({php}.withExtensions (pe: pe.enabled ++ [{with_extensions}]))"
        )),
        Pkg::new("nginx"),
        Pkg::new("libmysqlclient"),
        Pkg::new(format!("{php}Packages.composer")),
    ];
    pkgs.extend(node::nix_packages(app, env)?);
    pkgs.extend(extension_pkgs.iter().map(Pkg::new));
    let mut setup = Phase::setup(Some(pkgs));
    setup.nixpkgs_archive = Some((*archive).into());
    let libs: Vec<&str> = extension_pkgs.iter().map(String::as_str).collect();
    setup.add_nix_libs(&libs);
    setup.add_nix_libs(&["libmysqlclient"]);
    Ok(setup)
}

/// nginx's folders, then composer's and the Node package manager's installs.
fn install_phase(app: &App) -> Phase {
    let mut install = Phase::install(Some(
        "mkdir -p /var/log/nginx && mkdir -p /var/cache/nginx".into(),
    ));
    if app.includes_file("composer.json") {
        install.add_cmd("composer install --ignore-platform-reqs");
    }
    if let Some(cmd) = node::install_command_of(app) {
        install.add_cmd(cmd);
    }
    install
}

/// The `prod` script of `package.json`, else its `build` script, if any.
fn build_phase(app: &App) -> Option<Phase> {
    let pkg_json: serde_json::Value = app.read_json("package.json").unwrap_or_default();
    let has_script = |name: &str| pkg_json["scripts"][name].is_string();
    let manager = node::package_manager_command(app);
    if has_script("prod") {
        Some(Phase::build(Some(format!("{manager} run prod"))))
    } else if has_script("build") {
        Some(Phase::build(Some(format!("{manager} run build"))))
    } else {
        None
    }
}

fn start(app: &App) -> StartPhase {
    let prestart = app.asset_path("scripts/prestart.mjs");
    let fpm = app.asset_path("php-fpm.conf");
    StartPhase::new(if app.includes_file("nginx.conf") {
        format!("php-fpm -y {fpm} & nginx -c /app/nginx.conf")
    } else if app.includes_file("nginx.template.conf") {
        format!("node {prestart} /app/nginx.template.conf /nginx.conf && (php-fpm -y {fpm} & nginx -c /nginx.conf)")
    } else {
        format!(
            "node {prestart} {} /nginx.conf && (php-fpm -y {fpm} & nginx -c /nginx.conf)",
            app.asset_path("nginx.template.conf")
        )
    })
}

/// The PHP version `require.php` asks for, by the first known version it
/// mentions; the default when it names none or there is no composer.json.
fn php_version(composer: Option<&ComposerJson>) -> &'static str {
    let Some(wanted) = composer.and_then(|c| c.require.get("php")) else {
        return DEFAULT_PHP_VERSION;
    };
    ["8.0", "8.1", "8.2", "8.3", "8.4", "7.4"]
        .into_iter()
        .find(|v| wanted.contains(v))
        .unwrap_or_else(|| {
            tracing::warn!("PHP {wanted} is not available; using PHP {DEFAULT_PHP_VERSION}");
            DEFAULT_PHP_VERSION
        })
}

/// `ext-*` requirements, minus those built into PHP 8 (json, opcache).
fn extensions(composer: &ComposerJson, version: &str) -> Vec<String> {
    composer
        .require
        .keys()
        .filter_map(|k| k.strip_prefix("ext-"))
        .filter(|e| version == "7.4" || !matches!(*e, "json" | "zend-opcache"))
        .map(String::from)
        .collect()
}
