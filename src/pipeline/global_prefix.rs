//! Where a phase's global installs go: `npm install -g`, `corepack
//! enable`, `pip install --user`, `gem install`, `cargo install`,
//! `go install`.
//!
//! In upstream's Docker builds the Nix store is writable by root, so a
//! global install lands inside the Node.js store path. kiln binds store
//! paths read-only, so each tool is pointed at one writable prefix of its
//! own instead: its files land in the phase's diff like any other, and its
//! `bin` folders go on `PATH` ahead of the Nix profile, so a tool the app
//! installed (or the package manager its `packageManager` pins) wins over
//! the generic one. The prefix is kiln's own folder, not `/usr/local`,
//! whose `bin` a base image may fill (the `node` images keep `node` there)
//! and which must not start shadowing the plan's packages.
//!
//! The variables are constants, so they stay out of phase cache keys: an
//! app that installs nothing globally keeps its keys and its digest.

use std::path::Path;

use crate::sandbox::add_unset;

/// The prefix every tool installs under.
pub const GLOBAL_PREFIX: &str = "/usr/local/kiln";

/// Each tool's variable and the folder it names under [`GLOBAL_PREFIX`].
const VARIABLES: [(&str, &str); 5] = [
    ("NPM_CONFIG_PREFIX", ""),
    ("PYTHONUSERBASE", ""),
    ("CARGO_INSTALL_ROOT", ""),
    ("GOBIN", "/bin"),
    ("GEM_HOME", "/gems"),
];

/// The `bin` folders global installs put programs in, relative to `/`:
/// npm, pip `--user`, cargo and go share the first, gems have their own.
const BIN_FOLDERS: [&str; 2] = ["usr/local/kiln/bin", "usr/local/kiln/gems/bin"];

/// Adds each tool's prefix variable that `env` does not set already (a
/// plan's or `--env`'s value wins), and the prefix's `bin` folders to
/// `PATH`, after the phase's own `paths` (`own_paths` entries) and before
/// the profile.
pub fn apply(env: &mut Vec<(String, String)>, own_paths: usize) {
    if let Some((_, path)) = env.iter_mut().find(|(name, _)| name == "PATH") {
        let mut entries: Vec<String> = path.split(':').map(str::to_string).collect();
        let at = own_paths.min(entries.len());
        let bins = BIN_FOLDERS.iter().map(|bin| format!("/{bin}"));
        entries.splice(at..at, bins);
        *path = entries.join(":");
    }
    let prefixes = VARIABLES
        .iter()
        .map(|(name, below)| (name.to_string(), format!("{GLOBAL_PREFIX}{below}")));
    add_unset(env, prefixes);
}

/// The `bin` folders (absolute) that the phases' diffs in `uppers` made:
/// the image's `PATH` names these ahead of the profile, and no others, so
/// an image without global installs keeps its config.
pub fn bin_folders_made(uppers: &[&Path]) -> Vec<String> {
    BIN_FOLDERS
        .iter()
        .filter(|bin| uppers.iter().any(|upper| upper.join(bin).is_dir()))
        .map(|bin| format!("/{bin}"))
        .collect()
}

/// For a command that failed writing into the read-only store: the store
/// path it named and what to do instead.
pub fn store_write_hint(last_lines: &[String]) -> Option<String> {
    let line = last_lines.iter().find(|line| {
        line.contains("/nix/store/")
            && ["EROFS", "read-only file system", "Read-only file system"]
                .iter()
                .any(|sign| line.contains(sign))
    })?;
    let start = line.find("/nix/store/")?;
    let path: String = line[start..]
        .chars()
        .take_while(|c| !c.is_whitespace() && !"'\"`,;:)".contains(*c))
        .collect();
    Some(format!(
        "it tried to write into {path}: store paths are read-only in kiln's builds; \
         install globally under {GLOBAL_PREFIX} instead (NPM_CONFIG_PREFIX, PYTHONUSERBASE, \
         GEM_HOME, CARGO_INSTALL_ROOT and GOBIN point there, and its bin folders are on PATH \
         in the build and the image)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn prefixes_go_in_and_their_bins_come_after_the_phase_paths_before_the_profile() {
        let mut env = vec![
            ("GEM_HOME".to_string(), "/app/vendor".to_string()),
            (
                "PATH".to_string(),
                "/app/node_modules/.bin:/nix/store/x-node/bin:/usr/bin".to_string(),
            ),
        ];
        apply(&mut env, 1);
        assert_eq!(get(&env, "NPM_CONFIG_PREFIX"), Some("/usr/local/kiln"));
        assert_eq!(get(&env, "GOBIN"), Some("/usr/local/kiln/bin"));
        assert_eq!(get(&env, "GEM_HOME"), Some("/app/vendor"));
        assert_eq!(
            get(&env, "PATH"),
            Some(
                "/app/node_modules/.bin:/usr/local/kiln/bin:/usr/local/kiln/gems/bin:\
                 /nix/store/x-node/bin:/usr/bin"
            )
        );
        let names: Vec<&String> = env.iter().map(|(k, _)| k).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }

    #[test]
    fn a_write_into_the_store_is_named_with_the_way_out() {
        let lines = vec![
            "npm error code EROFS".to_string(),
            "npm error EROFS: read-only file system, mkdir '/nix/store/abc-nodejs-20/lib/node_modules/x'"
                .to_string(),
        ];
        let hint = store_write_hint(&lines).unwrap();
        assert!(
            hint.contains("/nix/store/abc-nodejs-20/lib/node_modules/x:")
                && hint.contains(GLOBAL_PREFIX)
                && hint.contains("NPM_CONFIG_PREFIX"),
            "{hint}"
        );
        assert_eq!(store_write_hint(&["exit 1".to_string()]), None);
        assert_eq!(
            store_write_hint(&["read-only file system: /etc/passwd".to_string()]),
            None
        );
    }

    #[test]
    fn only_bin_folders_a_phase_made_reach_the_image() {
        let upper = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        assert!(bin_folders_made(&[upper.path(), other.path()]).is_empty());
        std::fs::create_dir_all(other.path().join("usr/local/kiln/bin")).unwrap();
        assert_eq!(
            bin_folders_made(&[upper.path(), other.path()]),
            vec!["/usr/local/kiln/bin".to_string()]
        );
    }
}
