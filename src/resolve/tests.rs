use std::fs;
use std::io::Write;

use super::*;

#[test]
fn groups_merge_by_archive_with_the_default_filled_in() {
    let groups = group_by_archive(&[
        PackageGroup {
            pkgs: vec!["nodejs_18".into(), "npm-9_x".into()],
            ..PackageGroup::default()
        },
        PackageGroup {
            nixpkgs_archive: Some("abc".into()),
            pkgs: vec!["python3".into()],
            ..PackageGroup::default()
        },
        PackageGroup {
            pkgs: vec!["nodejs_18".into()],
            libs: vec!["zlib".into()],
            overlays: vec!["o".into()],
            ..PackageGroup::default()
        },
        PackageGroup::default(),
    ]);
    assert_eq!(groups.len(), 2);
    let default = groups
        .iter()
        .find(|g| g.nixpkgs_archive.as_deref() == Some(DEFAULT_NIXPKGS_ARCHIVE))
        .unwrap();
    assert_eq!(default.pkgs, ["nodejs_18", "npm-9_x"]);
    assert_eq!(default.libs, ["zlib"]);
    assert_eq!(default.overlays, ["o"]);
}

#[test]
fn without_lock_or_evaluator_the_error_names_packages_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let options = ResolveOptions {
        evaluator: Evaluator::Disabled,
        ..ResolveOptions::for_app(dir.path(), dir.path())
    };
    let groups = [PackageGroup {
        pkgs: vec!["nodejs_18".into()],
        libs: vec!["zlib".into()],
        ..PackageGroup::default()
    }];
    let message = resolve(&groups, &options).unwrap_err().to_string();
    assert!(message.contains("nodejs_18, zlib"), "{message}");
    assert!(
        message.contains("kiln lock") && message.contains("install nix"),
        "{message}"
    );
}

#[test]
fn a_matching_lock_answers_without_an_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    let mut lock = Lock {
        version: lock::LOCK_VERSION,
        entries: vec![],
    };
    let path = "/nix/store/1c5j5rbh8rmsm0dkx5hd4gfzfm0v0gyb-zlib-1.2.13";
    lock.merge(LockEntry {
        nixpkgs_archive: DEFAULT_NIXPKGS_ARCHIVE.into(),
        overlays: vec![],
        system: current_system(),
        packages: [(
            "zlib".to_string(),
            LockedPackage {
                out_path: path.into(),
                drv_path: None,
            },
        )]
        .into(),
        nixpkgs_sha256: None,
        overlay_sha256: BTreeMap::new(),
    });
    lock.write(&dir.path().join(LOCK_FILE)).unwrap();
    let options = ResolveOptions {
        evaluator: Evaluator::Program("/nonexistent/nix-instantiate".into()),
        ..ResolveOptions::for_app(dir.path(), dir.path())
    };
    let resolved = resolve(
        &[PackageGroup {
            libs: vec!["zlib".into()],
            ..PackageGroup::default()
        }],
        &options,
    )
    .unwrap();
    assert_eq!(resolved.answer, Answer::Lock);
    assert_eq!(resolved.store_paths(), [path]);
    assert_eq!(resolved.library_dirs(), [format!("{path}/lib")]);
}

/// `dir` packed as GitHub packs a commit: a `.tar.gz` with one top folder.
fn pack(dir: &Path, top: &str) -> Vec<u8> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gzip);
    builder.append_dir_all(top, dir).unwrap();
    builder.into_inner().unwrap().finish().unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The fixture nixpkgs and an overlay, served from a `file://` mirror the
