//! The app's files as the phases see them at `/app`: the app folder copied
//! without `.git` and what `.dockerignore` excludes, as upstream copies it,
//! and the plan's `staticAssets` at `/assets`.
//!
//! The copies get the modes git would give them ([`git_mode`]), not the
//! checkout's: the same commit checked out under another umask must give
//! the same image and the same phase cache keys, which both read the
//! staged modes.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use kiln_providers::plan::StaticAssets;

/// Copies `app_dir` to `<root>/app` and the static assets to
/// `<root>/assets`; returns how many files were copied.
pub fn stage(app_dir: &Path, root: &Path, assets: Option<&StaticAssets>) -> anyhow::Result<usize> {
    let ignore = Ignore::read(app_dir)?;
    let target = root.join("app");
    create_folders(&target)?;
    let mut copied = 0;
    copy_dir(app_dir, &target, "", &ignore, &mut copied)?;
    if let Some(assets) = assets.filter(|a| !a.is_empty()) {
        let folder = root.join("assets");
        create_folders(&folder)?;
        for (name, text) in assets {
            if !is_asset_name(name) {
                anyhow::bail!(
                    "static asset name {name:?} must be a relative path of plain names, without `.` or `..`"
                );
            }
            let file = folder.join(name);
            if let Some(parent) = file.parent().filter(|p| *p != folder) {
                create_folders(parent)?;
            }
            fs::write(&file, text)
                .with_context(|| format!("could not write the static asset {name}"))?;
            set_mode(&file, FILE_MODE)?;
        }
    }
    Ok(copied)
}

/// Whether a static asset name stays inside the assets folder: plain
/// names, possibly in subfolders (`scripts/prestart.mjs`), dot files
/// included (the staticfile provider writes `.htpasswd`).
fn is_asset_name(name: &str) -> bool {
    let path = Path::new(name);
    !name.is_empty()
        && !name.contains('\0')
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
        && !name.split('/').any(|part| part.is_empty() || part == ".")
}

/// Copies only `files` (paths relative to the staged app `app`, files or
/// folders) to `<root>/app`, and `assets` when the staged app has them.
/// The staged files already have their modes; the folders made on the way
/// get 0755 like the staged ones.
///
/// Symlinks are never followed: an entry that is a symlink is copied as
/// the link, and an entry whose path goes through a symlinked folder is
/// refused, even when the link points inside the app, since a link may
/// point anywhere on the host (`l -> /`). Only regular files, folders and
/// links are copied; a FIFO, socket or device is refused, as reading it
/// could block the build.
pub fn stage_selected(staged: &Path, root: &Path, files: &[String]) -> anyhow::Result<()> {
    let app = staged.join("app");
    let target = root.join("app");
    create_folders(&target)?;
    for file in files {
        let relative = Path::new(file.trim_start_matches("./"));
        let Some(meta) = selected_entry(&app, relative, file)? else {
            continue;
        };
        let source = app.join(relative);
        let dest = target.join(relative);
        if let Some(parent) = dest.parent() {
            create_folders(parent)?;
        }
        let failed = || format!("could not copy {} to {}", source.display(), dest.display());
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&source).with_context(failed)?, &dest).with_context(failed)?;
        } else if meta.is_dir() {
            create_folders(&dest)?;
            copy_dir(&source, &dest, file, &Ignore::default(), &mut 0)?;
        } else {
            fs::copy(&source, &dest).with_context(failed)?;
        }
    }
    let assets = staged.join("assets");
    if assets.is_dir() {
        let dest = root.join("assets");
        create_folders(&dest)?;
        copy_dir(&assets, &dest, "", &Ignore::default(), &mut 0)?;
    }
    Ok(())
}

/// What the `onlyIncludeFiles` entry `file` (`relative` inside `app`) is,
/// looked at without following any symlink; `None` when it does not
/// exist. Errors when it leaves the app, goes through a symlink, or is
/// neither a regular file, a folder nor a symlink.
fn selected_entry(app: &Path, relative: &Path, file: &str) -> anyhow::Result<Option<fs::Metadata>> {
    let mut here = app.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        let std::path::Component::Normal(part) = component else {
            anyhow::bail!(
                "onlyIncludeFiles entry {file:?} must be a path inside the app, without `..`"
            );
        };
        here.push(part);
        let meta = match fs::symlink_metadata(&here) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", here.display())),
        };
        let kind = meta.file_type();
        let last = components.peek().is_none();
        if !last && kind.is_symlink() {
            let link = here
                .strip_prefix(app)
                .unwrap_or(&here)
                .display()
                .to_string();
            anyhow::bail!(
                "onlyIncludeFiles entry {file:?} goes through `{link}`, a symlink; kiln does not \
                 follow links there: name the link itself, or the files in the folder it points to"
            );
        }
        if last && !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            anyhow::bail!(
                "onlyIncludeFiles entry {file:?} is not a regular file, folder or symlink (a FIFO, \
                 socket or device); remove it from onlyIncludeFiles"
            );
        }
        if last {
            return Ok(Some(meta));
        }
    }
    // An empty entry names the app itself.
    fs::symlink_metadata(app)
        .map(Some)
        .with_context(|| format!("could not read {}", app.display()))
}

