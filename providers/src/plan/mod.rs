//! The build plan: phases, start phase, variables and static assets, in the
//! Nixpacks plan schema, and how plans from several sources merge
//! (`merge`) and are settled before printing (`pin`).

mod merge;
mod pin;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::order::{self, OrderError};

pub use merge::{fill_hole, remove_holes};

/// Environment variables of a plan, sorted by name as upstream prints them.
pub type Variables = BTreeMap<String, String>;

/// Files written into the image's asset folder, by file name.
pub type StaticAssets = BTreeMap<String, String>;

/// Phases of a plan by name.
pub type Phases = BTreeMap<String, Phase>;

/// The item in a list that stands for "the lower plan's items here".
pub const HOLE: &str = "...";

/// The nixpkgs revision upstream pins phases that use Nix to.
pub const NIXPKGS_ARCHIVE: &str = "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db";

/// The nixpkgs revision upstream pins when the Debian base (legacy OpenSSL) is asked for.
pub const NIXPKGS_ARCHIVE_LEGACY_OPENSSL: &str = "a0b7e70db7a55088d3de0cc370a59f9fbcc906c3";

/// Upstream's default build image on Ubuntu.
pub const UBUNTU_BASE_IMAGE: &str = "ghcr.io/railwayapp/nixpacks:ubuntu-1745885067";

/// Upstream's default build image on Debian (`NIXPACKS_DEBIAN=1`).
pub const DEBIAN_BASE_IMAGE: &str = "ghcr.io/railwayapp/nixpacks:debian-1745885067";

/// Everything needed to build an app: the Nixpacks plan.
///
/// Unset fields are omitted when printed, as upstream does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildPlan {
    /// Providers to use, in order; `"..."` stands for the detected ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub providers: Option<Vec<String>>,
    /// Image the build phases run in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_image: Option<String>,
    /// Environment of the build and of the image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variables: Option<Variables>,
    /// Files put in the image's `/assets/` folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_assets: Option<StaticAssets>,
    /// Phases by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
    /// How the image starts.
    #[serde(rename = "start", skip_serializing_if = "Option::is_none")]
    pub start_phase: Option<StartPhase>,
}

/// One step of a build: its packages, commands and caches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// The phase's name; printed plans leave it out, the map key says it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Phases that must run before this one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub depends_on: Option<Vec<String>>,
    /// Nix attribute names to install.
    #[serde(alias = "nixPackages", skip_serializing_if = "Option::is_none")]
    pub nix_pkgs: Option<Vec<String>>,
    /// Nix attribute names whose `lib` folders go on `LD_LIBRARY_PATH`.
    #[serde(alias = "nixLibraries", skip_serializing_if = "Option::is_none")]
    pub nix_libs: Option<Vec<String>>,
    /// URLs of Nix overlays the packages come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nix_overlays: Option<Vec<String>>,
    /// The nixpkgs revision the packages are taken from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nixpkgs_archive: Option<String>,
    /// Debian packages to install with apt.
    #[serde(alias = "aptPackages", skip_serializing_if = "Option::is_none")]
    pub apt_pkgs: Option<Vec<String>>,
    /// Shell commands to run.
    #[serde(alias = "commands", skip_serializing_if = "Option::is_none")]
    pub cmds: Option<Vec<String>>,
    /// Files of the app the phase sees; unset means all of them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_include_files: Option<Vec<String>>,
    /// Folders kept between builds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_directories: Option<Vec<String>>,
    /// Folders added to `PATH`.
    #[serde(alias = "envPaths", skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// How the image starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartPhase {
    /// The command the image runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmd: Option<String>,
    /// A separate image to run in, with only the listed files copied over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_image: Option<String>,
    /// Files copied into the run image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_include_files: Option<Vec<String>>,
    /// User the command runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// A Nix package a provider asks for, maybe from an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkg {
    /// Attribute name, or a full Nix expression such as an override.
    pub name: String,
    /// URL of the overlay that provides it.
    pub overlay: Option<String>,
}

impl Pkg {
    /// A package from nixpkgs itself.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            overlay: None,
        }
    }

    /// The same package taken from an overlay.
    pub fn from_overlay(mut self, overlay: impl Into<String>) -> Self {
        self.overlay = Some(overlay.into());
        self
    }

    /// The package with one input replaced: `(name.override { key = value; })`.
    pub fn with_override(mut self, key: &str, value: &str) -> Self {
        self.name = format!("({}.override {{ {key} = {value}; }})", self.name);
        self
    }
}

impl Phase {
    /// An empty phase with a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The `setup` phase installing these packages.
    pub fn setup(pkgs: Option<Vec<Pkg>>) -> Self {
        let mut phase = Self::new("setup");
        if let Some(pkgs) = pkgs {
            phase.nix_overlays = Some(pkgs.iter().filter_map(|p| p.overlay.clone()).collect());
            phase.nix_pkgs = Some(pkgs.into_iter().map(|p| p.name).collect());
        }
        phase
    }

    /// The `install` phase, after `setup`.
    pub fn install(cmd: Option<String>) -> Self {
        Self {
            cmds: cmd.map(|c| vec![c]),
            depends_on: Some(vec!["setup".into()]),
            ..Self::new("install")
        }
    }

    /// The `build` phase, after `install`.
    pub fn build(cmd: Option<String>) -> Self {
        Self {
            cmds: cmd.map(|c| vec![c]),
            depends_on: Some(vec!["install".into()]),
            ..Self::new("build")
        }
    }

