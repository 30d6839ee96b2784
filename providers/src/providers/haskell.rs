//! Haskell apps built with Stack: `package.yaml` beside `.hs` sources;
//! GHC's system libraries from apt; the first executable (by name) starts.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

const STACK_CACHE_DIR: &str = "/root/.stack";
const STACK_WORK_DIR: &str = ".stack-work";
/// What GHC links against on every machine.
const APT_PKGS: &[&str] = &["libgmp-dev", "gcc", "binutils", "make", "zlib1g-dev"];
/// What GHC's LLVM backend needs on ARM machines besides.
const AARCH64_APT_PKGS: &[&str] = &[
    "libnuma1",
    "libnuma-dev",
    "libtinfo-dev",
    "libtinfo5",
    "libc6-dev",
    "libtinfo6",
    "llvm-11",
    "clang",
    "ninja-build",
    "zlib1g-dev",
];

/// The Haskell (Stack) provider.
pub struct Haskell;

#[derive(Debug, Deserialize)]
struct PackageYaml {
    #[serde(default)]
    executables: BTreeMap<String, serde_yaml::Value>,
}

impl Provider for Haskell {
    fn name(&self) -> &'static str {
        "haskell"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("package.yaml") && app.has_match("**/*.hs"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let package: PackageYaml = app.read_yaml("package.yaml")?;
        let executable = package
            .executables
            .keys()
            .next()
            .ok_or_else(|| PlanError::Provider {
                provider: "haskell",
                message: "package.yaml has no executables; add one under `executables:` so there is a program to start".into(),
            })?;
        let mut setup = Phase::setup(Some(vec![Pkg::new("stack")]));
        setup.add_apt_pkgs(APT_PKGS);
        if std::env::consts::ARCH == "aarch64" {
            setup.add_apt_pkgs(AARCH64_APT_PKGS);
        }
        let mut install = Phase::install(Some("stack setup".into()));
        install.add_cache_directory(STACK_CACHE_DIR);
        let mut build = Phase::build(Some("stack install".into()));
        build.add_cache_directory(STACK_CACHE_DIR);
        build.add_cache_directory(STACK_WORK_DIR);
        Ok(Some(BuildPlan::new(
            vec![setup, install, build],
            Some(StartPhase::new(format!("/root/.local/bin/{executable}"))),
        )))
    }
}
