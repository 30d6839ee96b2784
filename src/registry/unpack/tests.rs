//! Hostile and ordinary layers applied with [`super::apply_layer`] and
//! [`super::unpack_layers`].

use std::os::unix::fs::PermissionsExt;

use super::*;

/// A tar built by the test: `(name, kind)` pairs.
pub(super) enum Item<'a> {
    File(&'a str, &'a [u8], u32),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

pub(super) fn tar(items: &[Item]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for item in items {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1);
        // `set_path` refuses `..`; hostile names go in raw.
        let set_name = |header: &mut tar::Header, name: &str| {
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
        };
        match item {
            Item::File(name, data, mode) => {
                set_name(&mut header, name);
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                header.set_entry_type(EntryType::Regular);
                header.set_cksum();
                builder.append(&header, *data).unwrap();
            }
            Item::Dir(name) => {
                set_name(&mut header, name);
                header.set_mode(0o755);
                header.set_entry_type(EntryType::Directory);
                header.set_size(0);
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
            Item::Symlink(name, target) | Item::Hardlink(name, target) => {
                set_name(&mut header, name);
                header.set_mode(0o777);
                header.set_entry_type(if matches!(item, Item::Symlink(..)) {
                    EntryType::Symlink
                } else {
                    EntryType::Link
                });
                header.set_size(0);
                let t = target.as_bytes();
                header.as_old_mut().linkname[..t.len()].copy_from_slice(t);
                header.set_cksum();
                builder.append(&header, &[][..]).unwrap();
            }
        }
    }
    builder.into_inner().unwrap()
}

fn apply(root: &Path, items: &[Item]) -> Result<(), UnpackError> {
    apply_layer(
        &tar(items)[..],
        root,
        "sha256:test",
        "application/vnd.oci.image.layer.v1.tar",
    )
}

#[test]
fn later_layers_replace_and_whiteouts_delete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    apply(
        &root,
        &[
            Item::Dir("etc/"),
            Item::File("etc/a", b"one", 0o644),
            Item::File("etc/gone", b"x", 0o644),
            Item::File("bin/tool", b"#!", 0o755),
            Item::Hardlink("bin/tool2", "bin/tool"),
        ],
    )
    .unwrap();
    apply(
        &root,
        &[
            Item::File("etc/a", b"two", 0o600),
            Item::File("etc/.wh.gone", b"", 0o644),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("etc/a")).unwrap(), b"two");
    assert_eq!(
        root.join("etc/a").metadata().unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!root.join("etc/gone").exists());
    assert_eq!(
        root.join("bin/tool")
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        root.join("bin/tool").metadata().unwrap().ino(),
        root.join("bin/tool2").metadata().unwrap().ino()
    );
}

#[test]
fn an_opaque_folder_hides_only_lower_layers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    apply(
        root,
        &[
            Item::File("var/lib/old", b"x", 0o644),
            Item::File("var/lib/sub/deep", b"x", 0o644),
        ],
    )
    .unwrap();
    apply(
        root,
        &[
            Item::File("var/lib/new", b"y", 0o644),
            Item::File("var/lib/.wh..wh..opq", b"", 0o644),
        ],
    )
    .unwrap();
    assert!(root.join("var/lib/new").exists());
    assert!(!root.join("var/lib/old").exists());
    assert!(!root.join("var/lib/sub").exists());
}

#[test]
fn names_that_climb_out_are_refused() {
    for name in ["../outside", "a/../../outside", "/../outside"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let err = apply(&root, &[Item::File(name, b"x", 0o644)]).unwrap_err();
        assert!(matches!(err, UnpackError::Escape { .. }), "{name}: {err}");
        assert!(!dir.path().join("outside").exists());
    }
    let dir = tempfile::tempdir().unwrap();
    let err = apply(dir.path(), &[Item::Hardlink("x", "../../etc/passwd")]).unwrap_err();
    assert!(matches!(err, UnpackError::Escape { .. }), "{err}");
}

#[test]
fn a_layer_without_final_padding_and_trailer_unpacks() {
    let dir = tempfile::tempdir().unwrap();
    let full = tar(&[
        Item::File("a", b"x", 0o644),
        Item::File("b", b"hi\n", 0o644),
    ]);
    // Header of `a`, its block, header of `b`, then only b's 3 bytes.
    let cut = &full[..512 * 3 + 3];
    apply_layer(
        cut,
        dir.path(),
        "sha256:cut",
        "application/vnd.oci.image.layer.v1.tar",
    )
    .unwrap();
    assert_eq!(std::fs::read(dir.path().join("b")).unwrap(), b"hi\n");
    let bigger = tar(&[Item::File("c", &[7u8; 4096], 0o644)]);
    assert!(apply_layer(&bigger[..512 + 100], dir.path(), "sha256:short", "t").is_err());
}

