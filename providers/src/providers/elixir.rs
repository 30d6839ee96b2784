//! Elixir apps: `mix.exs`; Elixir at the version from
//! `NIXPACKS_ELIXIR_VERSION`, `.elixir-version` or the `elixir:`
//! requirement in `mix.exs`; Phoenix assets and Ecto setup when the
//! project uses them; `mix phx.server` starts it.

use regex::Regex;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

const DEFAULT_ELIXIR_PKG: &str = "elixir";
const ELIXIR_NIXPKGS_ARCHIVE: &str = "c5702bd28cbde41a191a9c2a00501f18941efbd0";
/// The 1.x minor versions nixpkgs has a package of its own for.
const PINNED_MINORS: &[&str] = &["9", "10", "11", "12", "13", "14", "15", "16", "17"];

/// The Elixir provider.
pub struct Elixir;

impl Provider for Elixir {
    fn name(&self) -> &'static str {
        "elixir"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("mix.exs"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mix_exs = app.read_file("mix.exs")?;
        let mut setup = Phase::setup(Some(vec![elixir_package(app, env, &mix_exs)?]));
        setup.nixpkgs_archive = Some(ELIXIR_NIXPKGS_ARCHIVE.into());
        // Native dependencies compile against the C toolchain.
        setup.add_nix_libs(&["stdenv.cc.cc.lib"]);
        setup.add_nix_pkgs(&[Pkg::new("gcc")]);

        let mut install = Phase::install(Some("mix local.hex --force".into()));
        install.add_cmd("mix local.rebar --force");
        install.add_cmd("mix deps.get --only prod");

        let mut build = Phase::build(Some("mix compile".into()));
        if mix_exs.contains("assets.deploy") {
            build.add_cmd("mix assets.deploy");
        }
        if mix_exs.contains("postgrex") && mix_exs.contains("ecto") {
            build.add_cmd("mix ecto.setup");
        }

        let mut plan = BuildPlan::new(
            vec![setup, install, build],
            Some(StartPhase::new("mix phx.server")),
        );
        plan.add_variables(Variables::from([
            ("MIX_ENV".into(), "prod".into()),
            // Without it the VM runs with latin1 names and Elixir warns.
            ("ELIXIR_ERL_OPTIONS".into(), "+fnu".into()),
        ]));
        Ok(Some(plan))
    }
}

fn elixir_package(app: &App, env: &Environment, mix_exs: &str) -> Result<Pkg, PlanError> {
    let version = if let Some(version) = env.config("ELIXIR_VERSION") {
        Some(version)
    } else if app.includes_file(".elixir-version") {
        Some(app.read_file(".elixir-version")?)
    } else {
        let requirement = Regex::new(r"(elixir:[\s].*[> ])([0-9|\.]*)").expect("valid pattern");
        requirement.captures(mix_exs).map(|c| c[2].to_string())
    };
    Ok(Pkg::new(version.map_or_else(
        || DEFAULT_ELIXIR_PKG.to_string(),
        |v| package_for_version(&v),
    )))
}

/// `elixir_1_<minor>` for the 1.x versions nixpkgs pins, else the default.
fn package_for_version(version: &str) -> String {
    let parts = Regex::new(r#"^(?:[\sa-zA-Z-"']*)(\d*)(?:\.*)(\d*)(?:\.*\d*)(?:["']?)$"#)
        .expect("valid pattern");
    let minor = parts
        .captures(version.trim())
        .filter(|c| &c[1] == "1" && PINNED_MINORS.contains(&&c[2]))
        .map(|c| c[2].to_string());
    minor.map_or_else(
        || DEFAULT_ELIXIR_PKG.to_string(),
        |minor| format!("elixir_1_{minor}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_minor_versions_get_their_own_package() {
        assert_eq!(package_for_version("1.14.2\n"), "elixir_1_14");
        assert_eq!(package_for_version("1.9"), "elixir_1_9");
        assert_eq!(package_for_version("~> 1.9"), "elixir");
        assert_eq!(package_for_version("1.8"), "elixir");
        assert_eq!(package_for_version("1.09"), "elixir");
        assert_eq!(package_for_version("2.0"), "elixir");
    }
}
