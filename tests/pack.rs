//! `kiln pack` and the layer/image library against the tools users trust:
//! skopeo, umoci, oci-image-tool and runc, on the fixture nixpkgs' real
//! store paths.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln::image::{self, Destination, ImageBuilder};
use kiln::layer::{Compression, Format, LayerCache, LayerError, PackSettings};
use kiln_harness::validators::{oci_image_tool_validate, skopeo_copy, skopeo_inspect, Bundle};
use kiln_harness::{require, AsUser, FixtureNixpkgs, Registry, RegistryKind};

const IMAGE_TOOLS: [&str; 4] = ["skopeo", "umoci", "oci-image-tool", "runc"];

fn kiln(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("SOURCE_DATE_EPOCH");
    command.envs(env.iter().copied());
    command.output().expect("run kiln")
}

fn succeed(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// `kiln --cache-dir CACHE pack PACKAGES... <fixture sources> --cmd "node
/// --version" --label org.example=kiln -o DEST`.
fn pack_args(fixture: &FixtureNixpkgs, cache: &Path, dest: &str, packages: &[&str]) -> Vec<String> {
    let mut args = vec![
        "--cache-dir".to_string(),
        cache.display().to_string(),
        "pack".to_string(),
    ];
    args.extend(packages.iter().map(|p| p.to_string()));
    args.extend(fixture.kiln_source_args());
    args.extend(
        [
            "--cmd",
            "node --version",
            "--label",
            "org.example=kiln",
            "-o",
            dest,
        ]
        .map(String::from),
    );
    args
}

/// Packs `packages` into `dest` with a cache in `cache`; returns the
/// printed manifest digest.
fn pack(
    fixture: &FixtureNixpkgs,
    cache: &Path,
    dest: &str,
    packages: &[&str],
    env: &[(&str, &str)],
) -> String {
    let args = pack_args(fixture, cache, dest, packages);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    succeed(kiln(&args, env), "kiln pack").trim().to_string()
}

#[test]
fn nodejs_image_is_accepted_by_every_tool_unpacks_to_the_store_and_runs() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&IMAGE_TOOLS) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let digest = pack(
        fixture,
        &cache,
        &format!("oci:{}:v1", layout.display()),
        &["nodejs", "bash"],
        &[],
    );
    assert!(digest.starts_with("sha256:"), "{digest}");

    let inspect = skopeo_inspect(&format!("oci:{}:v1", layout.display()), &[]);
    assert_eq!(inspect["Digest"], digest.as_str());
    assert_eq!(inspect["Labels"]["org.example"], "kiln");
    oci_image_tool_validate(&layout, "v1");

    let archive = work.path().join("image.oci.tar");
    pack(
        fixture,
        &cache,
        &format!("oci-archive:{}:v1", archive.display()),
        &["nodejs", "bash"],
        &[],
    );
    let inspect = skopeo_inspect(&format!("oci-archive:{}:v1", archive.display()), &[]);
    assert_eq!(inspect["Digest"], digest.as_str());

    let docker = work.path().join("image.docker.tar");
    pack(
        fixture,
        &cache,
        &format!("docker-archive:{}:kiln/node:v1", docker.display()),
        &["nodejs", "bash"],
        &[],
    );
    let inspect = skopeo_inspect(&format!("docker-archive:{}", docker.display()), &[]);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 6);
    assert_eq!(docker_manifest(&docker)[0]["RepoTags"][0], "kiln/node:v1");
    let copied = work.path().join("copied.docker.tar");
    skopeo_copy(
        &format!("oci:{}:v1", layout.display()),
        &format!("docker-archive:{}:copied:v1", copied.display()),
        &[],
    );
    let from_docker = work.path().join("from-docker");
    skopeo_copy(
        &format!("docker-archive:{}", docker.display()),
        &format!("oci:{}:back", from_docker.display()),
        &[],
    );
    oci_image_tool_validate(&from_docker, "back");

    let bundle = Bundle::unpack(&layout, "v1");
    for store_path in fixture_closure(fixture.store_path("nodejs")) {
        assert_same_tree(
            Path::new(&store_path),
            &bundle.rootfs().join(&store_path[1..]),
        );
    }
    let profile_node = bundle.rootfs().join("nix/var/kiln/profile/bin/node");
    assert!(fs::symlink_metadata(&profile_node)
        .unwrap()
        .file_type()
        .is_symlink());

    bundle.prepare(|_| {});
    let output = bundle.run_to_completion("kiln-pack-node");
    let host = Command::new(format!("{}/bin/node", fixture.store_path("nodejs")))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "node in the image failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&host.stdout)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with('v'));
}

