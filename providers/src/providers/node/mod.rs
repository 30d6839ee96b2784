//! Node.js apps: npm, yarn, pnpm and bun; versions from `engines`,
//! `.nvmrc`, `.node-version` or `NIXPACKS_NODE_VERSION`; Vite SPAs served
//! by Caddy; turbo, nx and moon monorepos; Next, Prisma, Puppeteer, canvas
//! and sharp quirks.

mod monorepo;
mod package_json;
mod spa;
mod version;

use std::path::Path;

use package_json::PackageJson;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

/// Overlay upstream takes package-manager packages from.
pub const NODE_OVERLAY: &str = "https://github.com/railwayapp/nix-npm-overlay/archive/main.tar.gz";
const NODE_NIXPKGS_ARCHIVE: &str = "ffeebf0acf3ae8b29f8c7049cd911b9636efd7e7";
const BUN_NIXPKGS_ARCHIVE: &str = "5a0711127cd8b916c3d3128f473388c8c79df0da";
const NODE_LT_16_ARCHIVE: &str = "bf744fe90419885eefced41b3e5ae442d732712d";

const YARN_CACHE_DIR: &str = "/usr/local/share/.cache/yarn/v6";
const PNPM_CACHE_DIR: &str = "/root/.local/share/pnpm/store/v3";
const NPM_CACHE_DIR: &str = "/root/.npm";
const BUN_CACHE_DIR: &str = "/root/.bun";
const CYPRESS_CACHE_DIR: &str = "/root/.cache/Cypress";
const NODE_MODULES_CACHE_DIR: &str = "node_modules/.cache";

const PUPPETEER_APT_PKGS: &[&str] = &[
    "libnss3",
    "libatk1.0-0",
    "libatk-bridge2.0-0",
    "libcups2",
    "libgbm1",
    "libasound2t64",
    "libpangocairo-1.0-0",
    "libxss1",
    "libgtk-3-0",
    "libxshmfence1",
    "libglu1",
    "chromium",
];

/// The Node.js provider.
pub struct Node;

impl Provider for Node {
    fn name(&self) -> &'static str {
        "node"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("package.json"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let pkg = package_json(app);
        let manager = PackageManager::of(app, &pkg);
        let setup = setup_phase(app, env, &pkg, manager)?;
        let mut install = install_phase(app, env, &pkg, manager)?;
        let package_files = package_jsons(app)?;
        if package_files
            .iter()
            .any(|(_, p)| p.all_dependencies().contains("cypress"))
        {
            install.add_cache_directory(CYPRESS_CACHE_DIR);
        }
        let build = build_phase(app, env, &pkg, manager, &package_files);

        let start = start_command(app, env, &pkg, manager)?.map(StartPhase::new);
        let mut phases = vec![setup, install, build];
        let caddy = spa::caddy_phase(app, env, &pkg);
        let serves_spa = caddy.is_some();
        phases.extend(caddy);
        let mut plan = BuildPlan::new(phases, start);
        if serves_spa {
            plan.add_static_assets(spa::static_assets());
        }
        add_variables(&mut plan, app, env, &pkg);
        Ok(Some(plan))
    }
}

