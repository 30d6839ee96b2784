//! Rust apps: `Cargo.toml`; toolchain from `NIXPACKS_RUST_VERSION`, a
//! rust-toolchain file or `rust-version`; static musl builds in a slim run
//! image unless `NIXPACKS_NO_MUSL`, OpenSSL or a toolchain file says
//! otherwise; wasm32-wasi; workspaces and multiple binaries.

use cargo_toml::{Manifest, Workspace};
use regex::Regex;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

const RUST_OVERLAY: &str = "https://github.com/oxalica/rust-overlay/archive/master.tar.gz";
const DEFAULT_RUST_PKG: &str = "rust-bin.stable.latest.default";
const NIX_ARCHIVE: &str = "ef56e777fedaa4da8c66a150081523c5de1e0171";
const CACHE_DIRS: &[&str] = &["/root/.cargo/git", "/root/.cargo/registry"];

/// The Rust provider.
pub struct Rust;

impl Provider for Rust {
    fn name(&self) -> &'static str {
        "rust"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("Cargo.toml"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let (setup, build, start) = plan_parts(app, env)?;
        let mut plan = BuildPlan::new(vec![setup, build], start);
        plan.add_variables(Variables::from([(
            "ROCKET_ADDRESS".into(),
            "0.0.0.0".into(),
        )]));
        Ok(Some(plan))
    }
}

/// The setup and build phases and the start of a crate, for the providers
/// that build Rust crates their own way.
pub fn plan_parts(
    app: &App,
    env: &Environment,
) -> Result<(Phase, Phase, Option<StartPhase>), PlanError> {
    let crate_info = CrateInfo::read(app, env)?;
    Ok((
        setup(app, env, &crate_info)?,
        build(app, &crate_info)?,
        start(&crate_info, env)?,
    ))
}

/// What the provider learns from the crate once.
struct CrateInfo {
    manifest: Option<Manifest>,
    target: Option<String>,
    uses_openssl: bool,
    wasm: bool,
    musl: bool,
    workspace_bin: Option<String>,
    bins: Vec<String>,
}

impl CrateInfo {
    fn read(app: &App, env: &Environment) -> Result<Self, PlanError> {
        let manifest = if app.includes_file("Cargo.toml") {
            Some(parse_manifest(app, "Cargo.toml")?)
        } else {
            None
        };
        let uses_openssl = manifest.as_ref().is_some_and(|m| {
            m.dependencies.contains_key("openssl")
                || m.dev_dependencies.contains_key("openssl")
                || m.build_dependencies.contains_key("openssl")
        }) || (app.includes_file("Cargo.lock")
            && app.read_file("Cargo.lock")?.contains("openssl"));
        let wasm_target = Regex::new(r#"target\s*=\s*"wasm32-wasi""#).expect("valid pattern");
        let wasm = matches!(app.find_match(&wasm_target, ".cargo/config.toml"), Ok(true));
        let musl = !wasm
            && !env.config_is_truthy("NO_MUSL")
            && toolchain_file(app).is_none()
            && !uses_openssl;
        let target = if wasm {
            Some("wasm32-wasi".to_string())
        } else if musl {
            Some(format!("{}-unknown-linux-musl", std::env::consts::ARCH))
        } else {
            None
        };
        let workspace_bin = match env.config("CARGO_WORKSPACE") {
            Some(name) => Some(name),
            None => match manifest.as_ref().and_then(|m| m.workspace.as_ref()) {
                Some(workspace) => workspace_binary(app, workspace)?,
                None => None,
            },
        };
        let package_name = manifest
            .as_ref()
            .and_then(|m| m.package.as_ref())
            .map(|p| p.name.clone());
        let mut bins = Vec::new();
        if let Some(name) = package_name {
            if app.includes_file("src/main.rs") {
                bins.push(name);
            }
        }
        if app.includes_directory("src/bin") {
            for file in app.find_files("src/bin/*")? {
                let name = file
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                let parts: Vec<&str> = name.split('.').collect();
                bins.push(parts[..parts.len() - 1].join("."));
            }
        }
        Ok(Self {
            manifest,
            target,
            uses_openssl,
            wasm,
            musl,
            workspace_bin,
            bins,
        })
    }

    fn bin_suffix(&self) -> &'static str {
        if self.wasm {
            ".wasm"
        } else {
            ""
        }
    }
}

fn parse_manifest(app: &App, path: &str) -> Result<Manifest, PlanError> {
    let text = app.read_file(path)?;
    Manifest::from_str(&text).map_err(|e| {
        crate::AppError::Parse {
            path: app.relative(path),
            format: "Cargo.toml",
            message: e.to_string(),
        }
        .into()
    })
}

fn toolchain_file(app: &App) -> Option<&'static str> {
    ["rust-toolchain", "rust-toolchain.toml"]
        .into_iter()
        .find(|f| app.includes_file(f))
}

fn rust_package(app: &App, env: &Environment, info: &CrateInfo) -> Result<Pkg, PlanError> {
    if let Some(version) = env.config("RUST_VERSION") {
        return Ok(Pkg::new(format!("rust-bin.stable.\"{version}\".default")));
    }
    if let Some(file) = toolchain_file(app) {
        return Ok(Pkg::new(format!(
            "(rust-bin.fromRustupToolchainFile ../{file})"
        )));
    }
    let rust_version = info
        .manifest
        .as_ref()
        .and_then(|m| m.package.as_ref())
        .and_then(|p| p.rust_version.as_ref());
    match rust_version {
        None => Ok(Pkg::new(DEFAULT_RUST_PKG)),
        Some(version) => {
            let version = version.get().map_err(|_| PlanError::Provider {
                provider: "rust",
                message: "Cargo.toml: `rust-version` is inherited from the workspace, which kiln cannot read here; set NIXPACKS_RUST_VERSION".into(),
            })?;
            Ok(Pkg::new(format!("rust-bin.stable.\"{version}\".default")))
        }
    }
}

