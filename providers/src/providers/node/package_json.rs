//! The parts of `package.json` the node provider reads.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;
use serde_json::Value;

/// `package.json`, as far as planning needs it.
#[derive(Debug, Default, Deserialize)]
pub struct PackageJson {
    /// `scripts`
    pub scripts: Option<HashMap<String, String>>,
    /// `engines`, for `engines.node`
    pub engines: Option<HashMap<String, String>>,
    /// `main`, the entry file
    pub main: Option<String>,
    /// `dependencies`
    pub dependencies: Option<HashMap<String, String>>,
    /// `devDependencies`
    #[serde(rename = "devDependencies")]
    pub dev_dependencies: Option<HashMap<String, String>>,
    /// `packageManager`, e.g. `pnpm@8.15.4`
    #[serde(rename = "packageManager")]
    pub package_manager: Option<String>,
    /// `workspaces`
    pub workspaces: Option<Value>,
    /// `cacheDirectories`, extra build caches
    #[serde(rename = "cacheDirectories")]
    pub cache_directories: Option<Vec<String>>,
}

impl PackageJson {
    /// Whether the app depends on `name`. Like upstream, dev dependencies
    /// count only when there is no `dependencies` object at all.
    pub fn has_dependency(&self, name: &str) -> bool {
        match (&self.dependencies, &self.dev_dependencies) {
            (Some(deps), _) => deps.contains_key(name),
            (None, Some(dev)) => dev.contains_key(name),
            (None, None) => false,
        }
    }

    /// Names of dependencies and dev dependencies.
    pub fn all_dependencies(&self) -> BTreeSet<&str> {
        self.dependencies
            .iter()
            .chain(&self.dev_dependencies)
            .flat_map(|deps| deps.keys().map(String::as_str))
            .collect()
    }

    /// The `script` command, if the app defines it.
    pub fn script(&self, name: &str) -> Option<&str> {
        self.scripts.as_ref()?.get(name).map(String::as_str)
    }

    /// `workspaces` when it is a plain list of globs.
    pub fn workspace_globs(&self) -> Vec<String> {
        match &self.workspaces {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(String::from))
                .collect(),
            _ => Vec::new(),
        }
    }
}
