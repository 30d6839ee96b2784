//! Which of the app's files a phase sees at `/app`.
//!
//! Upstream copies the whole app before each phase, so a naive cache key
//! would miss on every edit. Where kiln can tell which files a phase reads,
//! the phase sees only those, and only those key it: `onlyIncludeFiles`
//! when the plan sets them, and the manifests and lockfiles of a Node or
//! pip install whose commands cannot read anything else. Otherwise the
//! phase sees the whole app, and always when a command installs the
//! project itself (`pip install .`, `poetry install`, an npm install that
//! runs the package's own scripts): the plan's `onlyIncludeFiles` then say
//! less than the command reads, and upstream's build fails there (its
//! issue 514); kiln's plan stays the same, its execution sees what the
//! command installs.

use std::path::Path;

use kiln_providers::Phase;

/// Commands that install a Node project's dependencies from its manifests.
const NODE_INSTALL_COMMANDS: [&str; 7] = [
    "npm ci",
    "npm i",
    "npm install",
    "yarn install --frozen-lockfile",
    "yarn install --check-cache",
    "pnpm i --frozen-lockfile",
    "bun i --no-save",
];

/// Files a Node install reads from the project besides `node_modules`.
const NODE_INSTALL_FILES: [&str; 10] = [
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "bun.lockb",
    "bun.lock",
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
];

/// `package.json` scripts a package manager runs while installing the
/// project itself: with any of them the install can read any file.
const INSTALL_SCRIPTS: [&str; 9] = [
    "preinstall",
    "install",
    "postinstall",
    "prepublish",
    "preprepare",
    "prepare",
    "postprepare",
    "dependencies",
    "prepack",
];

/// The pip install upstream's Python plans run for `requirements.txt`.
const PIP_REQUIREMENTS_INSTALL: &str =
    "python -m venv --copies /opt/venv && . /opt/venv/bin/activate && pip install -r requirements.txt";

/// The files (relative to the app) `phase` needs, or `None` for the whole
/// app. `app` is the app as staged for the build.
pub fn phase_files(phase: &Phase, app: &Path) -> Option<Vec<String>> {
    let commands = phase.cmds.as_deref().unwrap_or_default();
    if installs_the_project(commands, app).is_some() {
        return None;
    }
    if let Some(files) = &phase.only_include_files {
        return Some(files.clone());
    }
    if commands.is_empty() {
        return None;
    }
    let node_only = commands.iter().all(|command| {
        NODE_INSTALL_COMMANDS.contains(&command.trim())
            || command.split("&&").all(|part| is_global_setup(part.trim()))
    });
    if node_only {
        return node_install_files(app);
    }
    if commands.len() == 1 && commands[0].trim() == PIP_REQUIREMENTS_INSTALL {
        return pip_install_files(app);
    }
    None
}

/// Whether `part` only installs named packages globally or switches on
/// corepack (upstream's `npm install -g corepack@0.24.1 && corepack
/// enable`): it reads no project file beyond `package.json` (corepack's
/// `packageManager`) and `.npmrc`, which a Node install's view holds.
fn is_global_setup(part: &str) -> bool {
    let words: Vec<&str> = part.split_whitespace().collect();
    match words.as_slice() {
        ["npm", "i" | "install", rest @ ..] if !rest.is_empty() => {
            let global = rest.iter().any(|w| matches!(*w, "-g" | "--global"));
            let named = rest.iter().filter(|w| !w.starts_with('-')).all(|w| {
                let scoped = w.starts_with('@') && !w.contains("..");
                scoped || (!is_local_path(w) && !w.contains('/'))
            });
            global && named
        }
        ["corepack", "enable", names @ ..] => names.iter().all(|n| !n.contains('/')),
        _ => false,
    }
}