fn docker_manifest(archive: &Path) -> serde_json::Value {
    let mut archive = tar::Archive::new(fs::File::open(archive).unwrap());
    let entry = archive
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|e| e.path().unwrap() == Path::new("manifest.json"))
        .expect("docker archive has manifest.json");
    serde_json::from_reader(entry).unwrap()
}

fn fixture_closure(root: &str) -> Vec<String> {
    let out = Command::new("nix-store")
        .args(["--query", "--requisites", root])
        .output()
        .unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Every file under `expected` is under `actual` with the same bytes,
/// permission bits and link targets, and nothing more.
fn assert_same_tree(expected: &Path, actual: &Path) {
    let a = fs::symlink_metadata(expected).unwrap();
    let b = fs::symlink_metadata(actual).unwrap_or_else(|e| panic!("{}: {e}", actual.display()));
    assert_eq!(a.file_type(), b.file_type(), "{}", actual.display());
    assert_eq!(
        a.mode() & 0o7777,
        b.mode() & 0o7777,
        "mode of {}",
        actual.display()
    );
    if a.file_type().is_symlink() {
        assert_eq!(
            fs::read_link(expected).unwrap(),
            fs::read_link(actual).unwrap()
        );
    } else if a.is_file() {
        assert!(
            fs::read(expected).unwrap() == fs::read(actual).unwrap(),
            "bytes of {}",
            actual.display()
        );
    } else if a.is_dir() {
        let names = |dir: &Path| {
            let mut names: Vec<_> = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            names
        };
        let expected_names = names(expected);
        assert_eq!(
            expected_names,
            names(actual),
            "entries of {}",
            actual.display()
        );
        for name in expected_names {
            assert_same_tree(&expected.join(&name), &actual.join(&name));
        }
    }
}

#[test]
fn digest_is_the_same_for_any_thread_count_and_user_and_follows_source_date_epoch() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    let Some(user) = AsUser::get() else { return };
    let work = tempfile::tempdir().unwrap();
    let packages = [fixture.store_path("nodejs"), fixture.store_path("bash")];
    let digest_with = |threads: &str, epoch: Option<&str>| {
        let dir = tempfile::tempdir_in(work.path()).unwrap();
        let mut env = vec![("RAYON_NUM_THREADS", threads)];
        env.extend(epoch.map(|e| ("SOURCE_DATE_EPOCH", e)));
        pack(
            fixture,
            &dir.path().join("cache"),
            &format!("oci:{}/out", dir.path().display()),
            &packages,
            &env,
        )
    };
    let one = digest_with("1", None);
    let two = digest_with("2", None);
    assert_eq!(one, two, "thread count changed the digest");
    assert_ne!(
        digest_with("2", Some("1700000000")),
        one,
        "SOURCE_DATE_EPOCH did not change the digest"
    );

    // The test user fetches the same store paths from the fixture's cache
    // into a cache of its own.
    let home = user.tempdir();
    let args = pack_args(
        fixture,
        &home.path().join("cache"),
        &format!("oci:{}/out", home.path().display()),
        &packages,
    );
    let output = user
        .command(env!("CARGO_BIN_EXE_kiln"))
        .args(&args)
        .output()
        .unwrap();
    let as_user = succeed(output, "kiln pack as the test user");
    assert_eq!(
        as_user.trim(),
        one,
        "the unprivileged user got another digest"
    );
}