/// Node, the package manager and the system libraries the dependencies
/// need (Prisma, sharp, Puppeteer, canvas).
fn setup_phase(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Result<Phase, PlanError> {
    let mut setup = Phase::setup(Some(nix_packages(app, env)?));
    setup.nixpkgs_archive = Some(nix_archive(app, pkg, manager)?.into());
    if uses_dependency(app, "prisma") {
        setup.add_nix_pkgs(&[Pkg::new("openssl")]);
    }
    if uses_dependency(app, "sharp") {
        setup.add_nix_libs(&["gcc-unwrapped"]);
    }
    if uses_dependency(app, "puppeteer") {
        setup.add_apt_pkgs(PUPPETEER_APT_PKGS);
    }
    if uses_dependency(app, "canvas") {
        setup.add_nix_libs(&["libuuid", "libGL"]);
    }
    Ok(setup)
}

/// The install command, after enabling corepack when `packageManager` asks
/// for another manager than npm, with the manager's cache.
fn install_phase(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Result<Phase, PlanError> {
    let install_cmd = install_command(app, manager);
    let mut install = if uses_corepack(app, env, pkg)? {
        let mut phase = Phase::install(Some(
            "npm install -g corepack@0.24.1 && corepack enable".into(),
        ));
        phase.cmds.get_or_insert_with(Vec::new).extend(install_cmd);
        phase
    } else {
        Phase::install(install_cmd)
    };
    install.add_cache_directory(manager.cache_dir());
    install.add_path("/app/node_modules/.bin");
    Ok(install)
}

/// The build command with the caches of Next, TypeScript, moon and the
/// folders `package.json` names.
fn build_phase(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
    package_files: &[(String, PackageJson)],
) -> Phase {
    let mut build = Phase::build(build_command(app, env, pkg, manager));
    for (dir, p) in package_files {
        if p.all_dependencies().contains("next") {
            build.add_cache_directory(if dir.is_empty() {
                ".next/cache".to_string()
            } else {
                format!("{dir}/.next/cache")
            });
        }
    }
    build.add_cache_directory(NODE_MODULES_CACHE_DIR);
    for dir in pkg.cache_directories.iter().flatten() {
        build.add_cache_directory(dir.clone());
    }
    if let Some(file) = tsbuildinfo_file(app) {
        build.add_cache_directory(file);
    }
    if monorepo::moon_app(app, env).is_some() {
        build.add_cache_directory(".moon/cache/outputs");
    }
    build
}

/// The production environment upstream sets, and where a Vite SPA's
/// build output is.
fn add_variables(plan: &mut BuildPlan, app: &App, env: &Environment, pkg: &PackageJson) {
    plan.add_variables(Variables::from([
        ("NODE_ENV".to_string(), "production".to_string()),
        ("NPM_CONFIG_PRODUCTION".to_string(), "false".to_string()),
        ("CI".to_string(), "true".to_string()),
    ]));
    if spa::is_vite(app, pkg) {
        let out_dir = env
            .config("SPA_OUT_DIR")
            .unwrap_or_else(|| spa::vite_output_directory(app, pkg));
        plan.add_variables(Variables::from([(
            "NIXPACKS_SPA_OUTPUT_DIR".to_string(),
            out_dir,
        )]));
    }
}

/// The package manager an app uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageManager {
    /// npm, the default.
    Npm,
    /// pnpm (`pnpm-lock.yaml`).
    Pnpm,
    /// Yarn, classic or berry (`yarn.lock`).
    Yarn,
    /// Bun (`bun.lockb` or `bun.lock`).
    Bun,
}

impl PackageManager {
    /// From `packageManager` in `package.json`, else from the lock file.
    pub fn of(app: &App, pkg: &PackageJson) -> Self {
        let declared = pkg
            .package_manager
            .as_deref()
            .and_then(|p| p.split('@').next());
        match declared {
            Some("npm") => return Self::Npm,
            Some("pnpm") => return Self::Pnpm,
            Some("yarn") => return Self::Yarn,
            Some("bun") => return Self::Bun,
            _ => {}
        }
        if app.includes_file("pnpm-lock.yaml") {
            Self::Pnpm
        } else if app.includes_file("yarn.lock") {
            Self::Yarn
        } else if app.includes_file("bun.lockb") || app.includes_file("bun.lock") {
            Self::Bun
        } else {
            Self::Npm
        }
    }

    /// The command name.
    pub fn command(self) -> &'static str {
        match self {
            Self::Npm => "npm",
            Self::Pnpm => "pnpm",
            Self::Yarn => "yarn",
            Self::Bun => "bun",
        }
    }

    /// The command that runs a package's binary without installing it.
    pub fn dlx(self) -> &'static str {
        match self {
            Self::Pnpm => "pnpx",
            Self::Yarn => "yarn",
            Self::Npm | Self::Bun => "npx",
        }
    }

    fn cache_dir(self) -> &'static str {
        match self {
            Self::Npm => NPM_CACHE_DIR,
            Self::Pnpm => PNPM_CACHE_DIR,
            Self::Yarn => YARN_CACHE_DIR,
            Self::Bun => BUN_CACHE_DIR,
        }
    }

    fn executor(self) -> &'static str {
        if self == Self::Bun {
            "bun"
        } else {
            "node"
        }
    }
}