/// The part of `commands` that installs the project itself, so reads any
/// of its files: a pip, uv, poetry or pdm install of the project, a
/// `bundle install` whose Gemfile names the app's gemspec, or a Node
/// package manager's install when `package.json` has install scripts.
pub fn installs_the_project(commands: &[String], app: &Path) -> Option<String> {
    commands
        .iter()
        .flat_map(|command| command.split(['&', ';', '|']))
        .map(str::trim)
        .find(|part| {
            let words: Vec<&str> = part.split_whitespace().collect();
            installs_itself(&words, app)
        })
        .map(str::to_string)
}

fn installs_itself(words: &[&str], app: &Path) -> bool {
    let has = |flag: &str| words.contains(&flag);
    let after = |prefix: &[&str]| {
        words
            .windows(prefix.len())
            .position(|w| w == prefix)
            .map(|i| &words[i + prefix.len()..])
    };
    if let Some(args) = after(&["pip", "install"])
        .or_else(|| after(&["pip3", "install"]))
        .or_else(|| after(&["pip", "wheel"]))
    {
        return args.iter().any(|arg| is_local_path(arg));
    }
    if after(&["poetry", "install"]).is_some() {
        return !has("--no-root");
    }
    if after(&["uv", "sync"]).is_some() {
        return !has("--no-install-project");
    }
    if after(&["pdm", "install"]).is_some() || after(&["pdm", "sync"]).is_some() {
        return !has("--no-self");
    }
    if after(&["bundle", "install"]).is_some() {
        return gemfile_names_a_gemspec(app);
    }
    let node_install = ["npm", "yarn", "pnpm", "bun"]
        .iter()
        .any(|tool| words.first() == Some(tool))
        && (words.len() == 1 || matches!(words[1], "ci" | "i" | "install"));
    node_install && runs_install_scripts(app)
}

/// A pip requirement that is a folder or file of the app (`.`, `./pkg`,
/// `.[extra]`, an absolute path), not a name from an index.
fn is_local_path(arg: &str) -> bool {
    let arg = arg.trim_matches(['\'', '"']);
    arg == "."
        || arg.starts_with("./")
        || arg.starts_with("../")
        || arg.starts_with(".[")
        || arg.starts_with('/')
        || arg.starts_with("file:")
}

fn gemfile_names_a_gemspec(app: &Path) -> bool {
    read_regular(&app.join("Gemfile"))
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .is_some_and(|text| {
            text.lines()
                .any(|line| line.split_whitespace().next() == Some("gemspec"))
        })
}

/// Whether `package.json` has a script a package manager runs while
/// installing the project; unreadable counts as yes (the whole app is
/// always correct).
fn runs_install_scripts(app: &Path) -> bool {
    let Some(manifest) = read_regular(&app.join("package.json"))
        .and_then(|text| serde_json::from_slice::<serde_json::Value>(&text).ok())
    else {
        return app.join("package.json").exists();
    };
    manifest
        .get("scripts")
        .and_then(|s| s.as_object())
        .is_some_and(|s| INSTALL_SCRIPTS.iter().any(|n| s.contains_key(*n)))
}

fn node_install_files(app: &Path) -> Option<Vec<String>> {
    let text = read_regular(&app.join("package.json"))?;
    let manifest: serde_json::Value = serde_json::from_slice(&text).ok()?;
    // Workspaces, pnpm hooks and Yarn's plugin folder bring files kiln
    // does not list; such installs see the whole app.
    let reads_more = manifest.get("workspaces").is_some()
        || app.join(".pnpmfile.cjs").exists()
        || app.join("pnpm-workspace.yaml").exists()
        || app.join(".yarn").exists();
    if reads_more {
        return None;
    }
    Some(present(app, &NODE_INSTALL_FILES))
}

