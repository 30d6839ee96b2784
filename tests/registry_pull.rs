//! `kiln::registry::pull_image` and `unpack_layers` on base images that
//! skopeo pushed to a real `docker-registry`, in OCI and Docker schema 2
//! form and behind an index; a blob corrupted in the registry is refused.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln::registry::{
    pull_image, push_layout, unpack_layers, unpack_layers_within, AuthEnv, Platform, PulledImage,
    PushRequest, RegistryConfig, RegistryError,
};
use kiln_harness::debian::{debian_image, SUITE};
use kiln_harness::hash::sha256_digest;
use kiln_harness::images::{
    busybox_image, insert, layout_entry, layout_layer_digests, layout_manifest,
};
use kiln_harness::process::run;
use kiln_harness::validators::{skopeo_copy, skopeo_inspect};
use kiln_harness::{require, Registry, RegistryKind};
use serde_json::{json, Value};

const TOOLS: [&str; 4] = ["docker-registry", "skopeo", "umoci", "busybox"];

fn config_for(registry: &Registry, home: &Path) -> RegistryConfig {
    RegistryConfig {
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            ..AuthEnv::default()
        },
        insecure_hosts: vec![registry.host()],
        ..RegistryConfig::default()
    }
}

/// A two-layer base made by umoci: busybox with `/hello.txt`, then a layer
/// that deletes `/hello.txt` (a whiteout) and adds `/etc/new`.
fn base_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("base");
    busybox_image(&layout, "t");
    let image = format!("{}:t", layout.display());
    let bundle = dir.join("bundle");
    run(Command::new("umoci")
        .args(["unpack", "--image", &image])
        .arg(&bundle));
    std::fs::remove_file(bundle.join("rootfs/hello.txt")).unwrap();
    std::fs::create_dir_all(bundle.join("rootfs/etc")).unwrap();
    std::fs::write(bundle.join("rootfs/etc/new"), b"second layer\n").unwrap();
    run(Command::new("umoci")
        .args(["repack", "--image", &image])
        .arg(&bundle));
    layout
}

fn sha256_file(path: &Path) -> String {
    sha256_digest(&std::fs::read(path).unwrap())
}

#[test]
fn a_base_pushed_by_skopeo_is_pulled_verified_and_unpacked() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = base_layout(dir.path());
    let original_layers = layout_layer_digests(&layout, "t");
    assert_eq!(original_layers.len(), 2);
    let registry = Registry::start(RegistryKind::Plain);
    let config = config_for(&registry, dir.path());
    let source = format!("oci:{}:t", layout.display());

    for (tag, format, layer_type) in [
        ("oci", "oci", "application/vnd.oci.image.layer.v1.tar+gzip"),
        (
            "v2s2",
            "v2s2",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
    ] {
        let remote = format!("docker://{}/library/base:{tag}", registry.host());
        skopeo_copy(
            &source,
            &remote,
            &["--dest-tls-verify=false", "--format", format],
        );
        let blobs = dir.path().join(format!("blobs-{tag}"));
        let pulled = pull_image(&config, &remote, &Platform::host(), &blobs).unwrap();

        let inspected = skopeo_inspect(&remote, &["--tls-verify=false"]);
        let config_json = skopeo_inspect(&remote, &["--tls-verify=false", "--config"]);
        let digests: Vec<&str> = pulled.layers.iter().map(|l| l.digest.as_str()).collect();
        assert_eq!(json!(digests), inspected["Layers"], "{tag}");
        assert_eq!(
            digests, original_layers,
            "{tag}: the layers changed on the way"
        );
        let diff_ids: Vec<&str> = pulled.layers.iter().map(|l| l.diff_id.as_str()).collect();
        assert_eq!(json!(diff_ids), config_json["rootfs"]["diff_ids"], "{tag}");
        assert_eq!(json!(pulled.manifest_digest), inspected["Digest"], "{tag}");
        for layer in &pulled.layers {
            assert_eq!(layer.media_type, layer_type);
            assert_eq!(
                layer.oci_media_type(),
                "application/vnd.oci.image.layer.v1.tar+gzip"
            );
            assert_eq!(sha256_file(&layer.path), layer.digest);
            assert_eq!(layer.path, blobs.join("sha256").join(&layer.digest[7..]));
        }
        assert_eq!(sha256_file(&pulled.config_path), pulled.config_digest);

        let root = dir.path().join(format!("root-{tag}"));
        unpack_layers(&pulled.layers, &root).unwrap();
        let busybox = kiln_harness::require::find_program("busybox").unwrap();
        assert_eq!(
            std::fs::read(root.join("bin/busybox")).unwrap(),
            std::fs::read(busybox).unwrap()
        );
        assert_eq!(
            std::fs::read_link(root.join("bin/sh")).unwrap(),
            Path::new("busybox")
        );
        assert!(
            !root.join("hello.txt").exists(),
            "the whiteout was not applied"
        );
        assert_eq!(
            std::fs::read(root.join("etc/new")).unwrap(),
            b"second layer\n"
        );
    }
}