fn copy_dir(
    from: &Path,
    to: &Path,
    relative: &str,
    ignore: &Ignore,
    copied: &mut usize,
) -> anyhow::Result<()> {
    let mut entries: Vec<_> = fs::read_dir(from)
        .with_context(|| format!("could not read {}", from.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("could not read {}", from.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let rel = if relative.is_empty() {
            name.to_string()
        } else {
            format!("{relative}/{name}")
        };
        if rel == ".git" || ignore.excludes(&rel) {
            continue;
        }
        let source = entry.path();
        let dest = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&source)
            .with_context(|| format!("could not read {}", source.display()))?;
        let failed = || format!("could not copy {} to {}", source.display(), dest.display());
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&source).with_context(failed)?, &dest).with_context(failed)?;
        } else if meta.is_dir() {
            fs::create_dir(&dest).with_context(failed)?;
            set_mode(&dest, git_mode(&meta))?;
            copy_dir(&source, &dest, &rel, ignore, copied)?;
        } else if meta.is_file() {
            fs::copy(&source, &dest).with_context(failed)?;
            set_mode(&dest, git_mode(&meta))?;
            *copied += 1;
        } else {
            tracing::warn!(
                "{}: not a file, folder or link; not copied to /app",
                source.display()
            );
        }
    }
    Ok(())
}

/// Mode of a staged folder.
const FOLDER_MODE: u32 = 0o755;
/// Mode of a staged file its owner may execute in the checkout.
const EXECUTABLE_MODE: u32 = 0o755;
/// Mode of any other staged file.
const FILE_MODE: u32 = 0o644;

/// The mode git gives an entry of a checkout: only the owner's executable
/// bit of a file counts (umask, group and other bits, setuid and sticky
/// bits do not). Symlinks are not chmod-ed: their mode means nothing.
fn git_mode(meta: &fs::Metadata) -> u32 {
    if meta.is_dir() {
        FOLDER_MODE
    } else if meta.permissions().mode() & 0o100 != 0 {
        EXECUTABLE_MODE
    } else {
        FILE_MODE
    }
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("could not set the mode of {}", path.display()))
}

/// Creates `dir` and its missing parents with [`FOLDER_MODE`], whatever
/// kiln's umask: they are packed and hashed too.
fn create_folders(dir: &Path) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_folders(parent)?;
    }
    fs::create_dir(dir).with_context(|| format!("could not create {}", dir.display()))?;
    set_mode(dir, FOLDER_MODE)
}

/// The patterns of the app's `.dockerignore`: `*` and `?` within a path
/// component, `**` across components, a leading `/` ignored; a pattern
/// excludes what it matches and everything beneath. Exceptions (`!`) are
/// not supported and are reported.
#[derive(Debug, Default)]
struct Ignore {
    patterns: Vec<Vec<String>>,
}

impl Ignore {
    fn read(app_dir: &Path) -> anyhow::Result<Ignore> {
        let file = app_dir.join(".dockerignore");
        let text = match fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Ignore::default()),
            Err(e) => return Err(e).with_context(|| format!("could not read {}", file.display())),
        };
        Ok(Ignore::parse(&text, &file))
    }

    fn parse(text: &str, file: &Path) -> Ignore {
        let mut patterns = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.starts_with('!') {
                tracing::warn!(
                    "{}:{}: exceptions (`!`) are not supported; the line is ignored",
                    file.display(),
                    number + 1
                );
                continue;
            }
            let parts: Vec<String> = line
                .split('/')
                .filter(|part| !part.is_empty() && *part != ".")
                .map(str::to_string)
                .collect();
            if !parts.is_empty() {
                patterns.push(parts);
            }
        }
        Ignore { patterns }
    }

    fn excludes(&self, relative: &str) -> bool {
        let parts: Vec<&str> = relative.split('/').collect();
        self.patterns
            .iter()
            .any(|pattern| prefix_matches(pattern, &parts))
    }
}