    /// The phase's name, empty when unnamed.
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }

    /// Whether the phase installs anything with Nix.
    pub fn uses_nix(&self) -> bool {
        !self.nix_pkgs.as_deref().unwrap_or_default().is_empty()
            || !self.nix_libs.as_deref().unwrap_or_default().is_empty()
    }

    /// Adds a phase that must run first.
    pub fn depends_on_phase(&mut self, name: impl Into<String>) {
        self.depends_on
            .get_or_insert_with(Vec::new)
            .push(name.into());
    }

    /// Adds Nix packages (and their overlays).
    pub fn add_nix_pkgs(&mut self, pkgs: &[Pkg]) {
        self.nix_overlays
            .get_or_insert_with(Vec::new)
            .extend(pkgs.iter().filter_map(|p| p.overlay.clone()));
        self.nix_pkgs
            .get_or_insert_with(Vec::new)
            .extend(pkgs.iter().map(|p| p.name.clone()));
    }

    /// Adds Nix libraries.
    pub fn add_nix_libs(&mut self, libs: &[&str]) {
        self.nix_libs
            .get_or_insert_with(Vec::new)
            .extend(libs.iter().map(|l| l.to_string()));
    }

    /// Adds apt packages.
    pub fn add_apt_pkgs(&mut self, pkgs: &[&str]) {
        self.apt_pkgs
            .get_or_insert_with(Vec::new)
            .extend(pkgs.iter().map(|p| p.to_string()));
    }

    /// Adds a command.
    pub fn add_cmd(&mut self, cmd: impl Into<String>) {
        self.cmds.get_or_insert_with(Vec::new).push(cmd.into());
    }

    /// Adds a file the phase needs; the phase then sees only the listed files.
    pub fn add_file_dependency(&mut self, file: impl Into<String>) {
        self.only_include_files
            .get_or_insert_with(Vec::new)
            .push(file.into());
    }

    /// Adds a cache folder; the list stays sorted and without duplicates, as upstream keeps it.
    pub fn add_cache_directory(&mut self, dir: impl Into<String>) {
        let dirs = self.cache_directories.get_or_insert_with(Vec::new);
        dirs.push(dir.into());
        dirs.sort();
        dirs.dedup();
    }

    /// Adds a folder to `PATH`.
    pub fn add_path(&mut self, path: impl Into<String>) {
        self.paths.get_or_insert_with(Vec::new).push(path.into());
    }
}

impl StartPhase {
    /// A start phase running this command.
    pub fn new(cmd: impl Into<String>) -> Self {
        Self {
            cmd: Some(cmd.into()),
            ..Self::default()
        }
    }

    /// Runs the app in upstream's slim image with only the listed files.
    pub fn run_in_slim_image(&mut self) {
        self.run_image = Some("ubuntu:noble".into());
    }

    /// Adds a file copied into the run image.
    pub fn add_file_dependency(&mut self, file: impl Into<String>) {
        self.only_include_files
            .get_or_insert_with(Vec::new)
            .push(file.into());
    }
}

impl BuildPlan {
    /// A plan of these phases and start phase.
    pub fn new(phases: Vec<Phase>, start: Option<StartPhase>) -> Self {
        Self {
            phases: Some(
                phases
                    .into_iter()
                    .map(|p| (p.name().to_string(), p))
                    .collect(),
            ),
            start_phase: start,
            ..Self::default()
        }
    }

    /// Adds (or replaces) a phase.
    pub fn add_phase(&mut self, phase: Phase) {
        self.phases
            .get_or_insert_with(Phases::new)
            .insert(phase.name().to_string(), phase);
    }

    /// The phase with this name.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.as_ref()?.get(name)
    }

    /// The phase with this name, to change it.
    pub fn phase_mut(&mut self, name: &str) -> Option<&mut Phase> {
        self.phases.as_mut()?.get_mut(name)
    }

    /// Sets the start phase.
    pub fn set_start_phase(&mut self, start: StartPhase) {
        self.start_phase = Some(start);
    }

    /// Adds variables, replacing those with the same name.
    pub fn add_variables(&mut self, variables: Variables) {
        self.variables
            .get_or_insert_with(Variables::new)
            .extend(variables);
    }

    /// Adds static assets, replacing those with the same name.
    pub fn add_static_assets(&mut self, assets: StaticAssets) {
        self.static_assets
            .get_or_insert_with(StaticAssets::new)
            .extend(assets);
    }

    /// The phases in the order they run: each after every phase it
    /// depends on, ties broken by name.
    pub fn phases_in_order(&self) -> Result<Vec<&Phase>, OrderError> {
        order::topological(
            self.phases
                .as_ref()
                .map(|p| p.values())
                .into_iter()
                .flatten(),
        )
    }

    /// The plan as upstream's pretty JSON (phase names left out).
    pub fn to_json(&self) -> String {
        let plan = self.without_phase_names();
        serde_json::to_string_pretty(&plan).expect("a plan is always representable as JSON")
    }

    /// The plan as TOML, ready for `nixpacks.toml` (phase names left out).
    pub fn to_toml(&self) -> String {
        let plan = self.without_phase_names();
        toml_v05::to_string_pretty(&plan).expect("a plan is always representable as TOML")
    }

    fn without_phase_names(&self) -> BuildPlan {
        let mut plan = self.clone();
        for phase in plan.phases.iter_mut().flat_map(|p| p.values_mut()) {
            phase.name = None;
        }
        plan
    }
}
