//! `kiln.lock`: which store path each attribute gave, per nixpkgs archive,
//! overlays and system, so machines without Nix can build.
//!
//! The file is JSON with sorted keys and entries, two-space indented, ending
//! in a newline: the same resolution always writes the same bytes, so it
//! diffs well under version control.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The lock format version this kiln writes and reads.
pub const LOCK_VERSION: u32 = 1;

/// The file name of the lock in an app folder.
pub const LOCK_FILE: &str = "kiln.lock";

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lock {
    /// Format version; see [`LOCK_VERSION`].
    pub version: u32,
    /// One entry per (archive, overlays, system), sorted.
    pub entries: Vec<LockEntry>,
}

/// The store paths one nixpkgs (with overlays) gives on one system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockEntry {
    /// The nixpkgs archive (a nixpkgs commit) the attributes come from.
    pub nixpkgs_archive: String,
    /// Overlay URLs applied, in order.
    pub overlays: Vec<String>,
    /// Nix system, e.g. `x86_64-linux`.
    pub system: String,
    /// Attribute name to its paths.
    pub packages: BTreeMap<String, LockedPackage>,
}

/// What one attribute evaluated to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LockedPackage {
    /// The output path (`/nix/store/<hash>-<name>`).
    pub out_path: String,
    /// The derivation that builds it, when the evaluator gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drv_path: Option<String>,
}

/// A lock file that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Reading or writing failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The file is not a kiln lock.
    #[error("{}: not a valid kiln.lock ({reason}); fix it or delete it and run `kiln lock` where nix is installed", path.display())]
    Invalid {
        /// The lock file.
        path: PathBuf,
        /// What is wrong, with line and column.
        reason: String,
    },
}

impl Lock {
    /// Reads `path`; a missing file is an empty lock.
    pub fn read(path: &Path) -> Result<Lock, LockError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Lock::default()),
            Err(source) => {
                return Err(LockError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let invalid = |reason: String| LockError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let lock: Lock = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if lock.version != LOCK_VERSION {
            return Err(invalid(format!(
                "version {} but this kiln reads version {LOCK_VERSION}",
                lock.version
            )));
        }
        for entry in &lock.entries {
            for (attribute, package) in &entry.packages {
                if kiln_store::parse_store_path(&package.out_path).is_err() {
                    return Err(invalid(format!(
                        "{attribute}: `{}` is not a store path",
                        package.out_path
                    )));
                }
            }
        }
        Ok(lock)
    }

    /// The entry for `archive`, `overlays` and `system`.
    pub fn entry(&self, archive: &str, overlays: &[String], system: &str) -> Option<&LockEntry> {
        self.entries
            .iter()
            .find(|e| e.nixpkgs_archive == archive && e.overlays == overlays && e.system == system)
    }

    /// Adds `entry`'s packages to the entry of the same archive, overlays and
    /// system (replacing attributes both name), or adds the entry.
    pub fn merge(&mut self, entry: LockEntry) {
        let existing = self.entries.iter_mut().find(|e| {
            e.nixpkgs_archive == entry.nixpkgs_archive
                && e.overlays == entry.overlays
                && e.system == entry.system
        });
        match existing {
            Some(existing) => existing.packages.extend(entry.packages),
            None => self.entries.push(entry),
        }
        self.entries.sort_by(|a, b| {
            (&a.nixpkgs_archive, &a.overlays, &a.system).cmp(&(
                &b.nixpkgs_archive,
                &b.overlays,
                &b.system,
            ))
        });
    }

    /// The lock as it is written: stable, sorted JSON ending in a newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a lock always serializes");
        text.push('\n');
        text
    }

    /// Writes the lock to `path` through a synced temp file beside it.
    pub fn write(&self, path: &Path) -> Result<(), LockError> {
        kiln_io::write_atomically(path, self.to_json().as_bytes()).map_err(|source| LockError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(archive: &str, attribute: &str, path: &str) -> LockEntry {
        LockEntry {
            nixpkgs_archive: archive.to_string(),
            overlays: vec![],
            system: "x86_64-linux".to_string(),
            packages: [(
                attribute.to_string(),
                LockedPackage {
                    out_path: path.to_string(),
                    drv_path: None,
                },
            )]
            .into(),
        }
    }

    const NODE: &str = "/nix/store/0c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-nodejs-20";
    const ZLIB: &str = "/nix/store/1c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-zlib-1.2.13";

    #[test]
    fn written_lock_is_sorted_stable_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let mut one = Lock {
            version: LOCK_VERSION,
            entries: vec![],
        };
        one.merge(entry("b", "zlib", ZLIB));
        one.merge(entry("a", "nodejs", NODE));
        one.merge(entry("b", "aaa", NODE));
        let mut two = Lock {
            version: LOCK_VERSION,
            entries: vec![],
        };
        two.merge(entry("b", "aaa", NODE));
        two.merge(entry("a", "nodejs", NODE));
        two.merge(entry("b", "zlib", ZLIB));
        assert_eq!(one.to_json(), two.to_json());
        assert_eq!(one.entries[0].nixpkgs_archive, "a");
        let json = one.to_json();
        assert!(json.find("\"aaa\"").unwrap() < json.find("\"zlib\"").unwrap());
        one.write(&path).unwrap();
        assert_eq!(Lock::read(&path).unwrap(), one);
        assert_eq!(fs::read_to_string(&path).unwrap(), json);
        assert!(one
            .entry("b", &[], "x86_64-linux")
            .unwrap()
            .packages
            .contains_key("zlib"));
        assert!(one.entry("b", &["o".to_string()], "x86_64-linux").is_none());
    }

    #[test]
    fn missing_lock_is_empty_and_broken_locks_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        assert_eq!(Lock::read(&path).unwrap().entries, vec![]);
        for (text, expected) in [
            ("{", "EOF"),
            ("{\"version\": 9, \"entries\": []}", "version 9"),
            ("{\"version\": 1, \"entries\": [], \"extra\": 1}", "unknown field"),
            (
                "{\"version\":1,\"entries\":[{\"nixpkgsArchive\":\"a\",\"overlays\":[],\"system\":\"s\",\
                 \"packages\":{\"x\":{\"outPath\":\"/etc/passwd\"}}}]}",
                "not a store path",
            ),
        ] {
            fs::write(&path, text).unwrap();
            let err = Lock::read(&path).unwrap_err().to_string();
            assert!(err.contains(expected) && err.contains("kiln.lock"), "{err}");
        }
    }
}