fn setup(app: &App, env: &Environment, info: &CrateInfo) -> Result<Phase, PlanError> {
    let mut rust = rust_package(app, env, info)?;
    if let Some(target) = &info.target {
        rust = rust.with_override("targets", &format!("[\"{target}\"]"));
    }
    let mut setup = Phase::setup(Some(vec![
        Pkg::new("binutils"),
        Pkg::new("gcc"),
        rust.from_overlay(RUST_OVERLAY),
    ]));
    if let Some(file) = toolchain_file(app) {
        setup.add_file_dependency(file);
    }
    if info.uses_openssl {
        setup.add_nix_libs(&["openssl", "openssl.dev"]);
    }
    if info.musl {
        setup.add_nix_pkgs(&[Pkg::new("musl"), Pkg::new("musl.dev")]);
    }
    setup.nixpkgs_archive = Some(NIX_ARCHIVE.into());
    Ok(setup)
}

fn build(app: &App, info: &CrateInfo) -> Result<Phase, PlanError> {
    let mut build = Phase::build(None);
    if !app.includes_file("Cargo.toml") {
        return Ok(build);
    }
    build.add_cmd("mkdir -p bin");
    build.depends_on = Some(vec!["setup".into()]);
    let suffix = info.bin_suffix();
    let (target_flag, target_dir) = match &info.target {
        Some(target) => (
            format!(" --target {target}"),
            format!("target/{target}/release"),
        ),
        None => (String::new(), "target/release".to_string()),
    };
    if let Some(package) = &info.workspace_bin {
        build.add_cmd(format!(
            "cargo build --release --package {package}{target_flag}"
        ));
        build.add_cmd(format!("cp {target_dir}/{package}{suffix} bin"));
    } else if !info.bins.is_empty() {
        build.add_cmd(format!("cargo build --release{target_flag}"));
        for bin in &info.bins {
            build.add_cmd(format!("cp {target_dir}/{bin}{suffix} bin"));
        }
    }
    for dir in CACHE_DIRS {
        build.add_cache_directory(*dir);
    }
    if info.manifest.as_ref().is_some_and(|m| m.package.is_some()) {
        build.add_cache_directory("target");
    }
    Ok(build)
}

fn start(info: &CrateInfo, env: &Environment) -> Result<Option<StartPhase>, PlanError> {
    let (cmd, file) = if let Some(package) = &info.workspace_bin {
        (format!("./bin/{package}"), format!("./bin/{package}"))
    } else if let Some(bin) = start_bin(info, env)? {
        (bin.clone(), bin)
    } else {
        return Ok(None);
    };
    let mut start = StartPhase::new(cmd);
    if info.target.is_some() {
        start.run_in_slim_image();
        start.add_file_dependency(file);
    }
    Ok(Some(start))
}

/// The binary to start: the only one, else `NIXPACKS_RUST_BIN`, else `default-run`.
fn start_bin(info: &CrateInfo, env: &Environment) -> Result<Option<String>, PlanError> {
    if info.bins.is_empty() {
        return Ok(None);
    }
    let bin = if info.bins.len() == 1 {
        Some(info.bins[0].clone())
    } else if let Some(wanted) = env.config("RUST_BIN") {
        if !info.bins.contains(&wanted) {
            return Err(PlanError::Provider {
                provider: "rust",
                message: format!(
                    "NIXPACKS_RUST_BIN={wanted} names no binary of this crate; binaries: {}",
                    info.bins.join(", ")
                ),
            });
        }
        Some(wanted)
    } else {
        info.manifest
            .as_ref()
            .and_then(|m| m.package.as_ref())
            .and_then(|p| p.default_run.clone())
    };
    Ok(bin.map(|b| format!("./bin/{b}{}", info.bin_suffix())))
}

/// The first workspace member (default members first) that builds a binary.
fn workspace_binary(app: &App, workspace: &Workspace) -> Result<Option<String>, PlanError> {
    let candidates = workspace
        .default_members
        .iter()
        .chain(&workspace.members)
        .filter(|m| !workspace.exclude.contains(m));
    for member in candidates {
        let dirs = if member.contains('*') || member.contains('?') {
            app.find_directories(member)?
                .into_iter()
                .map(|d| d.to_string_lossy().to_string())
                .collect()
        } else {
            vec![member.clone()]
        };
        for dir in dirs {
            let path = format!("{dir}/Cargo.toml");
            let mut manifest = parse_manifest(app, &path)?;
            // Fills in the binaries and library the member's files imply.
            manifest
                .complete_from_path(&app.source.join(&path))
                .map_err(|e| PlanError::Provider {
                    provider: "rust",
                    message: format!("{path}: {e}"),
                })?;
            if let Some(package) = &manifest.package {
                if !manifest.bin.is_empty() || manifest.lib.is_none() {
                    return Ok(Some(package.name.clone()));
                }
            }
        }
    }
    Ok(None)
}