fn pip_install_files(app: &Path) -> Option<Vec<String>> {
    let text = String::from_utf8(read_regular(&app.join("requirements.txt"))?).ok()?;
    // Anything that points at a file or folder (`-e .`, `-r other.txt`,
    // `./pkg`, `name @ file://...`) makes pip read more than this file.
    let local = text.lines().map(str::trim).any(|line| {
        line.starts_with('-')
            || line.starts_with('.')
            || line.starts_with('/')
            || line.contains("file:")
    });
    (!local).then(|| present(app, &["requirements.txt"]))
}

/// The bytes of `path` when it is a regular file of the app itself. A
/// symlink (which may point anywhere on the host) or a FIFO is not read:
/// the phase then sees the whole app, which is always correct.
fn read_regular(path: &Path) -> Option<Vec<u8>> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    meta.is_file().then(|| std::fs::read(path).ok()).flatten()
}

fn present(app: &Path, names: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|name| app.join(name).is_file())
        .map(|name| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_app(manifest: &str) -> tempfile::TempDir {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(app.path().join("package.json"), manifest).unwrap();
        std::fs::write(app.path().join("package-lock.json"), "{}").unwrap();
        std::fs::write(app.path().join("server.js"), "").unwrap();
        app
    }

    fn install(cmd: &str) -> Phase {
        Phase {
            name: Some("install".into()),
            cmds: Some(vec![cmd.into()]),
            ..Phase::default()
        }
    }

    #[test]
    fn npm_ci_without_install_scripts_sees_only_manifests() {
        let app = node_app(r#"{"scripts": {"start": "node server.js", "build": "tsc"}}"#);
        assert_eq!(
            phase_files(&install("npm ci"), app.path()),
            Some(vec![
                "package.json".to_string(),
                "package-lock.json".to_string()
            ])
        );
    }

    #[test]
    fn install_scripts_workspaces_and_other_commands_see_the_whole_app() {
        let scripted = node_app(r#"{"scripts": {"postinstall": "node patch.js"}}"#);
        assert_eq!(phase_files(&install("npm ci"), scripted.path()), None);
        let workspaces = node_app(r#"{"workspaces": ["packages/*"]}"#);
        assert_eq!(phase_files(&install("npm ci"), workspaces.path()), None);
        let plain = node_app("{}");
        assert_eq!(
            phase_files(&install("npm ci && npm run build"), plain.path()),
            None
        );
        let broken = node_app("{not json");
        assert_eq!(phase_files(&install("npm ci"), broken.path()), None);
    }

    #[test]
    fn pip_requirements_without_local_references() {
        let app = tempfile::tempdir().unwrap();
        std::fs::write(
            app.path().join("requirements.txt"),
            "flask==3.0\n# comment\n",
        )
        .unwrap();
        assert_eq!(
            phase_files(&install(PIP_REQUIREMENTS_INSTALL), app.path()),
            Some(vec!["requirements.txt".to_string()])
        );
        std::fs::write(app.path().join("requirements.txt"), "-e .\n").unwrap();
        assert_eq!(
            phase_files(&install(PIP_REQUIREMENTS_INSTALL), app.path()),
            None
        );
    }

    /// `phase_files` on another thread, so a read that blocks fails the
    /// test instead of hanging it.
    fn files_within(phase: Phase, app: &Path) -> Option<Vec<String>> {
        let app = app.to_path_buf();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || send.send(phase_files(&phase, &app)));
        receive
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("phase_files hung")
    }

    #[test]
    fn manifests_that_are_links_or_fifos_are_not_read() {
        let outside = tempfile::tempdir().unwrap();
        let fifo = outside.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        std::fs::write(outside.path().join("package.json"), "{}").unwrap();
        for (name, phase) in [
            ("package.json", install("npm ci")),
            ("requirements.txt", install(PIP_REQUIREMENTS_INSTALL)),
        ] {
            for target in [fifo.clone(), outside.path().join("package.json")] {
                let app = tempfile::tempdir().unwrap();
                std::os::unix::fs::symlink(&target, app.path().join(name)).unwrap();
                assert_eq!(files_within(phase.clone(), app.path()), None, "{name}");
            }
            let app = tempfile::tempdir().unwrap();
            let made = std::process::Command::new("mkfifo")
                .arg(app.path().join(name))
                .status();
            assert!(made.unwrap().success());
            assert_eq!(files_within(phase.clone(), app.path()), None, "{name}");
        }
    }

    #[test]
    fn installing_the_project_itself_sees_the_whole_app_over_only_include_files() {
        let app = node_app("{}");
        std::fs::write(app.path().join("Gemfile"), "source 'x'\n  gemspec\n").unwrap();
        let upstream_pyproject = "python -m venv --copies /opt/venv && . /opt/venv/bin/activate \
            && pip install --upgrade build setuptools && pip install .";
        for cmd in [
            upstream_pyproject,
            "pip install -e .",
            "python -m pip install '.[web]'",
            "pip install .[web]",
            "poetry install --no-dev --no-interaction --no-ansi",
            "uv sync --frozen",
            "pdm install --prod",
            "bundle install",
        ] {
            let phase = Phase {
                only_include_files: Some(vec!["pyproject.toml".into()]),
                ..install(cmd)
            };
            assert_eq!(phase_files(&phase, app.path()), None, "{cmd}");
            assert!(installs_the_project(&[cmd.to_string()], app.path()).is_some());
        }
        for cmd in [
            "pip install --upgrade build setuptools",
            "pip install -r requirements.txt",
            "poetry install --no-root",
            "uv sync --no-install-project",
            "pdm install --no-self",
            "npm ci",
        ] {
            assert_eq!(
                installs_the_project(&[cmd.to_string()], app.path()),
                None,
                "{cmd}"
            );
        }
        std::fs::write(app.path().join("Gemfile"), "source 'x'\ngem 'rails'\n").unwrap();
        assert_eq!(
            installs_the_project(&["bundle install".into()], app.path()),
            None
        );
    }

    #[test]
    fn a_node_install_that_runs_the_packages_scripts_sees_the_whole_app() {
        let scripted = node_app(r#"{"scripts": {"prepare": "node build.js"}}"#);
        let phase = Phase {
            only_include_files: Some(vec!["package.json".into()]),
            ..install("npm ci")
        };
        assert_eq!(phase_files(&phase, scripted.path()), None);
        let plain = node_app(r#"{"scripts": {"start": "node server.js"}}"#);
        assert_eq!(
            phase_files(&phase, plain.path()),
            Some(vec!["package.json".to_string()])
        );
    }

    #[test]
    fn corepack_and_global_installs_of_named_packages_keep_the_narrow_view() {
        let app = node_app(r#"{"packageManager": "pnpm@8.15.4"}"#);
        let commands = vec![
            "npm install -g corepack@0.24.1 && corepack enable".to_string(),
            "pnpm i --frozen-lockfile".to_string(),
        ];
        let phase = Phase {
            cmds: Some(commands),
            ..install("")
        };
        assert_eq!(
            phase_files(&phase, app.path()),
            Some(vec![
                "package.json".to_string(),
                "package-lock.json".to_string()
            ])
        );
        let global_cli = install("npm i -g json@11.0.0");
        assert!(phase_files(&global_cli, app.path()).is_some());
        for reads_the_app in [
            "npm i -g ./tools/cli",
            "npm i -g . && corepack enable",
            "npm i json",
            "npm i -g json && node setup.js",
        ] {
            assert_eq!(
                phase_files(&install(reads_the_app), app.path()),
                None,
                "{reads_the_app}"
            );
        }
    }

    #[test]
    fn only_include_files_win() {
        let app = node_app("{}");
        let phase = Phase {
            only_include_files: Some(vec!["Gemfile".into()]),
            ..install("bundle install")
        };
        assert_eq!(
            phase_files(&phase, app.path()),
            Some(vec!["Gemfile".to_string()])
        );
    }
}