/// way GitHub serves archives; the resolution must match evaluating the
/// fixture folder, fetch nothing twice, and lock the archives' sha256.
#[test]
fn a_mirrored_archive_with_an_overlay_resolves_like_the_folder_and_is_locked() {
    if !kiln_harness::require(&["nix-instantiate"]) {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nixpkgs");
    let mirror = tempfile::tempdir().unwrap();
    let archive = pack(&fixture, &format!("nixpkgs-{DEFAULT_NIXPKGS_ARCHIVE}"));
    let archive_file = mirror
        .path()
        .join(format!("{DEFAULT_NIXPKGS_ARCHIVE}.tar.gz"));
    fs::write(&archive_file, &archive).unwrap();
    let overlay_dir = tempfile::tempdir().unwrap();
    fs::File::create(overlay_dir.path().join("default.nix"))
        .unwrap()
        .write_all(b"self: super: { from-overlay = super.bash; }")
        .unwrap();
    let overlay = pack(overlay_dir.path(), "overlay");
    fs::write(mirror.path().join("overlay.tar.gz"), &overlay).unwrap();
    let overlay_url = format!("file://{}/overlay.tar.gz", mirror.path().display());

    let app = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let options = ResolveOptions {
        eval_cache: Some(EvalCache::open(cache.path())),
        archives: Archives::open(cache.path())
            .with_base(&format!("file://{}", mirror.path().display())),
        ..ResolveOptions::for_app(app.path(), cache.path())
    };
    let group = PackageGroup {
        overlays: vec![overlay_url.clone()],
        pkgs: vec!["bash".into(), "from-overlay".into()],
        libs: vec!["zlib".into()],
        ..PackageGroup::default()
    };
    let resolved = resolve(std::slice::from_ref(&group), &options).unwrap();
    assert_eq!(resolved.answer, Answer::Evaluated);

    let folder = ResolveOptions {
        nixpkgs: Some(fixture.clone()),
        write_lock: false,
        ..ResolveOptions::for_app(app.path(), cache.path())
    };
    let plain = PackageGroup {
        overlays: vec![],
        pkgs: vec!["bash".into()],
        ..group.clone()
    };
    let expected = resolve(&[plain], &folder).unwrap();
    let bash = &expected.groups[0].pkgs["bash"];
    assert_eq!(resolved.groups[0].pkgs["bash"], *bash);
    assert_eq!(resolved.groups[0].pkgs["from-overlay"], *bash);
    assert_eq!(resolved.groups[0].libs, expected.groups[0].libs);

    let lock = Lock::read(&app.path().join(LOCK_FILE)).unwrap();
    let entry = &lock.entries[0];
    assert_eq!(
        entry.overlays,
        std::slice::from_ref(&overlay_url),
        "the plan's URL, not a folder"
    );
    assert_eq!(entry.nixpkgs_sha256, Some(sha256_hex(&archive)));
    assert_eq!(entry.overlay_sha256[&overlay_url], sha256_hex(&overlay));

    // The mirror gone and the lock removed: kiln's evaluation cache
    // answers, and nothing is fetched.
    fs::remove_file(&archive_file).unwrap();
    fs::remove_file(app.path().join(LOCK_FILE)).unwrap();
    let again = resolve(std::slice::from_ref(&group), &options).unwrap();
    assert_eq!(again.answer, Answer::Cached);
    assert_eq!(again.groups, resolved.groups);

    // Another machine (an empty cache) whose mirror serves other bytes
    // than the lock records is refused, naming both.
    lock.write(&app.path().join(LOCK_FILE)).unwrap();
    let changed = pack(&fixture, "nixpkgs-other");
    fs::write(&archive_file, &changed).unwrap();
    let other_cache = tempfile::tempdir().unwrap();
    let other = ResolveOptions {
        refresh: true,
        archives: Archives::open(other_cache.path())
            .with_base(&format!("file://{}", mirror.path().display())),
        ..ResolveOptions::for_app(app.path(), other_cache.path())
    };
    let err = resolve(&[group], &other).unwrap_err().to_string();
    for part in [
        archive_file.display().to_string(),
        sha256_hex(&archive),
        sha256_hex(&changed),
    ] {
        assert!(err.contains(&part), "{part}: {err}");
    }
}

/// Upstream's PHP and Rust plans name packages by parenthesised Nix
/// expressions; they evaluate over the package set like attribute names,
/// and one cannot reach past its own text into the rest of the evaluation.
#[test]
fn parenthesised_package_expressions_evaluate_and_stay_in_their_own_file() {
    if !kiln_harness::require(&["nix-instantiate"]) {
        return;
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/nixpkgs");
    let app = tempfile::tempdir().unwrap();
    let cache = tempfile::tempdir().unwrap();
    let options = ResolveOptions {
        nixpkgs: Some(fixture),
        write_lock: false,
        ..ResolveOptions::for_app(app.path(), cache.path())
    };
    let group = |pkgs: &[&str]| PackageGroup {
        pkgs: pkgs.iter().map(|name| name.to_string()).collect(),
        ..PackageGroup::default()
    };
    let expression = "(if pkgs ? bash then bash else zlib)";
    let resolved = resolve(&[group(&["bash", expression])], &options).unwrap();
    let packages = &resolved.groups[0].pkgs;
    assert_eq!(packages[expression], packages["bash"]);

    // Text closing its own parenthesis and adding a field of the result
    // is a syntax error in the expression's own file, named by its text.
    let escape = r#"(bash); }; packages."bash" = { out = "/nix/store/x"; }; x = (zlib)"#;
    let err = resolve(&[group(&["bash", escape])], &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("syntax error"), "{err}");
    assert!(
        err.contains(&format!("the package expression `{escape}`")),
        "{err}"
    );

    // Nix's own error line is kept, not only the lines after it.
    let unknown = "(php74.withExtensions (pe: pe.enabled))";
    let err = resolve(&[group(&[unknown])], &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("error: undefined variable 'php74'"), "{err}");

    // The sandbox and restrict-eval bound an expression as an overlay.
    let reader = r#"(builtins.readFile "/etc/passwd")"#;
    let err = resolve(&[group(&[reader])], &options)
        .unwrap_err()
        .to_string();
    assert!(!err.contains("root:x:0"), "{err}");
}
