//! Which of the app's files a phase sees at `/app`.
//!
//! Upstream copies the whole app before each phase, so a naive cache key
//! would miss on every edit. Where kiln can tell which files a phase reads,
//! the phase sees only those, and only those key it: `onlyIncludeFiles`
//! when the plan sets them, and the manifests and lockfiles of a Node or
//! pip install whose commands cannot read anything else. Otherwise the
//! phase sees the whole app.

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
    if let Some(files) = &phase.only_include_files {
        return Some(files.clone());
    }
    let commands = phase.cmds.as_deref().unwrap_or_default();
    if commands.is_empty() {
        return None;
    }
    if commands
        .iter()
        .all(|c| NODE_INSTALL_COMMANDS.contains(&c.trim()))
    {
        return node_install_files(app);
    }
    if commands.len() == 1 && commands[0].trim() == PIP_REQUIREMENTS_INSTALL {
        return pip_install_files(app);
    }
    None
}

fn node_install_files(app: &Path) -> Option<Vec<String>> {
    let text = read_regular(&app.join("package.json"))?;
    let manifest: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let scripts = manifest.get("scripts").and_then(|s| s.as_object());
    let runs_scripts = scripts.is_some_and(|s| INSTALL_SCRIPTS.iter().any(|n| s.contains_key(*n)));
    // Workspaces, pnpm hooks and Yarn's plugin folder bring files kiln
    // does not list; such installs see the whole app.
    let reads_more = manifest.get("workspaces").is_some()
        || app.join(".pnpmfile.cjs").exists()
        || app.join("pnpm-workspace.yaml").exists()
        || app.join(".yarn").exists();
    if runs_scripts || reads_more {
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