#[test]
fn an_index_resolves_to_the_build_platform() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let host = Platform::host();
    let foreign: Vec<&str> = ["arm64", "amd64", "s390x"]
        .into_iter()
        .filter(|arch| *arch != host.architecture)
        .take(2)
        .collect();
    // The host's entry between two others, so neither the first nor the
    // last entry of the index is the right one.
    let all = [foreign[0], &host.architecture, foreign[1]];
    for arch in all {
        arch_image(&layout, arch);
    }
    add_index(&layout, "multi", &all);
    add_index(&layout, "foreign", &foreign);
    let registry = Registry::start(RegistryKind::Plain);
    let config = config_for(&registry, dir.path());
    for tag in ["multi", "foreign"] {
        skopeo_copy(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("docker://{}/multi:{tag}", registry.host()),
            &["--dest-tls-verify=false", "--all"],
        );
    }
    let blobs = dir.path().join("blobs");
    let pulled = pull_image(
        &config,
        &format!("{}/multi:multi", registry.host()),
        &host,
        &blobs,
    )
    .unwrap();
    let manifest_digest = layout_entry(&layout, &format!("t-{}", host.architecture))["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pulled.manifest_digest, manifest_digest);
    assert!(pulled
        .pinned
        .ends_with(&format!("/multi@{manifest_digest}")));
    let root = dir.path().join("root");
    unpack_layers(&pulled.layers, &root).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("arch")).unwrap(),
        host.architecture
    );

    let err = pull_image(
        &config,
        &format!("{}/multi:foreign", registry.host()),
        &host,
        &blobs,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains(&format!("no {host} variant")), "{err}");
    for arch in foreign {
        assert!(err.contains(&format!("linux/{arch}")), "{err}");
    }
}

/// Adds image `t-<arch>` to `layout`: busybox and a file `/arch` naming
/// `arch`, so each architecture's manifest is a different one.
fn arch_image(layout: &Path, arch: &str) {
    let tag = format!("t-{arch}");
    busybox_image(layout, &tag);
    let marker = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(marker.path(), arch).unwrap();
    insert(layout, &tag, marker.path(), "/arch");
}

/// Tags in `layout` an OCI index named `tag` with one entry per
/// architecture, each pointing at that architecture's image `t-<arch>`.
fn add_index(layout: &Path, tag: &str, architectures: &[&str]) {
    let manifests: Vec<Value> = architectures
        .iter()
        .map(|arch| {
            let entry = layout_entry(layout, &format!("t-{arch}"));
            json!({
                "mediaType": entry["mediaType"],
                "digest": entry["digest"],
                "size": entry["size"],
                "platform": {"os": "linux", "architecture": arch},
            })
        })
        .collect();
    let inner = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    }))
    .unwrap();
    let digest = sha256_digest(&inner);
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &inner).unwrap();
    let index_path = layout.join("index.json");
    let mut index: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest,
        "size": inner.len(),
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }));
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

#[test]
fn a_blob_corrupted_in_the_registry_is_refused_and_not_kept() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_image(&layout, "t");
    let registry = Registry::start(RegistryKind::Plain);
    let remote = format!("docker://{}/corrupt:1", registry.host());
    skopeo_copy(
        &format!("oci:{}:t", layout.display()),
        &remote,
        &["--dest-tls-verify=false"],
    );
    let layer = layout_manifest(&layout, "t")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let hex = &layer[7..];
    let stored = registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();

    let blobs = dir.path().join("blobs");
    let err = pull_image(
        &config_for(&registry, dir.path()),
        &remote,
        &Platform::host(),
        &blobs,
    )
    .unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, &layer);
            assert_ne!(actual, &layer);
        }
        other => panic!("expected a digest mismatch, got: {other}"),
    }
    assert!(err.to_string().contains(&registry.host()), "{err}");
    let left: Vec<String> = std::fs::read_dir(blobs.join("sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !left.iter().any(|name| name == hex),
        "the bad blob was kept"
    );
    assert!(
        !left.iter().any(|name| name.starts_with(".tmp-")),
        "{left:?}"
    );
}

