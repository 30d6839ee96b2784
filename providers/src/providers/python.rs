//! Python apps: pip (`requirements.txt`), setuptools, poetry, pdm, uv and
//! pipenv in a venv at `/opt/venv`; versions from `NIXPACKS_PYTHON_VERSION`,
//! `.python-version`, `runtime.txt`, `Pipfile` or `.tool-versions`; Django
//! with Postgres or MySQL.

use std::collections::HashMap;

use regex::Regex;
use serde::Deserialize;

use super::Provider;
use crate::plan::{BuildPlan, Phase, Pkg, StartPhase, Variables};
use crate::{App, Environment, PlanError};

const POETRY_VERSION: &str = "1.3.1";
const PDM_VERSION: &str = "2.13.3";
const UV_VERSION: &str = "0.4.30";
const VENV: &str = "/opt/venv";
const UV_CACHE_DIR: &str = "/root/.cache/uv";
const PIP_CACHE_DIR: &str = "/root/.cache/pip";
const PDM_CACHE_DIR: &str = "/root/.cache/pdm";
const PYTHON_NIXPKGS_ARCHIVE: &str = "bc8f8d1be58e8c8383e683a06e1e1e57893fff87";
const LEGACY_PYTHON_NIXPKGS_ARCHIVE: &str = "5148520bfab61f99fd25fb9ff7bfbb50dad3c9db";

/// The Python provider.
pub struct Python;

/// How dependencies get installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Installer {
    Requirements,
    Setuptools,
    Poetry,
    Pdm,
    Uv,
    Pipenv,
}