/// The command installing the app's Node dependencies, if it has a `package.json`.
pub fn install_command_of(app: &App) -> Option<String> {
    install_command(app, PackageManager::of(app, &package_json(app)))
}

/// The package manager command (`npm`, `yarn`, ...) the app uses.
pub fn package_manager_command(app: &App) -> &'static str {
    PackageManager::of(app, &package_json(app)).command()
}

/// `package.json`, or an empty one where it is missing or malformed, as upstream reads it almost everywhere.
fn package_json(app: &App) -> PackageJson {
    app.read_json("package.json").unwrap_or_default()
}

/// Every `package.json` outside `node_modules`, with its folder relative to the app.
fn package_jsons(app: &App) -> Result<Vec<(String, PackageJson)>, PlanError> {
    let mut found = Vec::new();
    for file in app.find_files("**/package.json")? {
        if file.to_string_lossy().contains("node_modules") {
            continue;
        }
        let relative = app.relative(&file);
        let pkg: PackageJson = app.read_json(&relative)?;
        let dir = Path::new(&relative)
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        found.push((dir, pkg));
    }
    Ok(found)
}

/// Whether any manifest or lock file mentions the package; upstream
/// matches text, so a package whose name contains it counts too.
pub fn uses_dependency(app: &App, name: &str) -> bool {
    [
        "package.json",
        "package-lock.json",
        "yarn.lock",
        "pnpm-lock.yaml",
    ]
    .iter()
    .any(|f| app.read_file(f).unwrap_or_default().contains(name))
}

/// Node and the package manager, as Nix packages.
pub fn nix_packages(app: &App, env: &Environment) -> Result<Vec<Pkg>, PlanError> {
    let pkg: PackageJson = if app.includes_file("package.json") {
        app.read_json("package.json")?
    } else {
        PackageJson::default()
    };
    let node = version::node_pkg(&pkg, app, env)?;
    let manager = PackageManager::of(app, &pkg);
    let manager_pkg = match manager {
        PackageManager::Pnpm => {
            let lock = app.read_file("pnpm-lock.yaml").unwrap_or_default();
            if lock.starts_with("lockfileVersion: 5.3") {
                "pnpm-6_x"
            } else if lock.starts_with("lockfileVersion: 5.4") {
                "pnpm-7_x"
            } else if lock.starts_with("lockfileVersion: '6.0'") {
                "pnpm-8_x"
            } else {
                "pnpm-9_x"
            }
        }
        PackageManager::Yarn => "yarn-1_x",
        PackageManager::Bun => "bun",
        PackageManager::Npm => {
            let lock = app.read_file("package-lock.json").unwrap_or_default();
            if lock.contains("\"lockfileVersion\": 1") {
                "npm-6_x"
            } else if lock.contains("\"lockfileVersion\": 2") {
                "npm-8_x"
            } else {
                "npm-9_x"
            }
        }
    };
    Ok(vec![
        Pkg::new(node),
        Pkg::new(manager_pkg).from_overlay(NODE_OVERLAY),
    ])
}

fn nix_archive(
    app: &App,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Result<&'static str, PlanError> {
    // Upstream picks the archive from the version files only, not from
    // NIXPACKS_NODE_VERSION.
    let node = version::node_pkg(pkg, app, &Environment::default())?;
    Ok(if node.contains("14") || node.contains("16") {
        NODE_LT_16_ARCHIVE
    } else if manager == PackageManager::Bun {
        BUN_NIXPKGS_ARCHIVE
    } else {
        NODE_NIXPKGS_ARCHIVE
    })
}

fn uses_corepack(app: &App, env: &Environment, pkg: &PackageJson) -> Result<bool, PlanError> {
    if version::node_pkg(pkg, app, env)?.contains("14") {
        return Ok(false);
    }
    Ok(pkg
        .package_manager
        .as_deref()
        .is_some_and(|m| !m.starts_with("npm")))
}

