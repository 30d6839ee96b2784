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

use super::archive::is_sha256;

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
    /// Hex sha256 of the nixpkgs archive kiln downloaded, so the next
    /// download is checked against it. Absent for a local `--nixpkgs`
    /// folder and in locks written before kiln downloaded archives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nixpkgs_sha256: Option<String>,
    /// Hex sha256 of each URL overlay's archive, by URL.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overlay_sha256: BTreeMap<String, String>,
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
        Lock::parse(&bytes, path)
    }

    /// Parses a lock file's bytes and checks what it names (version,
    /// hashes, store paths); `path` names the file in errors. [`Lock::read`]
    /// without the read, so untrusted bytes can be checked straight from
    /// memory (the fuzz targets in `tests/fuzz` do).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Lock, LockError> {
        let invalid = |reason: String| LockError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let lock: Lock = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if lock.version != LOCK_VERSION {
            return Err(invalid(format!(
                "version {} but this kiln reads version {LOCK_VERSION}",
                lock.version
            )));
        }
        for entry in &lock.entries {
            let hashes = entry
                .nixpkgs_sha256
                .iter()
                .chain(entry.overlay_sha256.values());
            if let Some(bad) = hashes.into_iter().find(|sha256| !is_sha256(sha256)) {
                return Err(invalid(format!("`{bad}` is not a hex sha256")));
            }
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

    /// The sha256 the lock records for nixpkgs archive `archive`, in any
    /// entry: the archive is the same whatever the overlays and system.
    pub fn archive_sha256(&self, archive: &str) -> Option<&str> {
        self.entries
            .iter()
            .filter(|e| e.nixpkgs_archive == archive)
            .find_map(|e| e.nixpkgs_sha256.as_deref())
    }

    /// The sha256 the lock records for the overlay at `url`, in any entry.
    pub fn overlay_sha256(&self, url: &str) -> Option<&str> {
        self.entries
            .iter()
            .find_map(|e| e.overlay_sha256.get(url).map(String::as_str))
    }

    /// Adds `entry`'s packages and hashes to the entry of the same archive,
    /// overlays and system (replacing what both name), or adds the entry.
    pub fn merge(&mut self, entry: LockEntry) {
        let existing = self.entries.iter_mut().find(|e| {
            e.nixpkgs_archive == entry.nixpkgs_archive
                && e.overlays == entry.overlays
                && e.system == entry.system
        });
        match existing {
            Some(existing) => {
                existing.packages.extend(entry.packages);
                if entry.nixpkgs_sha256.is_some() {
                    existing.nixpkgs_sha256 = entry.nixpkgs_sha256;
                }
                existing.overlay_sha256.extend(entry.overlay_sha256);
            }
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
            nixpkgs_sha256: None,
            overlay_sha256: BTreeMap::new(),
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

    #[test]
    fn a_lock_written_before_archive_hashes_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let old = format!(
            "{{\n  \"version\": 1,\n  \"entries\": [\n    {{\n      \"nixpkgsArchive\": \"a\",\n      \
             \"overlays\": [],\n      \"system\": \"x86_64-linux\",\n      \"packages\": {{\n        \
             \"zlib\": {{\n          \"outPath\": \"{ZLIB}\"\n        }}\n      }}\n    }}\n  ]\n}}\n"
        );
        fs::write(&path, &old).unwrap();
        let lock = Lock::read(&path).unwrap();
        assert_eq!(lock.entries, [entry("a", "zlib", ZLIB)]);
        assert_eq!(lock.archive_sha256("a"), None);
        assert_eq!(lock.to_json(), old, "and writes the same bytes back");
    }

    #[test]
    fn archive_hashes_are_recorded_kept_by_merges_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        let sha = "a".repeat(64);
        let overlay = "https://example.invalid/o.tar.gz".to_string();
        let mut lock = Lock {
            version: LOCK_VERSION,
            entries: vec![],
        };
        lock.merge(LockEntry {
            nixpkgs_sha256: Some(sha.clone()),
            overlays: vec![overlay.clone()],
            overlay_sha256: [(overlay.clone(), "b".repeat(64))].into(),
            ..entry("a", "zlib", ZLIB)
        });
        // An evaluation of a local folder records no hash and keeps the
        // one the archive gave.
        lock.merge(LockEntry {
            overlays: vec![overlay.clone()],
            ..entry("a", "nodejs", NODE)
        });
        assert_eq!(lock.entries.len(), 1);
        assert_eq!(lock.archive_sha256("a"), Some(sha.as_str()));
        assert_eq!(lock.overlay_sha256(&overlay), Some("b".repeat(64).as_str()));
        assert_eq!(lock.archive_sha256("b"), None);
        let json = lock.to_json();
        assert!(
            json.contains(&format!("\"nixpkgsSha256\": \"{sha}\"")),
            "{json}"
        );
        assert!(json.contains("\"overlaySha256\": {"), "{json}");
        lock.write(&path).unwrap();
        assert_eq!(Lock::read(&path).unwrap(), lock);

        let bad = json.replace(&sha, "../../etc/passwd");
        fs::write(&path, bad).unwrap();
        let err = Lock::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("not a hex sha256") && err.contains("kiln.lock"),
            "{err}"
        );
    }

    /// Bounded fuzz target: `kiln.lock` comes with the app, so arbitrary
    /// bytes and a valid lock with a few bytes changed must read as a lock
    /// or give an error naming the file, never panic.
    mod fuzz {
        use proptest::prelude::*;

        use super::*;
        use kiln_harness::mutate::mutated;

        fn seed() -> Vec<u8> {
            let mut lock = Lock {
                version: LOCK_VERSION,
                entries: vec![],
            };
            let mut with_hashes = entry("a", "nodejs", NODE);
            with_hashes.nixpkgs_sha256 = Some("ab".repeat(32));
            with_hashes
                .overlay_sha256
                .insert("https://example.com/o.tar.gz".to_string(), "cd".repeat(32));
            lock.merge(with_hashes);
            lock.merge(entry("b", "zlib", ZLIB));
            lock.to_json().into_bytes()
        }

        fn read_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOCK_FILE);
            fs::write(&path, bytes).unwrap();
            if let Err(err) = Lock::read(&path) {
                prop_assert!(err.to_string().contains("kiln.lock"), "{err}");
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
                read_bytes(&bytes)?;
            }

            #[test]
            fn mutated_locks_never_panic(bytes in mutated(seed())) {
                read_bytes(&bytes)?;
            }
        }

        #[test]
        fn the_seed_reads() {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(LOCK_FILE);
            fs::write(&path, seed()).unwrap();
            assert_eq!(Lock::read(&path).unwrap().entries.len(), 2);
        }
    }
}