impl Provider for Python {
    fn name(&self) -> &'static str {
        "python"
    }

    fn detect(&self, app: &App, _env: &Environment) -> Result<bool, PlanError> {
        Ok(["main.py", "requirements.txt", "pyproject.toml", "Pipfile"]
            .iter()
            .any(|f| app.includes_file(f)))
    }

    fn metadata(&self, app: &App, _env: &Environment) -> Result<Vec<String>, PlanError> {
        let labels = [
            (is_django(app), "django"),
            (uses_postgres(app)?, "postgres"),
            (app.includes_file("poetry.lock"), "poetry"),
            (app.includes_file("pdm.lock"), "pdm"),
        ];
        Ok(labels
            .into_iter()
            .filter(|(on, _)| *on)
            .map(|(_, label)| label.to_string())
            .collect())
    }

    fn plan(&self, app: &App, env: &Environment) -> Result<Option<BuildPlan>, PlanError> {
        let mut plan = BuildPlan::default();
        plan.add_phase(setup(app, env)?);
        plan.add_phase(install(app, env));
        if let Some(start) = start_command(app)? {
            plan.set_start_phase(StartPhase::new(start));
        }
        plan.add_variables(
            [
                ("PYTHONFAULTHANDLER", "1"),
                ("PYTHONUNBUFFERED", "1"),
                ("PYTHONHASHSEED", "random"),
                ("PYTHONDONTWRITEBYTECODE", "1"),
                ("PIP_NO_CACHE_DIR", "1"),
                ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
                ("PIP_DEFAULT_TIMEOUT", "100"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        );
        let tool_versions = if app.includes_file(".tool-versions") {
            tool_versions(&app.read_file(".tool-versions")?)
        } else {
            HashMap::new()
        };
        if app.includes_file("poetry.lock") {
            let version = tool_versions
                .get("poetry")
                .cloned()
                .unwrap_or_else(|| POETRY_VERSION.into());
            plan.add_variables(Variables::from([(
                "NIXPACKS_POETRY_VERSION".into(),
                version,
            )]));
        }
        if app.includes_file("pdm.lock") {
            plan.add_variables(Variables::from([(
                "NIXPACKS_PDM_VERSION".into(),
                PDM_VERSION.into(),
            )]));
        }
        if app.includes_file("uv.lock") {
            let version = tool_versions
                .get("uv")
                .cloned()
                .unwrap_or_else(|| UV_VERSION.into());
            plan.add_variables(Variables::from([
                ("NIXPACKS_UV_VERSION".into(), version),
                ("UV_PROJECT_ENVIRONMENT".into(), VENV.into()),
            ]));
        }
        Ok(Some(plan))
    }
}

fn setup(app: &App, env: &Environment) -> Result<Phase, PlanError> {
    let mut setup = Phase::setup(None);
    let (python, archive) = python_package(app, env)?;
    let mut pkgs = vec![Pkg::new(python)];
    if uses_postgres(app)? {
        pkgs.push(Pkg::new("postgresql_16.dev"));
    }
    if is_django(app) && uses_mysql(app)? {
        pkgs.push(Pkg::new("libmysqlclient.dev"));
    }
    if app.includes_file("Pipfile") {
        pkgs.push(Pkg::new("pipenv"));
    }
    setup.add_nix_pkgs(&pkgs);
    setup.nixpkgs_archive = Some(archive.into());
    if uses_dep(app, "cairo") {
        setup.add_nix_libs(&["cairo"]);
    }
    if uses_dep(app, "pydub") {
        setup.add_nix_pkgs(&[Pkg::new("ffmpeg-headless")]);
    }
    if uses_dep(app, "pdf2image") {
        setup.add_nix_pkgs(&[Pkg::new("poppler_utils")]);
    }
    // Wheels with native code need these at run time.
    setup.add_nix_libs(&["zlib", "stdenv.cc.cc.lib"]);
    setup.add_nix_pkgs(&[Pkg::new("gcc")]);
    Ok(setup)
}

/// The installer: `NIXPACKS_PYTHON_PACKAGE_MANAGER`, else from the files.
fn installer(app: &App, env: &Environment) -> Option<Installer> {
    if let Some(chosen) = env.config("PYTHON_PACKAGE_MANAGER") {
        match chosen.to_lowercase().as_str() {
            "requirements" => return Some(Installer::Requirements),
            "setuptools" => return Some(Installer::Setuptools),
            "poetry" => return Some(Installer::Poetry),
            "pdm" => return Some(Installer::Pdm),
            "uv" => return Some(Installer::Uv),
            "pipenv" => return Some(Installer::Pipenv),
            "skip" => return None,
            "auto" => {}
            other => tracing::warn!(
                "NIXPACKS_PYTHON_PACKAGE_MANAGER=`{other}` is unknown (use requirements, setuptools, poetry, pdm, uv, pipenv, skip or auto); detecting it instead"
            ),
        }
    }
    if app.includes_file("requirements.txt") {
        Some(Installer::Requirements)
    } else if app.includes_file("pyproject.toml") {
        Some(if app.includes_file("poetry.lock") {
            Installer::Poetry
        } else if app.includes_file("pdm.lock") {
            Installer::Pdm
        } else if app.includes_file("uv.lock") {
            Installer::Uv
        } else {
            Installer::Setuptools
        })
    } else if app.includes_file("Pipfile") {
        Some(Installer::Pipenv)
    } else {
        None
    }
}

fn install(app: &App, env: &Environment) -> Phase {
    let Some(installer) = installer(app, env) else {
        return Phase::install(None);
    };
    let venv = format!("python -m venv --copies {VENV} && . {VENV}/bin/activate");
    let (tail, caches): (&str, &[&str]) = match installer {
        Installer::Requirements => ("pip install -r requirements.txt", &[PIP_CACHE_DIR]),
        Installer::Poetry => (
            "pip install poetry==$NIXPACKS_POETRY_VERSION && poetry install --no-dev --no-interaction --no-ansi",
            &[PIP_CACHE_DIR],
        ),
        Installer::Pdm => (
            "pip install pdm==$NIXPACKS_PDM_VERSION && pdm install --prod",
            &[PIP_CACHE_DIR, PDM_CACHE_DIR],
        ),
        Installer::Uv => (
            "pip install uv==$NIXPACKS_UV_VERSION && uv sync --no-dev --frozen",
            &[UV_CACHE_DIR],
        ),
        Installer::Setuptools => (
            "pip install --upgrade build setuptools && pip install .",
            &[PIP_CACHE_DIR],
        ),
        Installer::Pipenv if app.includes_file("Pipfile.lock") => {
            ("PIPENV_VENV_IN_PROJECT=1 pipenv install --deploy", &[PIP_CACHE_DIR])
        }
        Installer::Pipenv => (
            "PIPENV_VENV_IN_PROJECT=1 pipenv install --skip-lock",
            &[PIP_CACHE_DIR],
        ),
    };
    let mut phase = Phase::install(Some(format!("{venv} && {tail}")));
    if installer == Installer::Setuptools {
        phase.add_file_dependency("pyproject.toml");
    }
    phase.add_path(format!("{VENV}/bin"));
    for cache in caches {
        phase.add_cache_directory(*cache);
    }
    phase
}

fn start_command(app: &App) -> Result<Option<String>, PlanError> {
    if is_django(app) {
        return Ok(Some(format!(
            "python manage.py migrate && gunicorn {}",
            django_wsgi_module(app)?
        )));
    }
    if app.includes_file("main.py") {
        return Ok(Some("python main.py".into()));
    }
    Ok(pyproject_module(app).map(|module| format!("python -m {module}")))
}

/// The module `python -m` runs for a `pyproject.toml` project: its first
/// package, else its first module, else its name. Unreadable files give none.
fn pyproject_module(app: &App) -> Option<String> {
    #[derive(Deserialize)]
    struct PyProject {
        project: Option<Project>,
    }
    #[derive(Deserialize)]
    struct Project {
        name: Option<String>,
        packages: Option<Vec<String>>,
        py_modules: Option<Vec<String>>,
        // Declared so a malformed table fails the parse as upstream's does.
        #[serde(rename = "entry_points")]
        _entry_points: Option<HashMap<String, String>>,
    }
    if !app.includes_file("pyproject.toml") {
        return None;
    }
    let project = app.read_toml::<PyProject>("pyproject.toml").ok()?.project?;
    project
        .packages
        .and_then(|p| p.first().cloned())
        .or_else(|| project.py_modules.and_then(|m| m.first().cloned()))
        .or(project.name)
}

fn is_django(app: &App) -> bool {
    app.includes_file("manage.py") && uses_dep(app, "django")
}

fn uses_postgres(app: &App) -> Result<bool, PlanError> {
    Ok(
        any_python_file_matches(app, r"django.db.backends.postgresql")?
            || uses_dep(app, "psycopg2")
            || uses_dep(app, "psycopg"),
    )
}

fn uses_mysql(app: &App) -> Result<bool, PlanError> {
    any_python_file_matches(app, r"django\.db\.backends\.mysql|django_psdb_engine")
}

fn any_python_file_matches(app: &App, pattern: &str) -> Result<bool, PlanError> {
    let re = Regex::new(pattern).expect("valid pattern");
    Ok(app.find_match(&re, "**/*.py")?)
}

/// `WSGI_APPLICATION = "site.wsgi.application"` gives `site.wsgi`.
fn django_wsgi_module(app: &App) -> Result<String, PlanError> {
    let re = Regex::new(r#"WSGI_APPLICATION = ["|'](.*).application["|']"#).expect("valid pattern");
    for file in app.find_files("**/*.py")? {
        if let Some(m) = re.captures(&app.read_file(&app.relative(&file))?) {
            return Ok(m[1].to_string());
        }
    }
    Err(PlanError::Provider {
        provider: "python",
        message: "this Django app has no WSGI_APPLICATION setting; add `WSGI_APPLICATION = \"<project>.wsgi.application\"` to its settings.py".into(),
    })
}

/// Whether a dependency file mentions the package (lowercase text match, as upstream).
fn uses_dep(app: &App, dep: &str) -> bool {
    ["requirements.txt", "pyproject.toml", "Pipfile"]
        .iter()
        .any(|f| {
            app.read_file(f)
                .map(|t| t.to_lowercase().contains(dep))
                .unwrap_or(false)
        })
}

/// `.tool-versions`: `tool version` per line, `#` comments.
fn tool_versions(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (tool, version) = l.split_once(char::is_whitespace)?;
            Some((tool.to_string(), version.trim_start().to_string()))
        })
        .collect()
}

