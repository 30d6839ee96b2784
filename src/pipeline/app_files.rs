//! The app's files as the phases see them at `/app`: the app folder copied
//! without `.git` and what `.dockerignore` excludes, as upstream copies it,
//! and the plan's `staticAssets` at `/assets`.

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
    fs::create_dir_all(&target)
        .with_context(|| format!("could not create {}", target.display()))?;
    let mut copied = 0;
    copy_dir(app_dir, &target, "", &ignore, &mut copied)?;
    if let Some(assets) = assets.filter(|a| !a.is_empty()) {
        let folder = root.join("assets");
        fs::create_dir_all(&folder)
            .with_context(|| format!("could not create {}", folder.display()))?;
        for (name, text) in assets {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                anyhow::bail!("static asset name {name:?} must be a plain file name");
            }
            fs::write(folder.join(name), text)
                .with_context(|| format!("could not write the static asset {name}"))?;
        }
    }
    Ok(copied)
}

/// Copies only `files` (paths relative to the staged app `app`, files or
/// folders) to `<root>/app`, and `assets` when the staged app has them.
pub fn stage_selected(staged: &Path, root: &Path, files: &[String]) -> anyhow::Result<()> {
    let app = staged.join("app");
    let target = root.join("app");
    fs::create_dir_all(&target)
        .with_context(|| format!("could not create {}", target.display()))?;
    for file in files {
        let relative = Path::new(file.trim_start_matches("./"));
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            anyhow::bail!(
                "onlyIncludeFiles entry {file:?} must be a path inside the app, without `..`"
            );
        }
        let source = app.join(relative);
        let dest = target.join(relative);
        let meta = match fs::symlink_metadata(&source) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("could not read {}", source.display()))
            }
        };
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent)
                .with_context(|| format!("could not create {}", parent.display()))?;
        }
        let failed = || format!("could not copy {} to {}", source.display(), dest.display());
        if meta.file_type().is_symlink() {
            symlink(fs::read_link(&source).with_context(failed)?, &dest).with_context(failed)?;
        } else if meta.is_dir() {
            fs::create_dir_all(&dest).with_context(failed)?;
            copy_dir(&source, &dest, file, &Ignore::default(), &mut 0)?;
        } else {
            fs::copy(&source, &dest).with_context(failed)?;
        }
    }
    let assets = staged.join("assets");
    if assets.is_dir() {
        let dest = root.join("assets");
        fs::create_dir_all(&dest)
            .with_context(|| format!("could not create {}", dest.display()))?;
        copy_dir(&assets, &dest, "", &Ignore::default(), &mut 0)?;
    }
    Ok(())
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
            fs::set_permissions(&dest, fs::Permissions::from_mode(meta.permissions().mode()))
                .with_context(failed)?;
            copy_dir(&source, &dest, &rel, ignore, copied)?;
        } else if meta.is_file() {
            fs::copy(&source, &dest).with_context(failed)?;
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

    #[test]
    fn asset_names_cannot_leave_the_assets_folder() {
        let app = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let mut assets = StaticAssets::new();
        assets.insert("../etc/passwd".into(), "x".into());
        assert!(stage(app.path(), root.path(), Some(&assets)).is_err());
    }
}