/// The install command; none without a `package.json` (Ruby borrows this
/// provider's install phase for apps that only use execjs).
fn install_command(app: &App, manager: PackageManager) -> Option<String> {
    if !app.includes_file("package.json") {
        return None;
    }
    let cmd = match manager {
        PackageManager::Pnpm => "pnpm i --frozen-lockfile",
        PackageManager::Yarn if app.includes_file(".yarnrc.yml") => "yarn install --check-cache",
        PackageManager::Yarn => "yarn install --frozen-lockfile",
        _ if app.includes_file("package-lock.json") => "npm ci",
        _ if app.includes_file("bun.lockb") || app.includes_file("bun.lock") => "bun i --no-save",
        _ => "npm i",
    };
    Some(cmd.to_string())
}

fn build_command(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Option<String> {
    if let Some(name) = monorepo::moon_app(app, env) {
        return Some(monorepo::moon_command(
            manager,
            &name,
            env.config("MOON_BUILD_TASK"),
            "build",
        ));
    }
    if let Some(cmd) = monorepo::nx_build_command(app, env, manager) {
        return Some(cmd);
    }
    if let Some(cmd) = monorepo::turbo_build_command(app, env, manager) {
        return Some(cmd);
    }
    pkg.script("build")
        .map(|_| format!("{} run build", manager.command()))
}

fn start_command(
    app: &App,
    env: &Environment,
    pkg: &PackageJson,
    manager: PackageManager,
) -> Result<Option<String>, PlanError> {
    if let Some(name) = monorepo::moon_app(app, env) {
        return Ok(Some(monorepo::moon_command(
            manager,
            &name,
            env.config("MOON_START_TASK"),
            "start",
        )));
    }
    if let Some(cmd) = monorepo::nx_start_command(app, env, manager)? {
        return Ok(Some(cmd));
    }
    if let Some(cmd) = monorepo::turbo_start_command(app, env, pkg, manager)? {
        return Ok(Some(cmd));
    }
    if spa::caddy_phase(app, env, pkg).is_some() {
        return Ok(Some(spa::start_command(app)));
    }
    if pkg.script("start").is_some() {
        return Ok(Some(format!("{} run start", manager.command())));
    }
    let executor = manager.executor();
    if let Some(main) = pkg.main.as_deref().filter(|m| app.includes_file(m)) {
        return Ok(Some(format!("{executor} {main}")));
    }
    if app.includes_file("index.js") {
        Ok(Some(format!("{executor} index.js")))
    } else if app.includes_file("index.ts") && manager == PackageManager::Bun {
        Ok(Some("bun index.ts".into()))
    } else {
        Ok(None)
    }
}

/// The TypeScript incremental build-info file, when the app has one.
fn tsbuildinfo_file(app: &App) -> Option<String> {
    #[derive(Debug, Default, serde::Deserialize)]
    struct TsConfig {
        #[serde(rename = "compilerOptions")]
        compiler_options: Option<Options>,
        extends: Option<String>,
    }
    #[derive(Debug, Default, Clone, serde::Deserialize)]
    struct Options {
        incremental: Option<bool>,
        #[serde(rename = "tsBuildInfoFile")]
        ts_build_info_file: Option<String>,
        #[serde(rename = "outDir")]
        out_dir: Option<String>,
    }
    let config: TsConfig = app.read_json("tsconfig.json").unwrap_or_default();
    let mut options = config.compiler_options.unwrap_or_default();
    if let Some(extends) = &config.extends {
        let base: TsConfig = app.read_json(extends).unwrap_or_default();
        let base = base.compiler_options.unwrap_or_default();
        options.incremental = options.incremental.or(base.incremental);
        options.out_dir = options.out_dir.or(base.out_dir);
        options.ts_build_info_file = options.ts_build_info_file.or(base.ts_build_info_file);
    }
    if options.incremental != Some(true) {
        return None;
    }
    let file = options
        .ts_build_info_file
        .or_else(|| options.out_dir.map(|d| format!("{d}/tsconfig.tsbuildinfo")))
        .unwrap_or_else(|| "tsconfig.tsbuildinfo".into());
    app.includes_file(&file).then_some(file)
}