#[test]
fn a_debian_base_pushed_by_skopeo_becomes_the_first_layers_of_a_new_image() {
    if !require(&TOOLS) || !require(&["debootstrap", "chroot", "tar"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("debian");
    if debian_image(&base, "t").is_none() {
        return;
    }
    let registry = Registry::start_logged(RegistryKind::Plain);
    let config = config_for(&registry, dir.path());
    let remote = format!("docker://{}/library/debian:{SUITE}", registry.host());
    skopeo_copy(
        &format!("oci:{}:t", base.display()),
        &remote,
        &["--dest-tls-verify=false", "--format", "v2s2"],
    );

    let pulled = pull_image(
        &config,
        &remote,
        &Platform::host(),
        &dir.path().join("blobs"),
    )
    .unwrap();
    let base_layers = layout_layer_digests(&base, "t");
    let pulled_layers: Vec<String> = pulled.layers.iter().map(|l| l.digest.clone()).collect();
    assert_eq!(pulled_layers, base_layers);

    let root = dir.path().join("rootfs");
    unpack_layers(&pulled.layers, &root).unwrap();
    let version = std::fs::read_to_string(root.join("etc/debian_version")).unwrap();
    assert!(version.starts_with("12."), "{version}");
    // The unpacked base is a working system: its own shell and apt run.
    let said = run(Command::new("chroot").arg(&root).args([
        "/bin/sh",
        "-c",
        "cat /etc/debian_version; apt-get --version | head -n 1",
    ]));
    assert!(
        said.starts_with(&version) && said.contains("apt "),
        "{said}"
    );

    // An image built on the base: its layers first, unchanged, then one more.
    let app = dir.path().join("app");
    std::fs::create_dir_all(app.join("app")).unwrap();
    std::fs::write(app.join("app/hello"), b"built on debian\n").unwrap();
    let app_layer = dir.path().join("app.tar");
    run(Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&app)
        .arg("-cf")
        .arg(&app_layer)
        .arg("app"));
    let result = dir.path().join("result");
    let app_digest = layout_on_base(&result, &pulled, &app_layer);
    let destination = format!("{}/team/app:1", registry.host());
    let mount_from = ["library/debian".to_string()];
    let outcome = push_layout(
        &config,
        &PushRequest {
            layout: &result,
            layout_tag: Some("t"),
            destination: &destination,
            extra_tags: &[],
            mount_from: &mount_from,
        },
    )
    .unwrap();
    assert_eq!(
        outcome.mounted, base_layers,
        "the base layers were not mounted"
    );
    assert_eq!(outcome.uploaded.len(), 2, "{outcome:?}");
    let inspected = skopeo_inspect(&format!("docker://{destination}"), &["--tls-verify=false"]);
    let mut expected = base_layers.clone();
    expected.push(app_digest);
    assert_eq!(inspected["Layers"], json!(expected));
    let copy = dir.path().join("copy");
    skopeo_copy(
        &format!("docker://{destination}"),
        &format!("oci:{}:c", copy.display()),
        &["--src-tls-verify=false"],
    );
    let bundle = kiln_harness::validators::Bundle::unpack(&copy, "c");
    assert_eq!(
        std::fs::read(bundle.rootfs().join("app/hello")).unwrap(),
        b"built on debian\n"
    );
    assert!(bundle.rootfs().join("etc/debian_version").exists());
}

/// Writes an OCI layout at `layout`, tag `t`, whose layers are the pulled
/// base's blobs as they are (media types in their OCI spelling) followed by
/// the uncompressed tar `top`, as a build on that base does. Returns the
/// digest of `top`.
fn layout_on_base(layout: &Path, base: &PulledImage, top: &Path) -> String {
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256_digest(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut layers: Vec<Value> = Vec::new();
    for layer in &base.layers {
        std::fs::copy(&layer.path, blobs.join(&layer.digest[7..])).unwrap();
        layers.push(
            json!({"mediaType": layer.oci_media_type(), "digest": layer.digest, "size": layer.size}),
        );
    }
    let (top_digest, top_size) = put(&std::fs::read(top).unwrap());
    layers.push(json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": top_digest,
        "size": top_size,
    }));
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(&base.config_path).unwrap()).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!(top_digest));
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config_size,
        },
        "layers": layers,
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    std::fs::write(
        layout.join("index.json"),
        json!({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": {"org.opencontainers.image.ref.name": "t"},
            }],
        })
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    top_digest
}

