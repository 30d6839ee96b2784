//! Swift apps (Vapor too): `Package.swift`; the Swift version from
//! `.swift-version` or the `swift-tools-version` line picks a nixpkgs
//! revision; the executable target under `Sources/` is built statically.

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase};
use crate::{App, Environment, PlanError};

const DEFAULT_SWIFT_VERSION: &str = "5.8";
/// Swift version and the nixpkgs revision that has it.
const SWIFT_ARCHIVES: &[(&str, &str)] = &[
    ("3.1", "aeaa79dc82980869a88a5955ea3cd3e1944b7d80"),
    ("3.1.1", "8414d8386b9a6b855b291fb3f01a4e3b04c08bbb"),
    ("4.0.3", "2c9d2d65266c2c3aca1e4c80215de8bee5295b04"),
    ("4.1", "92a047a6c4d46a222e9c323ea85882d0a7a13af8"),
    ("4.1.3", "a3962299f14944a0e9ccf8fd84bd7be524b74cd6"),
    ("4.2.1", "7ff8a16f0726342f0a25697867d8c1306d4da7b0"),
    ("4.2.3", "3fa154fd7fed3d6a94322bf08a6def47d6f8e0f6"),
    ("5.0.1", "4599f2bb9a5a6b1482e72521ead95cb24e0aa819"),
    ("5.0.2", "a9eb3eed170fa916e0a8364e5227ee661af76fde"),
    ("5.1.1", "9986226d5182c368b7be1db1ab2f7488508b5a87"),
    ("5.4", "c82b46413401efa740a0b994f52e9903a4f6dcd5"),
    ("5.4.2", "c82b46413401efa740a0b994f52e9903a4f6dcd5"),
    ("5.5.2", "7592790b9e02f7f99ddcb1bd33fd44ff8df6a9a7"),
    ("5.5.3", "7cf5ccf1cdb2ba5f08f0ac29fc3d04b0b59a07e4"),
    ("5.6.2", "3c3b3ab88a34ff8026fc69cb78febb9ec9aedb16"),
    ("5.7.3", "8cad3dbe48029cb9def5cdb2409a6c80d3acfe2e"),
    ("5.8", "9957cd48326fe8dbd52fdc50dd2502307f188b0d"),
];

/// The Swift provider.
pub struct Swift;

impl Provider for Swift {
    fn name(&self) -> &'static str {
        "swift"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(app.includes_file("Package.swift"))
    }

    fn plan(&self, app: &App, _env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut setup = Phase::setup(Some(
            ["coreutils", "swift", "clang", "zlib", "zlib.dev"]
                .into_iter()
                .map(Pkg::new)
                .collect(),
        ));
        setup.nixpkgs_archive = Some(archive(&swift_version(app)?).into());

        let mut install = Phase::install(Some("swift package resolve".into()));
        install.add_file_dependency("Package.swift");
        if app.includes_file("Package.resolved") {
            install.add_file_dependency("Package.resolved");
        }

        let name = executable(app)?;
        let mut build = Phase::build(Some(
            "CC=clang++ swift build -c release --static-swift-stdlib".into(),
        ));
        build.add_cmd(format!(
            "cp ./.build/release/{name} ./{name} && rm -rf ./.build"
        ));
        Ok(Some(BuildPlan::new(
            vec![setup, install, build],
            Some(StartPhase::new(format!("./{name}"))),
        )))
    }
}

/// The first line of `.swift-version`, else the `swift-tools-version`
/// comment of `Package.swift`, else the default.
fn swift_version(app: &App) -> Result<String, PlanError> {
    if app.includes_file(".swift-version") {
        let text = app.read_file(".swift-version")?;
        return Ok(text.lines().next().unwrap_or_default().trim().to_string());
    }
    let manifest = app.read_file("Package.swift")?;
    Ok(manifest
        .lines()
        .find(|line| line.contains("swift-tools-version:"))
        .map_or_else(
            || DEFAULT_SWIFT_VERSION.to_string(),
            |line| {
                line.replace("swift-tools-version:", "")
                    .replace("//", "")
                    .trim()
                    .to_string()
            },
        ))
}

/// The nixpkgs revision with this Swift, else the default version's.
fn archive(version: &str) -> &'static str {
    let find = |wanted: &str| {
        SWIFT_ARCHIVES
            .iter()
            .find(|(known, _)| *known == wanted)
            .map(|(_, rev)| *rev)
    };
    find(version)
        .or_else(|| find(DEFAULT_SWIFT_VERSION))
        .expect("the default version has an archive")
}

/// The target folder under `Sources/` holding the first `main.swift`.
fn executable(app: &App) -> Result<String, PlanError> {
    let main = app
        .find_files("Sources/**/main.swift")?
        .iter()
        .map(|path| app.relative(path))
        .find(|path| !path.contains(".build"));
    main.as_deref()
        .and_then(|path| path.split('/').nth(1))
        .map(String::from)
        .ok_or_else(|| PlanError::Provider {
            provider: "swift",
            message: "no Sources/<target>/main.swift found; the executable target needs one".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app_with(files: &[(&str, &str)]) -> (tempfile::TempDir, App) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        let app = App::new(dir.path()).unwrap();
        (dir, app)
    }

    #[test]
    fn version_file_wins_over_the_tools_version_line() {
        let manifest = ("Package.swift", "// swift-tools-version:5.7.3\n");
        let (_dir, app) = app_with(&[manifest]);
        assert_eq!(swift_version(&app).unwrap(), "5.7.3");
        let (_dir, app) = app_with(&[manifest, (".swift-version", " 5.4 \n5.8\n")]);
        assert_eq!(swift_version(&app).unwrap(), "5.4");
        let (_dir, app) = app_with(&[("Package.swift", "import PackageDescription\n")]);
        assert_eq!(swift_version(&app).unwrap(), DEFAULT_SWIFT_VERSION);
    }

    #[test]
    fn executable_is_the_target_folder_of_main_swift() {
        let (_dir, app) = app_with(&[
            ("Package.swift", ""),
            (".build/checkouts/dep/Sources/Dep/main.swift", ""),
            ("Sources/Run/main.swift", ""),
        ]);
        assert_eq!(executable(&app).unwrap(), "Run");
        let (_dir, app) = app_with(&[("Package.swift", "")]);
        assert!(executable(&app)
            .unwrap_err()
            .to_string()
            .contains("main.swift"));
    }

    #[test]
    fn unknown_versions_get_the_default_archive() {
        assert_eq!(archive("5.4"), "c82b46413401efa740a0b994f52e9903a4f6dcd5");
        assert_eq!(archive("9.9"), archive(DEFAULT_SWIFT_VERSION));
    }
}