/// The Python package and the nixpkgs revision it comes from.
fn python_package(app: &App, env: &Environment) -> Result<(String, &'static str), PlanError> {
    let mut requested = env.config("PYTHON_VERSION");
    // Upstream lets runtime.txt, Pipfile and .tool-versions override
    // NIXPACKS_PYTHON_VERSION; only .python-version yields to it.
    if requested.is_none() && app.includes_file(".python-version") {
        requested = Some(app.read_file(".python-version")?);
    } else if app.includes_file("runtime.txt") {
        requested = Some(app.read_file("runtime.txt")?);
    } else if app.includes_file("Pipfile") {
        let re = Regex::new(r#"(python_version|python_full_version) = ['|"]([0-9|.]*)"#)
            .expect("valid pattern");
        requested = re
            .captures(&app.read_file("Pipfile")?)
            .map(|m| m[2].to_string());
    } else if app.includes_file(".tool-versions") {
        requested = tool_versions(&app.read_file(".tool-versions")?)
            .get("python")
            .map(|v| v.split('.').take(2).collect::<Vec<_>>().join("."));
    }
    let default = ("python3".to_string(), PYTHON_NIXPKGS_ARCHIVE);
    let Some(requested) = requested else {
        return Ok(default);
    };
    let re = Regex::new(r#"^(?:[\sa-zA-Z-"']*)(\d*)(?:\.*)(\d*)(?:\.*\d*)(?:["']?)$"#)
        .expect("valid pattern");
    let Some(m) = re.captures(requested.trim()) else {
        return Ok(default);
    };
    let major = &m[1];
    let minor = if m[2].is_empty() { "_" } else { &m[2] };
    let (name, archive) = match (major, minor) {
        ("3", "13") => ("python313", PYTHON_NIXPKGS_ARCHIVE),
        ("3", "12") => ("python312", PYTHON_NIXPKGS_ARCHIVE),
        ("3", "11") => ("python311", PYTHON_NIXPKGS_ARCHIVE),
        ("3", "10") => ("python310", PYTHON_NIXPKGS_ARCHIVE),
        ("3", "9") => ("python39", LEGACY_PYTHON_NIXPKGS_ARCHIVE),
        ("3", "8") => ("python38", LEGACY_PYTHON_NIXPKGS_ARCHIVE),
        ("3", "7") => ("python37", LEGACY_PYTHON_NIXPKGS_ARCHIVE),
        ("2", "7" | "_") => ("python27", LEGACY_PYTHON_NIXPKGS_ARCHIVE),
        _ => return Ok(default),
    };
    Ok((name.to_string(), archive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_versions_skip_comments_and_keep_versions() {
        let versions = tool_versions("# c\npython 3.10.4\n poetry  1.7.1\nbad\n");
        assert_eq!(versions["python"], "3.10.4");
        assert_eq!(versions["poetry"], "1.7.1");
        assert_eq!(versions.len(), 2);
    }
}