/// An OCI layout `t` of one gzip layer holding `zeros` bytes of zeros in
/// one file (a few KB compressed), its config padded with `padding` bytes.
/// Returns the layer's and the config's digests.
fn one_layer_layout(layout: &Path, zeros: u64, padding: usize) -> (String, String) {
    use std::io::Write;
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha256_digest(bytes);
        std::fs::write(blobs.join(&digest[7..]), bytes).unwrap();
        (digest, bytes.len())
    };
    let mut header = tar::Header::new_gnu();
    header.set_path("zeros").unwrap();
    header.set_size(zeros);
    header.set_mode(0o644);
    header.set_cksum();
    let mut tar = header.as_bytes().to_vec();
    tar.resize(tar.len() + zeros as usize + 1024, 0);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let (layer, layer_size) = put(&gz.finish().unwrap());
    let config = json!({
        "architecture": Platform::host().architecture,
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256_digest(&tar)]},
        "padding": "x".repeat(padding),
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": layer, "size": layer_size}],
    }))
    .unwrap();
    let (manifest_digest, manifest_size) = put(&manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest, "size": manifest_size,
        "annotations": {"org.opencontainers.image.ref.name": "t"},
    }]});
    std::fs::write(layout.join("index.json"), index.to_string()).unwrap();
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    (layer, config_digest)
}

/// Pushes `layout`'s `t` to a fresh registry as `name:1` with kiln's own
/// push (skopeo refuses configs over 4 MiB itself).
fn push_one(layout: &Path, name: &str, home: &Path) -> (Registry, String) {
    let registry = Registry::start(RegistryKind::Plain);
    let remote = format!("{}/{name}:1", registry.host());
    let request = PushRequest {
        layout,
        layout_tag: Some("t"),
        destination: &remote,
        extra_tags: &[],
        mount_from: &[],
    };
    push_layout(&config_for(&registry, home), &request).unwrap();
    (registry, remote)
}

#[test]
fn a_gzip_bomb_layer_is_refused_past_the_unpack_limit() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (layer, _) = one_layer_layout(&layout, 32 << 20, 0);
    let (registry, remote) = push_one(&layout, "bomb", dir.path());
    let config = config_for(&registry, dir.path());
    let pulled = pull_image(&config, &remote, &Platform::host(), &dir.path().join("b")).unwrap();
    assert!(pulled.layers[0].size < 1 << 20);

    let root = dir.path().join("root");
    let err = unpack_layers_within(&pulled.layers, &root, 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&layer) && err.contains("KILN_MAX_UNPACKED_BYTES"),
        "{err}"
    );
    // What was written before the limit is at most the limit.
    let written = std::fs::metadata(root.join("zeros")).map_or(0, |m| m.len());
    assert!(written <= 1 << 20, "{written}");
    // A limit the layer fits in unpacks it.
    let sizes = unpack_layers_within(&pulled.layers, &dir.path().join("ok"), 64 << 20).unwrap();
    assert_eq!(sizes, [(32 << 20) + 1024 + 512]);
}

#[test]
fn a_config_of_megabytes_is_refused_naming_registry_repository_and_digest() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (_, config_digest) = one_layer_layout(&layout, 1024, 5 << 20);
    let (registry, remote) = push_one(&layout, "fat", dir.path());
    let blobs = dir.path().join("b");
    let config = config_for(&registry, dir.path());
    let err = pull_image(&config, &remote, &Platform::host(), &blobs)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&registry.host()) && err.contains("fat") && err.contains(&config_digest),
        "{err}"
    );
    assert!(!blobs.join("sha256").join(&config_digest[7..]).exists());
}
