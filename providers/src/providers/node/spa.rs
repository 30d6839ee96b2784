//! Single-page apps built with Vite and served by Caddy.

use regex::Regex;

use super::package_json::PackageJson;
use crate::plan::{Phase, Pkg, StaticAssets};
use crate::{App, Environment};

/// The nixpkgs revision upstream takes Caddy from.
const CADDY_NIXPKGS_ARCHIVE: &str = "ba913eda2df8eb72147259189d55932012df6301";

/// Whether the app is built with Vite.
pub fn is_vite(app: &App, pkg: &PackageJson) -> bool {
    pkg.has_dependency("vite")
        || app.includes_file("vite.config.js")
        || app.includes_file("vite.config.ts")
        || pkg
            .script("build")
            .is_some_and(|b| b.to_lowercase().contains("vite build"))
}

/// Frameworks whose Vite build is a plain SPA; server-rendered ones
/// (Remix, React Router framework mode, SvelteKit) are not.
fn is_plain_spa_framework(pkg: &PackageJson) -> bool {
    (pkg.has_dependency("react")
        && !pkg.has_dependency("@remix-run/react")
        && !pkg.has_dependency("@react-router/node"))
        || pkg.has_dependency("vue")
        || (pkg.has_dependency("svelte") && !pkg.has_dependency("@sveltejs/kit"))
        || pkg.has_dependency("preact")
        || pkg.has_dependency("lit")
        || pkg.has_dependency("solid-js")
        || pkg.has_dependency("@builder.io/qwik")
}

/// The phase installing Caddy, when the app is served as an SPA:
/// a Vite app of a plain SPA framework, or any Vite app with
/// `NIXPACKS_SPA_OUT_DIR`; `NIXPACKS_SPA_CADDY=false` turns it off.
pub fn caddy_phase(app: &App, env: &Environment, pkg: &PackageJson) -> Option<Phase> {
    if env
        .config("SPA_CADDY")
        .is_some_and(|v| matches!(v.to_lowercase().as_str(), "false" | "0"))
    {
        return None;
    }
    if !is_vite(app, pkg) || !(is_plain_spa_framework(pkg) || env.config("SPA_OUT_DIR").is_some()) {
        return None;
    }
    let mut caddy = Phase::new("caddy");
    caddy.nixpkgs_archive = Some(CADDY_NIXPKGS_ARCHIVE.into());
    caddy.add_nix_pkgs(&[Pkg::new("caddy")]);
    caddy.add_cmd(format!(
        "caddy fmt --overwrite {}",
        app.asset_path("Caddyfile")
    ));
    caddy.depends_on_phase("setup");
    Some(caddy)
}

/// The Caddy configuration, written to the assets folder.
pub fn static_assets() -> StaticAssets {
    StaticAssets::from([(
        "Caddyfile".to_string(),
        include_str!("Caddyfile").to_string(),
    )])
}

/// The command serving the SPA.
pub fn start_command(app: &App) -> String {
    format!(
        "exec caddy run --config {} --adapter caddyfile 2>&1",
        app.asset_path("Caddyfile")
    )
}

/// Vite's output folder: `outDir` in the Vite config, else `--outDir` in
/// the build script, else `dist`.
pub fn vite_output_directory(app: &App, pkg: &PackageJson) -> String {
    let config = app
        .read_file("vite.config.js")
        .or_else(|_| app.read_file("vite.config.ts"));
    let in_config = Regex::new(r#"outDir:\s*['"`](.*?)['"`]"#).expect("valid pattern");
    if let Some(dir) = config
        .ok()
        .and_then(|c| in_config.captures(&c).map(|m| m[1].to_string()))
    {
        return dir;
    }
    let in_script = Regex::new(r"vite\s+build(?:\s+-[^\s]*)*\s+(?:--outDir)\s+([^-\s;]+)")
        .expect("valid pattern");
    pkg.script("build")
        .and_then(|b| in_script.captures(b).map(|m| m[1].to_string()))
        .unwrap_or_else(|| "dist".into())
}
