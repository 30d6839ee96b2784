//! The language providers: each detects its kind of app and plans it.
//!
//! Adding a provider means adding its module here and its entry in
//! [`all`], in the detection order upstream uses.

use crate::app::App;
use crate::environment::Environment;
use crate::plan::BuildPlan;
use crate::PlanError;

pub mod clojure;
pub mod cobol;
pub mod crystal;
pub mod csharp;
pub mod dart;
pub mod deno;
pub mod elixir;
pub mod fsharp;
pub mod gleam;
pub mod go;
pub mod haskell;
pub mod java;
pub mod lunatic;
pub mod node;
pub mod php;
pub mod procfile;
pub mod python;
pub mod ruby;
pub mod rust;
pub mod scala;
pub mod scheme;
pub mod staticfile;
pub mod swift;
pub mod zig;

/// One language or kind of app.
pub trait Provider: Sync {
    /// The name used in `providers` lists and `NIXPACKS_METADATA`.
    fn name(&self) -> &'static str;
    /// Whether the app is of this kind.
    fn detect(&self, app: &App, env: &Environment) -> Result<bool, PlanError>;
    /// The provider's plan for the app.
    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError>;
    /// Labels added after the name in `NIXPACKS_METADATA`.
    fn metadata(&self, _app: &App, _env: &Environment) -> Result<Vec<String>, PlanError> {
        Ok(Vec::new())
    }
}

/// Every provider, in detection order: the first that detects the app wins.
pub fn all() -> &'static [&'static dyn Provider] {
    &[
        &crystal::Crystal,
        &csharp::CSharp,
        &dart::Dart,
        &elixir::Elixir,
        &deno::Deno,
        &fsharp::FSharp,
        &clojure::Clojure,
        &gleam::Gleam,
        &go::Go,
        &haskell::Haskell,
        &scheme::Scheme,
        &java::Java,
        &lunatic::Lunatic,
        &scala::Scala,
        &php::Php,
        &ruby::Ruby,
        &node::Node,
        &python::Python,
        &rust::Rust,
        &swift::Swift,
        &staticfile::Staticfile,
        &zig::Zig,
        &cobol::Cobol,
    ]
}

/// The provider with this name.
pub fn by_name(name: &str) -> Result<&'static dyn Provider, PlanError> {
    all()
        .iter()
        .copied()
        .find(|p| p.name() == name)
        .ok_or_else(|| PlanError::UnknownProvider {
            name: name.into(),
            valid: all().iter().map(|p| p.name()).collect(),
        })
}
