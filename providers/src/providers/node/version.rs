//! Which `nodejs_*` package an app gets.

use node_semver::Range;

use super::package_json::PackageJson;
use crate::{App, Environment, PlanError};

const DEFAULT_NODE_VERSION: u32 = 18;
const AVAILABLE_NODE_VERSIONS: &[u32] = &[14, 16, 18, 20, 22, 23];

/// The Nix attribute for the app's Node version: `NIXPACKS_NODE_VERSION`,
/// else `engines.node`, else `.nvmrc`, else `.node-version`, else 18.
pub fn node_pkg(pkg: &PackageJson, app: &App, env: &Environment) -> Result<String, PlanError> {
    let nvmrc = if app.includes_file(".nvmrc") {
        Some(parse_nvmrc(&app.read_file(".nvmrc")?))
    } else {
        None
    };
    let node_version_file = if app.includes_file(".node-version") {
        Some(app.read_file(".node-version")?.trim().replace('v', ""))
    } else {
        None
    };
    let requested = env
        .config("NODE_VERSION")
        .or_else(|| pkg.engines.as_ref().and_then(|e| e.get("node").cloned()))
        .or(nvmrc)
        .or(node_version_file);
    Ok(match requested.as_deref() {
        None | Some("*") => pkg_for(DEFAULT_NODE_VERSION),
        Some(range) => pkg_for_range(range),
    })
}

fn pkg_for(version: u32) -> String {
    let version = if AVAILABLE_NODE_VERSIONS.contains(&version) {
        version
    } else {
        DEFAULT_NODE_VERSION
    };
    format!("nodejs_{version}")
}

/// The newest even (LTS) version the range allows; an unparsable range
/// means the default, as upstream does.
fn pkg_for_range(range: &str) -> String {
    let Ok(range) = range.parse::<Range>() else {
        tracing::warn!("node version `{range}` is not a valid version range; using Node {DEFAULT_NODE_VERSION}");
        return pkg_for(DEFAULT_NODE_VERSION);
    };
    AVAILABLE_NODE_VERSIONS
        .iter()
        .rev()
        .filter(|v| *v % 2 == 0)
        .find(|v| {
            format!("{v}.x.x")
                .parse::<Range>()
                .is_ok_and(|major| major.allows_any(&range))
        })
        .map_or_else(|| pkg_for(DEFAULT_NODE_VERSION), |v| pkg_for(*v))
}

/// `.nvmrc`: an LTS code name or a version with an optional `v`.
fn parse_nvmrc(text: &str) -> String {
    let trimmed = text.trim();
    let lts = match trimmed {
        "lts/*" | "lts/jod" => Some(22),
        "lts/argon" => Some(4),
        "lts/boron" => Some(6),
        "lts/carbon" => Some(8),
        "lts/dubnium" => Some(10),
        "lts/erbium" => Some(12),
        "lts/fermium" => Some(14),
        "lts/gallium" => Some(16),
        "lts/hydrogen" => Some(18),
        "lts/iron" => Some(20),
        _ => None,
    };
    match lts {
        Some(major) => major.to_string(),
        None => trimmed.strip_prefix('v').unwrap_or(trimmed).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_pick_the_newest_allowed_lts() {
        assert_eq!(pkg_for_range(">=14"), "nodejs_22");
        assert_eq!(pkg_for_range("^16.2"), "nodejs_16");
        assert_eq!(pkg_for_range("20.x"), "nodejs_20");
        assert_eq!(pkg_for_range("12"), "nodejs_18");
        assert_eq!(pkg_for_range("not a version"), "nodejs_18");
    }

    #[test]
    fn nvmrc_names_and_prefixes() {
        assert_eq!(parse_nvmrc("lts/iron\n"), "20");
        assert_eq!(parse_nvmrc("v18.1.0"), "18.1.0");
        assert_eq!(parse_nvmrc("lts/unknown"), "lts/unknown");
    }
}