/// Whether `pattern` matches `path` or one of its parent folders.
fn prefix_matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => true,
        Some((first, rest)) if first == "**" => {
            (0..=path.len()).any(|skip| prefix_matches(rest, &path[skip..]))
        }
        Some((first, rest)) => match path.split_first() {
            Some((name, tail)) => {
                component_matches(first.as_bytes(), name.as_bytes()) && prefix_matches(rest, tail)
            }
            None => false,
        },
    }
}

fn component_matches(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| component_matches(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && component_matches(rest, &name[1..]),
        Some((c, rest)) => name.first() == Some(c) && component_matches(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::super::phase_cache::hash_folder;
    use super::*;

    fn ignore(text: &str) -> Ignore {
        Ignore::parse(text, Path::new(".dockerignore"))
    }

    #[test]
    fn patterns_match_paths_and_what_is_beneath() {
        let rules = ignore("# comment\nnode_modules\n/dist/\n*.log\ndocs/**/*.md\n!keep.log\n");
        assert!(rules.excludes("node_modules"));
        assert!(rules.excludes("node_modules/a/b.js"));
        assert!(rules.excludes("dist/app.js"));
        assert!(rules.excludes("debug.log"));
        assert!(!rules.excludes("src/debug.log"));
        assert!(rules.excludes("docs/a/b/readme.md"));
        assert!(rules.excludes("docs/readme.md"));
        assert!(!rules.excludes("src/main.js"));
        assert!(rules.excludes("keep.log"), "exceptions are not supported");
    }

    #[test]
    fn copies_the_app_without_git_and_ignored_files() {
        let app = tempfile::tempdir().unwrap();
        fs::create_dir_all(app.path().join(".git/objects")).unwrap();
        fs::write(app.path().join(".git/HEAD"), "ref").unwrap();
        fs::write(app.path().join(".dockerignore"), "secret.txt\n").unwrap();
        fs::write(app.path().join("secret.txt"), "x").unwrap();
        fs::create_dir(app.path().join("src")).unwrap();
        fs::write(app.path().join("src/main.js"), "code").unwrap();
        symlink("src/main.js", app.path().join("link")).unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut assets = StaticAssets::new();
        assets.insert("nginx.conf".into(), "conf".into());
        let copied = stage(app.path(), root.path(), Some(&assets)).unwrap();
        assert_eq!(copied, 2, ".dockerignore and src/main.js");
        let out = root.path().join("app");
        assert_eq!(fs::read_to_string(out.join("src/main.js")).unwrap(), "code");
        assert_eq!(
            fs::read_link(out.join("link")).unwrap(),
            Path::new("src/main.js")
        );
        assert!(!out.join(".git").exists());
        assert!(!out.join("secret.txt").exists());
        assert_eq!(
            fs::read_to_string(root.path().join("assets/nginx.conf")).unwrap(),
            "conf"
        );
    }

    fn mode(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn chmod(path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// An app whose files have the modes a umask-077 checkout gives them,
    /// plus odd bits git ignores.
    fn private_checkout() -> tempfile::TempDir {
        let app = tempfile::tempdir().unwrap();
        let dir = app.path();
        fs::create_dir(dir.join("private")).unwrap();
        fs::write(dir.join("private/key.txt"), "k").unwrap();
        fs::write(dir.join("run.sh"), "#!/bin/sh\n").unwrap();
        fs::write(dir.join("group-exec"), "g").unwrap();
        fs::write(dir.join("setuid"), "s").unwrap();
        symlink("run.sh", dir.join("link")).unwrap();
        chmod(&dir.join("private/key.txt"), 0o600);
        chmod(&dir.join("run.sh"), 0o700);
        chmod(&dir.join("group-exec"), 0o610);
        chmod(&dir.join("setuid"), 0o4755);
        chmod(&dir.join("private"), 0o700);
        app
    }

    #[test]
    fn staged_modes_are_the_ones_git_records() {
        let app = private_checkout();
        let root = tempfile::tempdir().unwrap();
        stage(app.path(), root.path(), None).unwrap();
        let out = root.path().join("app");
        assert_eq!(mode(&out), 0o755);
        assert_eq!(mode(&out.join("private")), 0o755);
        assert_eq!(mode(&out.join("private/key.txt")), 0o644);
        assert_eq!(mode(&out.join("run.sh")), 0o755);
        assert_eq!(mode(&out.join("group-exec")), 0o644);
        assert_eq!(mode(&out.join("setuid")), 0o755);
        assert_eq!(
            fs::read_link(out.join("link")).unwrap(),
            Path::new("run.sh")
        );

        let view = root.path().join("view");
        stage_selected(root.path(), &view, &["private/key.txt".to_string()]).unwrap();
        assert_eq!(mode(&view.join("app/private")), 0o755);
        assert_eq!(mode(&view.join("app/private/key.txt")), 0o644);
    }

    #[test]
    fn checkouts_differing_only_in_modes_hash_alike() {
        let private = private_checkout();
        let open = private_checkout();
        for (name, mode) in [
            ("private/key.txt", 0o644),
            ("run.sh", 0o755),
            ("private", 0o755),
        ] {
            chmod(&open.path().join(name), mode);
        }
        let hashes: Vec<(String, String)> = [private, open]
            .iter()
            .map(|app| {
                let root = tempfile::tempdir().unwrap();
                stage(app.path(), root.path(), None).unwrap();
                let view = root.path().join("view");
                stage_selected(root.path(), &view, &["private".to_string()]).unwrap();
                (
                    hash_folder(&root.path().join("app")).unwrap(),
                    hash_folder(&view).unwrap(),
                )
            })
            .collect();
        assert_eq!(hashes[0], hashes[1]);
    }

    /// A staged app whose `l` links to a folder outside it holding a
    /// secret and a FIFO, as `l -> /` would reach `/root/.docker`.
    fn staged_with_outside_link() -> (tempfile::TempDir, tempfile::TempDir) {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "host secret").unwrap();
        mkfifo(&outside.path().join("fifo"));
        let staged = tempfile::tempdir().unwrap();
        fs::create_dir(staged.path().join("app")).unwrap();
        fs::write(staged.path().join("app/main.js"), "code").unwrap();
        symlink(outside.path(), staged.path().join("app/l")).unwrap();
        (staged, outside)
    }

    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo").arg(path).status();
        assert!(made.unwrap().success(), "mkfifo {}", path.display());
    }

    /// `stage_selected` on another thread, so a copy that blocks on a FIFO
    /// fails the test instead of hanging it.
    fn select(staged: &Path, view: &Path, files: &[&str]) -> anyhow::Result<()> {
        let (staged, view) = (staged.to_path_buf(), view.to_path_buf());
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let (send, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || send.send(stage_selected(&staged, &view, &files)));
        receive
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("stage_selected hung")
    }

    #[test]
    fn only_include_files_never_reach_through_a_symlinked_folder() {
        let (staged, outside) = staged_with_outside_link();
        let view = staged.path().join("view");
        let err = select(staged.path(), &view, &["main.js", "l/secret"]).unwrap_err();
        assert!(format!("{err:#}").contains("`l`"), "{err:#}");
        assert!(!view.join("app/l/secret").exists());

        // The link itself is copied as a link; naming a file through it
        // must neither copy nor truncate the host file it reaches.
        let view = staged.path().join("view2");
        assert!(select(staged.path(), &view, &["l", "l/secret"]).is_err());
        assert_eq!(
            fs::read_to_string(outside.path().join("secret")).unwrap(),
            "host secret"
        );
        let view = staged.path().join("view3");
        select(staged.path(), &view, &["l"]).unwrap();
        assert_eq!(fs::read_link(view.join("app/l")).unwrap(), outside.path());
    }

    #[test]
    fn only_include_files_refuse_a_fifo_instead_of_hanging() {
        let (staged, _outside) = staged_with_outside_link();
        assert!(select(staged.path(), &staged.path().join("v1"), &["l/fifo"]).is_err());
        mkfifo(&staged.path().join("app/pipe"));
        let err = select(staged.path(), &staged.path().join("v2"), &["pipe"]).unwrap_err();
        assert!(format!("{err:#}").contains("pipe"), "{err:#}");
    }

    #[test]
    fn asset_names_cannot_leave_the_assets_folder() {
        let app = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut assets = StaticAssets::new();
        assets.insert("../etc/passwd".into(), "x".into());
        assert!(stage(app.path(), root.path(), Some(&assets)).is_err());
        for bad in [
            "",
            ".",
            "/etc/passwd",
            "a/../../b",
            "a//b",
            "./a",
            "a/",
            "a\0b",
        ] {
            assert!(!is_asset_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn dot_files_and_subfolders_are_asset_names() {
        let app = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut assets = StaticAssets::new();
        assets.insert(".htpasswd".into(), "user:hash\n".into());
        assets.insert("scripts/prestart.mjs".into(), "// x\n".into());
        stage(app.path(), root.path(), Some(&assets)).unwrap();
        let folder = root.path().join("assets");
        assert_eq!(
            fs::read_to_string(folder.join(".htpasswd")).unwrap(),
            "user:hash\n"
        );
        assert!(folder.join("scripts/prestart.mjs").is_file());
    }
}
