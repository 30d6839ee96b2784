//! The git commit an app folder is checked out at, by asking `git` (kiln
//! links no git library for one question). No git, no checkout, or any
//! failure gives `None`: provenance then says nothing of a commit, and the
//! build goes on.

use std::path::Path;
use std::process::{Command, Stdio};

/// `HEAD`'s commit of the git work tree holding `dir`, when there is one
/// and `git` is installed.
pub fn git_commit(dir: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        // The caller's GIT_DIR would name another repository.
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
    let is_hash = matches!(commit.len(), 40 | 64) && commit.bytes().all(|b| b.is_ascii_hexdigit());
    (output.status.success() && is_hash).then_some(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_outside_any_checkout_has_no_commit() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(dir.path()), None);
        assert_eq!(git_commit(&dir.path().join("missing")), None);
    }

    #[test]
    fn a_checkout_gives_its_head() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            Command::new("git")
                .arg("-C")
                .arg(dir.path())
                .args(args)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t")
                .env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t")
                .output()
        };
        let Ok(init) = git(&["init", "-q"]) else {
            // No git on this machine: git_commit must say None, as above.
            return;
        };
        assert!(init.status.success());
        std::fs::write(dir.path().join("f"), "x").unwrap();
        git(&["add", "f"]).unwrap();
        assert!(git(&["commit", "-q", "-m", "m"]).unwrap().status.success());
        let head = git(&["rev-parse", "HEAD"]).unwrap().stdout;
        let head = String::from_utf8(head).unwrap().trim().to_string();
        assert_eq!(git_commit(dir.path()), Some(head));
    }
}
