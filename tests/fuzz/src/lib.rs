//! What kiln's libFuzzer targets (`fuzz_targets/`) share: a fresh root
//! folder beside a sentinel file, for the targets that write outside input
//! to disk and must never write anything outside their root.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// The sentinel's contents; any change to them is a write outside the root.
const SENTINEL: &[u8] = b"must survive";

/// Runs `write` with the path of a root folder (`create_root`: created
/// empty, else absent) that has a sentinel file beside it, then panics when
/// anything other than the root appeared beside it or the sentinel changed
/// in any way. Everything is removed afterwards, read-only folders included.
pub fn beside_sentinel(create_root: bool, write: impl FnOnce(&Path)) {
    let folder = tempfile::tempdir().expect("a temp folder");
    let root = folder.path().join("root");
    if create_root {
        fs::create_dir(&root).expect("the root folder");
    }
    let sentinel = folder.path().join("sentinel");
    fs::write(&sentinel, SENTINEL).expect("the sentinel");
    let before = fs::symlink_metadata(&sentinel).expect("the sentinel's metadata");

    write(&root);

    let mut names: Vec<_> = fs::read_dir(folder.path())
        .expect("the temp folder")
        .map(|entry| entry.expect("a folder entry").file_name())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|name| name == "root" || name == "sentinel"),
        "written beside the root: {names:?}"
    );
    let after = fs::symlink_metadata(&sentinel).expect("the sentinel is gone");
    assert!(after.file_type().is_file(), "the sentinel is no file now");
    assert_eq!(
        (after.ino(), after.mode(), after.nlink(), after.mtime()),
        (before.ino(), before.mode(), before.nlink(), before.mtime()),
        "the sentinel's metadata changed"
    );
    assert_eq!(fs::read(&sentinel).expect("the sentinel"), SENTINEL);
    // A folder left without its write bit would keep the temp folder (and
    // fill /tmp over millions of runs).
    make_writable(&root);
}

/// Gives every folder under `dir` (not following symlinks) its owner's
/// write and search bits back.
fn make_writable(dir: &Path) {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(meta.mode() | 0o700));
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        make_writable(&entry.path());
    }
}
