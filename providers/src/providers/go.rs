//! Go apps: modules or a lone `main.go`; the Go version from `go.mod`;
//! `cmd/<name>` layouts and `NIXPACKS_GO_BIN`; static binaries in a slim
//! run image unless `CGO_ENABLED=1`.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

const BINARY: &str = "out";
const GO_BUILD_CACHE_DIR: &str = "/root/.cache/go-build";
const DEFAULT_GO_PKG: &str = "go";
const DEFAULT_ARCHIVE: &str = "e89cf1c932006531f454de7d652163a9a5c86668";
/// `go` directive, Nix attribute, nixpkgs revision with that Go.
const GO_VERSIONS: &[(&str, &str, &str)] = &[
    (
        "1.18",
        "go_1_18",
        "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db",
    ),
    (
        "1.19",
        "go_1_19",
        "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db",
    ),
    (
        "1.20",
        "go_1_20",
        "1f13eabcd6f5b00fe9de9575ac52c66a0e887ce6",
    ),
    (
        "1.21",
        "go_1_21",
        "1f13eabcd6f5b00fe9de9575ac52c66a0e887ce6",
    ),
    ("1.22", "go", "e89cf1c932006531f454de7d652163a9a5c86668"),
    (
        "1.23",
        "go_1_23",
        "05bbf675397d5366259409139039af8077d695ce",
    ),
];

/// The Go provider.
pub struct Go;

impl Provider for Go {
    fn name(&self) -> &'static str {
        "go"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("main.go") || app.includes_file("go.mod"))
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut plan = BuildPlan::default();
        let go_mod = if app.includes_file("go.mod") {
            Some(app.read_file("go.mod")?)
        } else {
            None
        };
        let (pkg, archive) = go_package(go_mod.as_deref());
        let mut setup = Phase::setup(Some(vec![Pkg::new(pkg)]));
        setup.nixpkgs_archive = Some(archive.into());
        plan.add_phase(setup);

        let is_module = go_mod.is_some();
        if is_module {
            let mut install = Phase::install(Some("go mod download".into()));
            install.add_cache_directory(GO_BUILD_CACHE_DIR);
            plan.add_phase(install);
        }

        let mut build = Phase::build(build_command(app, env, is_module));
        build.add_cache_directory(GO_BUILD_CACHE_DIR);
        build.depends_on_phase("setup");
        plan.add_phase(build);

        if app.has_match("**/*.go") {
            let mut start = StartPhase::new(format!("./{BINARY}"));
            if env.get("CGO_ENABLED").unwrap_or("0") != "1" {
                start.run_in_slim_image();
            }
            plan.set_start_phase(start);
        }
        plan.add_variables(Variables::from([("CGO_ENABLED".into(), "0".into())]));
        Ok(Some(plan))
    }
}

fn build_command(app: &App, env: &Environment, is_module: bool) -> Option<String> {
    if let Some(name) = env.config("GO_BIN") {
        return Some(format!("go build -o {BINARY} ./cmd/{name}"));
    }
    let has_root_go_files = app.find_files("*.go").is_ok_and(|files| {
        files
            .iter()
            .any(|f| f.parent() == Some(app.source.as_path()))
    });
    if is_module && has_root_go_files {
        Some(format!("go build -o {BINARY}"))
    } else if app.includes_directory("cmd") {
        app.find_directories("cmd/*")
            .ok()?
            .into_iter()
            .find(|p| p.parent().is_some_and(|parent| parent.ends_with("cmd")))
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()))
            .map(|name| format!("go build -o {BINARY} ./cmd/{name}"))
    } else if is_module {
        Some(format!("go build -o {BINARY}"))
    } else if app.includes_file("main.go") {
        Some(format!("go build -o {BINARY} main.go"))
    } else {
        None
    }
}

/// The Go package for the first line of `go.mod` starting with `go`; a
/// version kiln has no pinned package for gets the default.
fn go_package(go_mod: Option<&str>) -> (&'static str, &'static str) {
    let version = go_mod
        .and_then(|text| text.lines().find(|l| l.trim().starts_with("go")))
        .and_then(|line| line.split_whitespace().nth(1));
    version
        .and_then(|v| GO_VERSIONS.iter().find(|(known, _, _)| *known == v))
        .map_or((DEFAULT_GO_PKG, DEFAULT_ARCHIVE), |(_, pkg, archive)| {
            (*pkg, *archive)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_mod_version_picks_package_and_archive() {
        assert_eq!(go_package(Some("module x\n\ngo 1.20\n")).0, "go_1_20");
        assert_eq!(
            go_package(Some("module x\ngo 1.99\n")),
            (DEFAULT_GO_PKG, DEFAULT_ARCHIVE)
        );
        assert_eq!(go_package(Some("go\n")), (DEFAULT_GO_PKG, DEFAULT_ARCHIVE));
        assert_eq!(go_package(None), (DEFAULT_GO_PKG, DEFAULT_ARCHIVE));
    }
}
