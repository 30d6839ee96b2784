//! `kiln cache info`: what each kind of entry takes, and the leftovers of
//! interrupted runs by name.

use std::path::Path;

use serde_json::json;

use super::entries::{measure, Entry, Kind};

/// What one kind of entry takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindUsage {
    /// The kind.
    pub kind: Kind,
    /// Complete entries.
    pub entries: u64,
    /// Bytes in all of them, leftovers included.
    pub bytes: u64,
    /// Files in all of them, leftovers included.
    pub files: u64,
    /// Leftovers of interrupted runs among them.
    pub leftovers: u64,
    /// Bytes of those leftovers.
    pub leftover_bytes: u64,
}

/// The usage of a whole cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    /// Per kind, in [`Kind::ALL`] order.
    pub kinds: Vec<KindUsage>,
    /// The leftovers: kind, name, bytes.
    pub leftovers: Vec<(Kind, String, u64)>,
    /// Bytes of files that are no entry: lock files and kiln's own records.
    pub other_bytes: u64,
}

impl Usage {
    /// Everything under the cache folder.
    pub fn total_bytes(&self) -> u64 {
        self.kinds.iter().map(|k| k.bytes).sum::<u64>() + self.other_bytes
    }

    /// The bytes of one kind.
    pub fn bytes_of(&self, kind: Kind) -> u64 {
        self.kinds
            .iter()
            .find(|k| k.kind == kind)
            .map_or(0, |k| k.bytes)
    }
}

/// Sums `entries` (read from the cache at `root`) by kind.
pub fn usage(root: &Path, entries: &[Entry]) -> std::io::Result<Usage> {
    let kinds: Vec<KindUsage> = Kind::ALL
        .iter()
        .map(|&kind| {
            let of_kind = entries.iter().filter(|e| e.kind == kind);
            let mut usage = KindUsage {
                kind,
                entries: 0,
                bytes: 0,
                files: 0,
                leftovers: 0,
                leftover_bytes: 0,
            };
            for entry in of_kind {
                usage.bytes += entry.bytes;
                usage.files += entry.files;
                match entry.leftover {
                    true => {
                        usage.leftovers += 1;
                        usage.leftover_bytes += entry.bytes;
                    }
                    false => usage.entries += 1,
                }
            }
            usage
        })
        .collect();
    let counted: u64 = kinds.iter().map(|k| k.bytes).sum();
    Ok(Usage {
        other_bytes: measure(root)?.0.saturating_sub(counted),
        leftovers: entries
            .iter()
            .filter(|e| e.leftover)
            .map(|e| (e.kind, e.name.clone(), e.bytes))
            .collect(),
        kinds,
    })
}

/// The usage as `kiln cache info --json` prints it.
pub fn usage_json(root: &Path, usage: &Usage) -> serde_json::Value {
    json!({
        "cacheDir": root,
        "kinds": usage.kinds.iter().map(|k| json!({
            "name": k.kind.name(),
            "entries": k.entries,
            "bytes": k.bytes,
            "files": k.files,
            "leftovers": k.leftovers,
            "leftoverBytes": k.leftover_bytes,
        })).collect::<Vec<_>>(),
        "leftovers": usage.leftovers.iter().map(|(kind, name, bytes)| json!({
            "kind": kind.name(),
            "name": name,
            "bytes": bytes,
        })).collect::<Vec<_>>(),
        "otherBytes": usage.other_bytes,
        "totalBytes": usage.total_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entries::scan;

    #[test]
    fn every_kind_is_counted_and_leftovers_named() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, len: usize| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![0; len]).unwrap();
        };
        write("blobs/sha256/aa", 10);
        write("blobs/sha256/bb", 5);
        write("build-work/build-x/app/a", 7);
        write("store/.locks/lock", 3);
        let usage = usage(root.path(), &scan(root.path()).unwrap()).unwrap();
        let names: Vec<&str> = usage.kinds.iter().map(|k| k.kind.name()).collect();
        assert_eq!(names, Kind::ALL.map(Kind::name));
        let blobs = &usage.kinds[3];
        assert_eq!((blobs.entries, blobs.bytes, blobs.files), (2, 15, 2));
        assert_eq!(usage.bytes_of(Kind::Work), 7);
        assert_eq!(
            usage.leftovers,
            [(Kind::Work, "build-work/build-x".to_string(), 7)]
        );
        assert_eq!(usage.other_bytes, 3);
        let json = usage_json(root.path(), &usage);
        assert_eq!(json["totalBytes"], 25);
        assert_eq!(json["leftovers"][0]["name"], "build-work/build-x");
    }
}