/// A folder of every awkward thing a layer meets.
fn hostile_folder(root: &Path) -> PathBuf {
    let dir = root.join("hostile");
    fs::create_dir_all(dir.join("sub")).unwrap();
    fs::write(dir.join("new\nline"), "newline").unwrap();
    fs::write(dir.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), "non-utf8").unwrap();
    let mut deep = dir.clone();
    for i in 0..3 {
        deep = deep.join(format!("{i}{}", "x".repeat(120)));
    }
    fs::create_dir_all(&deep).unwrap();
    fs::write(deep.join("over-255-bytes"), "deep").unwrap();
    symlink("../../etc", dir.join("sub/escape")).unwrap();
    symlink("../../../../../../etc/passwd", dir.join("passwd-link")).unwrap();
    fs::write(dir.join("sub/original"), "linked").unwrap();
    fs::hard_link(dir.join("sub/original"), dir.join("sub/second-name")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    fs::write(dir.join("setuid-tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("setuid-tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    dir
}

fn settings() -> PackSettings {
    PackSettings {
        compression: Compression::new(Format::Gzip, None).unwrap(),
        source_date_epoch: 1,
    }
}

#[test]
fn hostile_names_round_trip_through_umoci_without_escaping() {
    if !require(&["umoci", "skopeo"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dir = hostile_folder(work.path());
    let socket = dir.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();

    let cache = LayerCache::open(&work.path().join("cache")).unwrap();
    let (layer, skipped) = cache
        .pack_folder("app", &dir, &settings(), "hostile")
        .unwrap();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].path, socket);

    let mut archive = tar::Archive::new(layer.open_uncompressed().unwrap());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path_bytes().into_owned();
        assert!(
            !path.starts_with(b"/"),
            "absolute entry {}",
            String::from_utf8_lossy(&path)
        );
        assert!(
            !path.split(|&b| b == b'/').any(|part| part == b".."),
            "entry with .. {}",
            String::from_utf8_lossy(&path)
        );
    }

    let image = ImageBuilder::new(1).layers([layer]).build().unwrap();
    let layout = work.path().join("layout");
    let destination: Destination = format!("oci:{}:hostile", layout.display()).parse().unwrap();
    image::write(&image, &destination, &[]).unwrap();
    skopeo_inspect(&format!("oci:{}:hostile", layout.display()), &[]);

    let bundle = Bundle::unpack(&layout, "hostile");
    let unpacked = bundle.rootfs().join("app");
    fs::remove_file(&socket).unwrap();
    assert_same_tree(&dir, &unpacked);
    let original = fs::metadata(unpacked.join("sub/original")).unwrap();
    let second = fs::metadata(unpacked.join("sub/second-name")).unwrap();
    assert_eq!(original.ino(), second.ino(), "hard link restored as a copy");
    assert!(fs::symlink_metadata(unpacked.join("pipe"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert!(
        !bundle.rootfs().join("etc").exists() && !bundle.path().join("etc").exists(),
        "something was written through ../../etc"
    );
}

#[test]
fn whiteout_named_files_are_refused_by_name() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("app");
    fs::create_dir_all(dir.join("deep")).unwrap();
    fs::write(dir.join("deep/.wh.config"), "x").unwrap();
    let cache = LayerCache::open(&work.path().join("cache")).unwrap();
    let err = cache
        .pack_folder("app", &dir, &settings(), "app")
        .unwrap_err();
    assert!(matches!(err, LayerError::WhiteoutName { .. }));
    let message = err.to_string();
    assert!(
        message.contains(&dir.join("deep/.wh.config").display().to_string()),
        "{message}"
    );
}

#[test]
fn overlay_whiteouts_and_opaque_dirs_become_oci_entries() {
    if !kiln_harness::require_root() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let upper = work.path().join("upper");
    fs::create_dir_all(upper.join("etc/conf.d")).unwrap();
    fs::write(upper.join("etc/conf.d/new"), "n").unwrap();
    nix::sys::stat::mknod(
        &upper.join("etc/removed"),
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::empty(),
        0,
    )
    .unwrap();
    xattr::set(upper.join("etc/conf.d"), "trusted.overlay.opaque", b"y").unwrap();
    let cache = LayerCache::open(&work.path().join("cache")).unwrap();
    let (layer, _) = cache.pack_folder("", &upper, &settings(), "phase").unwrap();
    let mut archive = tar::Archive::new(layer.open_uncompressed().unwrap());
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            "etc/",
            "etc/.wh.removed",
            "etc/conf.d/",
            "etc/conf.d/.wh..wh..opq",
            "etc/conf.d/new"
        ]
    );
}

#[test]
fn zstd_layers_are_read_by_skopeo() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["skopeo", "oci-image-tool"]) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let cache = work.path().join("cache");
    let mut args = vec![
        "--cache-dir".to_string(),
        cache.display().to_string(),
        "pack".to_string(),
        "busybox".to_string(),
    ];
    args.extend(fixture.kiln_source_args());
    args.extend(
        [
            "--compression",
            "zstd",
            "--max-layers",
            "3",
            "-o",
            &format!("oci:{}:z", layout.display()),
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let digest = succeed(kiln(&args, &[]), "kiln pack --compression zstd");
    let inspect = skopeo_inspect(&format!("oci:{}:z", layout.display()), &["--raw"]);
    let media_types: Vec<&str> = inspect["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    assert_eq!(
        media_types.len(),
        3,
        "--max-layers 3 not kept: {media_types:?}"
    );
    assert!(media_types
        .iter()
        .all(|m| *m == "application/vnd.oci.image.layer.v1.tar+zstd"));
    assert!(digest.trim().starts_with("sha256:"));
    // Recompressing to gzip makes skopeo decompress every zstd frame and
    // check each diffID; oci-image-tool then validates the result.
    let gzip_layout = work.path().join("gzip");
    skopeo_copy(
        &format!("oci:{}:z", layout.display()),
        &format!("oci:{}:g", gzip_layout.display()),
        &["--dest-compress", "--dest-compress-format", "gzip"],
    );
    oci_image_tool_validate(&gzip_layout, "g");
}

/// With no Nix on PATH, an empty cache and the host store ignored, `kiln
/// pack nodejs` resolves the name from a lock, fetches the closure from the
/// fixture's signed cache into kiln's own store, and the image runs node.
#[test]
fn pack_without_nix_fetches_the_closure_from_the_cache_and_runs_node() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&IMAGE_TOOLS) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    // The lock is written once with Nix, as a project would commit it.
    let app = work.path().join("app");
    fs::create_dir_all(&app).unwrap();
    fs::write(
        app.join("nixpacks.toml"),
        "[phases.setup]\nnixPkgs = [\"nodejs\"]\n",
    )
    .unwrap();
    let mut lock = vec!["lock".to_string(), app.display().to_string()];
    lock.extend(fixture.kiln_source_args());
    let lock: Vec<&str> = lock.iter().map(String::as_str).collect();
    succeed(kiln(&lock, &[]), "kiln lock");

    let cache = work.path().join("cache");
    let layout = work.path().join("layout");
    let mut args = pack_args(
        fixture,
        &cache,
        &format!("oci:{}:v1", layout.display()),
        &["nodejs", "bash"],
    );
    args.extend([
        "--lock".to_string(),
        app.join("kiln.lock").display().to_string(),
        "--ignore-host-store".to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let digest = succeed(kiln(&args, &[("PATH", "/nonexistent")]), "kiln pack");
    assert!(digest.trim().starts_with("sha256:"), "{digest}");

    let nodejs = fixture.store_path("nodejs");
    let in_kiln_store = cache.join("store").join(&nodejs["/nix/store/".len()..]);
    assert!(
        in_kiln_store.join("bin/node").is_file(),
        "{nodejs} was not fetched into kiln's store"
    );
    let bundle = Bundle::unpack(&layout, "v1");
    bundle.prepare(|_| {});
    let output = bundle.run_to_completion("kiln-pack-no-nix");
    let host = Command::new(format!("{nodejs}/bin/node"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "node in the image failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.stdout, host.stdout);
}

/// `--output docker://REF` and `--push REF` both push to a registry, and
/// skopeo reads back the digest kiln printed.
#[test]
fn pack_pushes_with_docker_output_and_with_push() {
    let Some(fixture) = FixtureNixpkgs::get() else {
        return;
    };
    if !require(&["docker-registry", "skopeo"]) {
        return;
    }
    let registry = Registry::start(RegistryKind::Plain);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let mut digests = Vec::new();
    for (flag, name) in [
        ("-o", "docker://{host}/kiln/out:1"),
        ("--push", "{host}/kiln/pushed:1"),
    ] {
        let target = name.replace("{host}", &host);
        let mut args = vec![
            "--cache-dir".to_string(),
            cache.display().to_string(),
            "pack".to_string(),
            "busybox".to_string(),
            flag.to_string(),
            target,
            "--insecure-registry".to_string(),
            host.clone(),
        ];
        args.extend(fixture.kiln_source_args());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        digests.push(
            succeed(kiln(&args, &[]), "kiln pack to a registry")
                .trim()
                .to_string(),
        );
    }
    assert_eq!(digests[0], digests[1], "the same image both ways");
    for repository in ["kiln/out:1", "kiln/pushed:1"] {
        let inspect = skopeo_inspect(
            &format!("docker://{host}/{repository}"),
            &["--tls-verify=false"],
        );
        assert_eq!(inspect["Digest"], digests[0].as_str(), "{repository}");
    }
}
