//! Bounded fuzz target for [`super::apply_layer`]: layers of generated
//! entries (names with `..`, leading `/`, `.wh.` whiteouts and opaque
//! markers, symlinks and hard links to anywhere, folders) and byte-level
//! mutations of a valid layer. A layer may be applied or refused, but it
//! never panics and never creates or changes anything outside the root: a
//! sentinel file beside the root must survive unchanged.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{tar, Item};
use super::*;
use kiln_harness::mutate::mutated;

/// What one generated entry is.
#[derive(Debug, Clone)]
enum Kind {
    File(u32),
    Dir,
    Symlink(String),
    Hardlink(String),
}

/// A path made of parts that matter to the unpacker, under the 100 bytes of
/// an old tar header's name field.
fn name() -> impl Strategy<Value = String> {
    let part = prop::sample::select(vec![
        "a",
        "b",
        "etc",
        "link",
        "..",
        ".",
        "",
        ".wh.a",
        ".wh.b",
        ".wh.link",
        ".wh..wh..opq",
        ".wh.",
        ".wh...",
        "sentinel",
        "root",
    ]);
    (any::<bool>(), prop::collection::vec(part, 1..5)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        prop::sample::select(vec![0o644, 0o755, 0o4755, 0o000]).prop_map(Kind::File),
        Just(Kind::Dir),
        name().prop_map(Kind::Symlink),
        Just(Kind::Symlink("../sentinel".to_string())),
        Just(Kind::Symlink("/".to_string())),
        name().prop_map(Kind::Hardlink),
        Just(Kind::Hardlink("../sentinel".to_string())),
    ]
}

const SENTINEL: &[u8] = b"must survive";

/// Applies `layer` onto a root beside a sentinel file, then checks the root's
/// folder holds only the two and the sentinel is unchanged.
fn apply_beside_sentinel(layer: &[u8]) -> Result<(), TestCaseError> {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path().join("root");
    fs::create_dir(&root).unwrap();
    let sentinel = folder.path().join("sentinel");
    fs::write(&sentinel, SENTINEL).unwrap();
    let before = fs::symlink_metadata(&sentinel).unwrap();
    let start = Instant::now();
    let _ = apply_layer(
        layer,
        &root,
        "sha256:fuzz",
        "application/vnd.oci.image.layer.v1.tar",
    );
    prop_assert!(
        start.elapsed() < Duration::from_secs(10),
        "a small layer took {:?}",
        start.elapsed()
    );
    let mut names: Vec<_> = fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    names.sort();
    prop_assert_eq!(names, vec!["root", "sentinel"]);
    let after = fs::symlink_metadata(&sentinel).unwrap();
    prop_assert!(after.file_type().is_file());
    prop_assert_eq!(
        (after.ino(), after.mode(), after.nlink(), after.mtime()),
        (before.ino(), before.mode(), before.nlink(), before.mtime())
    );
    prop_assert_eq!(fs::read(&sentinel).unwrap(), SENTINEL);
    // A folder left without the write bit would keep the temp dir around.
    make_writable(&root);
    Ok(())
}

/// Gives every folder under `dir` (not following symlinks) its owner's
/// write and search bits back, so the temp folder can be removed.
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

/// A small valid layer: a folder, files, a symlink, a hard link, a whiteout.
fn layer_seed() -> Vec<u8> {
    tar(&[
        Item::Dir("etc/"),
        Item::File("etc/a", b"one", 0o644),
        Item::File("etc/b", b"two", 0o755),
        Item::Symlink("etc/link", "a"),
        Item::Hardlink("etc/hard", "etc/a"),
        Item::File("etc/.wh.b", b"", 0o644),
    ])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Generated entries, hostile names and links included.
    #[test]
    fn layers_of_generated_entries_stay_inside_the_root(
        entries in prop::collection::vec((name(), kind()), 1..10)
    ) {
        let items: Vec<Item> = entries
            .iter()
            .map(|(name, kind)| match kind {
                Kind::File(mode) => Item::File(name, b"x", *mode),
                Kind::Dir => Item::Dir(name),
                Kind::Symlink(target) => Item::Symlink(name, target),
                Kind::Hardlink(target) => Item::Hardlink(name, target),
            })
            .collect();
        apply_beside_sentinel(&tar(&items))?;
    }

    /// The seed layer with a few bytes changed, added or cut (headers,
    /// names, sizes, checksums).
    #[test]
    fn mutated_layers_stay_inside_the_root(layer in mutated(layer_seed())) {
        apply_beside_sentinel(&layer)?;
    }
}

#[test]
fn the_layer_seed_applies() {
    let folder = tempfile::tempdir().unwrap();
    apply_layer(
        &layer_seed()[..],
        folder.path(),
        "sha256:seed",
        "application/vnd.oci.image.layer.v1.tar",
    )
    .unwrap();
    assert!(folder.path().join("etc/hard").is_file());
    assert!(!folder.path().join("etc/b").exists());
}