#[test]
fn absolute_names_land_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    apply(
        &root,
        &[Item::Dir("/"), Item::File("/etc/inside", b"x", 0o644)],
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("etc/inside")).unwrap(), b"x");
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn symlinked_parents_stay_inside_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&root).unwrap();
    apply(
        &root,
        &[
            Item::Symlink("abs", "/"),
            Item::Symlink("rel", "../../.."),
            Item::Symlink("out", outside.to_str().unwrap()),
            Item::Dir("usr/bin/"),
            Item::Symlink("bin", "usr/bin"),
        ],
    )
    .unwrap();
    apply(
        &root,
        &[
            Item::File("abs/etc/x", b"1", 0o644),
            Item::File("rel/y", b"2", 0o644),
            Item::File("out/z", b"3", 0o644),
            Item::File("bin/sh", b"4", 0o755),
        ],
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("etc/x")).unwrap(), b"1");
    assert_eq!(std::fs::read(root.join("y")).unwrap(), b"2");
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    assert_eq!(
        std::fs::read(root.join(outside.strip_prefix("/").unwrap()).join("z")).unwrap(),
        b"3"
    );
    assert_eq!(std::fs::read(root.join("usr/bin/sh")).unwrap(), b"4");
    assert!(!dir.path().join("etc").exists());
}

#[test]
fn a_symlink_loop_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let err = apply(
        dir.path(),
        &[
            Item::Symlink("a", "b"),
            Item::Symlink("b", "a"),
            Item::File("a/x", b"", 0o644),
        ],
    )
    .unwrap_err();
    assert!(err.to_string().contains("symbolic links"), "{err}");
}

#[test]
fn a_layer_must_match_its_diff_id() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = tar(&[Item::File("f", b"x", 0o644)]);
    let blob = dir.path().join("blob");
    std::fs::write(&blob, &bytes).unwrap();
    let mut layer = PulledLayer {
        digest: "sha256:blob".into(),
        diff_id: crate::layer::digest::sha256_digest(&bytes),
        media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        size: bytes.len() as u64,
        path: blob,
    };
    unpack_layers(std::slice::from_ref(&layer), &dir.path().join("ok")).unwrap();
    layer.diff_id = format!("sha256:{}", "0".repeat(64));
    let err = unpack_layers(&[layer], &dir.path().join("bad")).unwrap_err();
    assert!(matches!(err, UnpackError::DiffIdMismatch { .. }), "{err}");
}

#[test]
fn garbage_is_a_corrupt_layer_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let blob = dir.path().join("blob");
    std::fs::write(&blob, b"this is not gzip at all").unwrap();
    let layer = PulledLayer {
        digest: "sha256:abc".into(),
        diff_id: "sha256:def".into(),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        size: 23,
        path: blob,
    };
    let err = unpack_layers(&[layer], &dir.path().join("root")).unwrap_err();
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("sha256:abc"), "{err}");
}

#[test]
fn whiteouts_naming_dot_or_dot_dot_are_refused() {
    for name in [".wh...", "a/.wh...", "a/.wh..", "a/.wh.", ".wh."] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("sentinel"), "outside").unwrap();
        apply(&root, &[Item::Dir("a/"), Item::File("a/keep", b"k", 0o644)]).unwrap();
        let err = apply(&root, &[Item::File(name, b"", 0o644)]).unwrap_err();
        assert!(matches!(err, UnpackError::Corrupt { .. }), "{name}: {err}");
        assert!(err.to_string().contains(name), "{name}: {err}");
        assert!(dir.path().join("sentinel").exists(), "{name}");
        assert!(root.join("a/keep").exists(), "{name}");
    }
}

#[test]
fn setuid_and_setgid_bits_are_stripped_on_unpack() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    apply(
        &root,
        &[
            Item::File("su", b"x", 0o4755),
            Item::File("wall", b"y", 0o2755),
            Item::File("sticky", b"z", 0o1777),
        ],
    )
    .unwrap();
    let mode = |name: &str| {
        std::fs::metadata(root.join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("su"), 0o755);
    assert_eq!(mode("wall"), 0o755);
    assert_eq!(mode("sticky"), 0o1777, "the sticky bit stays");
}

#[test]
fn the_limit_lets_exactly_its_bytes_through_and_no_more() {
    let read_all = |bytes: &[u8], left: u64| {
        let mut limited = Limited {
            inner: bytes,
            left,
            exceeded: false,
        };
        let result = std::io::copy(&mut limited, &mut std::io::sink());
        (result.is_ok(), limited.exceeded)
    };
    assert_eq!(read_all(&[0; 4096], 4096), (true, false));
    assert_eq!(read_all(&[0; 4097], 4096), (false, true));
    assert_eq!(read_all(&[], 0), (true, false));
}
