//! `kiln::registry::push_layout` against a real `docker-registry`: plain,
//! basic auth, TLS; read back by skopeo; no second upload; mounts; auth from
//! docker config and a credential helper; kill -9 in the middle of a push;
//! what the progress hook is told.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kiln::registry::{
    push_layout, push_layout_with_progress, AuthEnv, BlobFate, Credentials, LayoutBlob,
    LayoutImage, PushProgress, PushRequest, RegistryConfig, RegistryError,
};
use kiln_harness::images::{busybox_image, insert, layout_layer_digests, random_file};
use kiln_harness::validators::{layers_copied_by_skopeo, skopeo_inspect};
use kiln_harness::{require, Registry, RegistryKind};
use serde_json::json;

const TOOLS: [&str; 6] = [
    "docker-registry",
    "skopeo",
    "umoci",
    "busybox",
    "htpasswd",
    "openssl",
];

/// A kiln registry configuration for `registry` that reads no auth file of
/// the machine: `home` is an empty test folder unless the test fills it.
fn config_for(registry: &Registry, home: &Path) -> RegistryConfig {
    RegistryConfig {
        credentials: None,
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            path: std::env::var_os("PATH"),
            ..AuthEnv::default()
        },
        insecure_hosts: if registry.ca_cert().is_some() {
            Vec::new()
        } else {
            vec![registry.host()]
        },
        ca_files: registry.ca_cert().into_iter().collect(),
        jobs: 4,
    }
}

/// A two-layer image: busybox, then 1 MiB of random data.
fn small_image(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    busybox_image(&layout, "t");
    let data = dir.join("data.bin");
    random_file(&data, 1 << 20, 7);
    insert(&layout, "t", &data, "/data.bin");
    layout
}

fn request<'a>(layout: &'a Path, destination: &'a str) -> PushRequest<'a> {
    PushRequest {
        layout,
        layout_tag: Some("t"),
        destination,
        extra_tags: &[],
        mount_from: &[],
    }
}

fn blob_uploads(registry: &Registry) -> usize {
    registry
        .requests()
        .iter()
        .filter(|r| r.is_blob_upload())
        .count()
}

/// A configuration for the plain-HTTP registry at `host` that reads auth
/// files only under `home`.
fn plain_http_config(host: String, home: &Path) -> RegistryConfig {
    RegistryConfig {
        insecure_hosts: vec![host],
        auth_env: AuthEnv {
            home: Some(home.to_path_buf()),
            ..AuthEnv::default()
        },
        ..RegistryConfig::default()
    }
}

fn layout_manifest_digest(layout: &Path) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pushed_image_reads_back_with_skopeo_and_a_second_push_uploads_nothing() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let registry = Registry::start_logged(RegistryKind::Plain);
    let config = config_for(&registry, dir.path());
    let destination = format!("{}/kiln/app:v1", registry.host());
    let extra = ["v2".to_string()];
    let push = PushRequest {
        extra_tags: &extra,
        ..request(&layout, &destination)
    };

    let outcome = push_layout(&config, &push).unwrap();
    let kiln_layers = layout_layer_digests(&layout, "t");
    assert_eq!(
        outcome.to_string(),
        format!(
            "{}/kiln/app@{}",
            registry.host(),
            layout_manifest_digest(&layout)
        )
    );
    assert_eq!(outcome.uploaded.len(), 3, "{outcome:?}");
    assert_eq!(outcome.tags, ["v1", "v2"]);

    let remote = format!("docker://{}/kiln/app:v1", registry.host());
    let inspected = skopeo_inspect(&remote, &["--tls-verify=false"]);
    assert_eq!(inspected["Layers"], json!(kiln_layers));
    assert_eq!(inspected["Digest"], json!(outcome.digest));
    let copied = layers_copied_by_skopeo(
        &format!("docker://{}/kiln/app:v2", registry.host()),
        dir.path(),
    );
    assert_eq!(copied, kiln_layers);

    let uploads = blob_uploads(&registry);
    assert!(uploads >= 3, "{:?}", registry.requests());
    let again = push_layout(&config, &push).unwrap();
    assert_eq!(
        blob_uploads(&registry),
        uploads,
        "the second push uploaded a blob"
    );
    assert!(again.uploaded.is_empty());
    assert_eq!(again.present.len(), 3);
    assert_eq!(again.digest, outcome.digest);
}

/// What a push told its progress hook.
#[derive(Default)]
struct Recorded {
    blobs: Vec<usize>,
    /// Last `sent` per blob.
    sent: BTreeMap<String, u64>,
    fates: BTreeMap<String, BlobFate>,
}

#[derive(Default)]
struct Recorder(Mutex<Recorded>);

impl PushProgress for Recorder {
    fn started(&self, blobs: usize) {
        self.0.lock().unwrap().blobs.push(blobs);
    }

    fn sending(&self, blob: &LayoutBlob, sent: u64) {
        self.0
            .lock()
            .unwrap()
            .sent
            .insert(blob.digest.clone(), sent);
    }

    fn finished(&self, blob: &LayoutBlob, fate: BlobFate) {
        let previous = self
            .0
            .lock()
            .unwrap()
            .fates
            .insert(blob.digest.clone(), fate);
        assert!(previous.is_none(), "{} finished twice", blob.digest);
    }
}

fn push_recorded(config: &RegistryConfig, request: &PushRequest<'_>) -> Recorded {
    let recorder = Arc::new(Recorder::default());
    push_layout_with_progress(config, request, recorder.clone()).unwrap();
    let recorded = std::mem::take(&mut *recorder.0.lock().unwrap());
    recorded
}

/// A logged registry holding the busybox image as `base:1`, its config,
/// that image's layout and a small image's layout to push, all in `dir`.
fn base_pushed_and_image(dir: &Path) -> (Registry, RegistryConfig, PathBuf, PathBuf) {
    let base = dir.join("base");
    busybox_image(&base, "t");
    let layout = small_image(dir);
    let registry = Registry::start_logged(RegistryKind::Plain);
    let config = config_for(&registry, dir);
    push_layout(
        &config,
        &request(&base, &format!("{}/base:1", registry.host())),
    )
    .unwrap();
    (registry, config, base, layout)
}

#[test]
fn the_progress_hook_sees_every_blob_and_every_byte_uploaded() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (registry, config, base, layout) = base_pushed_and_image(dir.path());

    let destination = format!("{}/app:1", registry.host());
    let mount_from = ["base".to_string()];
    let push = PushRequest {
        mount_from: &mount_from,
        ..request(&layout, &destination)
    };
    let first = push_recorded(&config, &push);
    assert_eq!(first.blobs, [3]);
    let image = LayoutImage::open(&layout, Some("t")).unwrap();
    let busybox_layer = &layout_layer_digests(&base, "t")[0];
    let blobs: Vec<&LayoutBlob> = image.layers.iter().chain([&image.config]).collect();
    let expected: BTreeMap<String, BlobFate> = blobs
        .iter()
        .map(|blob| match &blob.digest == busybox_layer {
            true => (blob.digest.clone(), BlobFate::Mounted),
            false => (blob.digest.clone(), BlobFate::Uploaded),
        })
        .collect();
    assert_eq!(first.fates, expected);
    // Every uploaded blob was reported whole, and nothing else was sent.
    let uploaded: BTreeMap<String, u64> = blobs
        .iter()
        .filter(|blob| &blob.digest != busybox_layer)
        .map(|blob| (blob.digest.clone(), blob.size))
        .collect();
    assert_eq!(first.sent, uploaded);

    let again = push_recorded(&config, &push);
    assert!(again.sent.is_empty(), "{:?}", again.sent);
    assert_eq!(again.fates.len(), 3);
    assert!(again.fates.values().all(|fate| *fate == BlobFate::Present));
}

#[test]
fn blobs_of_another_repository_are_mounted_not_uploaded() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (registry, config, base, layout) = base_pushed_and_image(dir.path());

    let destination = format!("{}/app:1", registry.host());
    let mount_from = ["base".to_string()];
    let before = blob_uploads(&registry);
    let outcome = push_layout(
        &config,
        &PushRequest {
            mount_from: &mount_from,
            ..request(&layout, &destination)
        },
    )
    .unwrap();
    let busybox_layer = layout_layer_digests(&base, "t")[0].clone();
    assert_eq!(outcome.mounted, std::slice::from_ref(&busybox_layer));
    assert!(registry.requests().iter().any(|r| r.method == "POST"
        && r.path.contains("mount=")
        && r.path.contains(&busybox_layer["sha256:".len()..])
        && r.status == 201));
    // The random-data layer and the config went over the wire; the busybox
    // layer did not.
    assert_eq!(outcome.uploaded.len(), 2);
    assert!(blob_uploads(&registry) > before);
    let inspected = skopeo_inspect(&format!("docker://{destination}"), &["--tls-verify=false"]);
    assert_eq!(
        inspected["Layers"],
        json!(layout_layer_digests(&layout, "t"))
    );
}

fn docker_config(home: &Path, json: serde_json::Value) -> PathBuf {
    let path = home.join(".docker/config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

#[test]
fn basic_auth_from_docker_config_and_a_one_line_error_for_a_wrong_password() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let registry = Registry::start(RegistryKind::BasicAuth);
    let home = dir.path().join("home");
    let config = config_for(&registry, &home);
    let destination = format!("{}/private/app:1", registry.host());

    let anonymous = push_layout(&config, &request(&layout, &destination)).unwrap_err();
    assert!(
        matches!(anonymous, RegistryError::Unauthorized { .. }),
        "{anonymous}"
    );
    assert!(anonymous.to_string().contains("anonymous"), "{anonymous}");

    let file = docker_config(
        &home,
        json!({"auths": {registry.host(): {"auth": basic(Registry::USERNAME, Registry::PASSWORD)}}}),
    );
    let outcome = push_layout(&config, &request(&layout, &destination)).unwrap();
    let creds = format!("{}:{}", Registry::USERNAME, Registry::PASSWORD);
    let inspected = skopeo_inspect(
        &format!("docker://{destination}"),
        &["--tls-verify=false", "--creds", &creds],
    );
    assert_eq!(inspected["Digest"], json!(outcome.digest));

    docker_config(
        &home,
        json!({"auths": {registry.host(): {"auth": basic(Registry::USERNAME, "wrong")}}}),
    );
    let err = push_layout(&config, &request(&layout, &destination))
        .unwrap_err()
        .to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains(&registry.host()), "{err}");
    assert!(err.contains(&file.display().to_string()), "{err}");
    assert!(!err.contains("wrong"), "the password leaked: {err}");

    let explicit = RegistryConfig {
        credentials: Some(Credentials {
            username: Registry::USERNAME.into(),
            password: "also-wrong".into(),
        }),
        ..config.clone()
    };
    let err = push_layout(&explicit, &request(&layout, &destination))
        .unwrap_err()
        .to_string();
    assert!(err.contains("--registry-username"), "{err}");
    assert!(!err.contains("also-wrong"), "the password leaked: {err}");
}

#[test]
fn credentials_from_a_docker_credential_helper() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let registry = Registry::start(RegistryKind::BasicAuth);
    let home = dir.path().join("home");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = dir.path().join("asked");
    let helper = bin.join("docker-credential-kiln-test");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread server\necho \"$server\" > {asked}\n\
             [ \"$server\" = \"{host}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{password}\"}}' \"$server\"\n",
            asked = asked.display(),
            host = registry.host(),
            user = Registry::USERNAME,
            password = Registry::PASSWORD,
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    docker_config(
        &home,
        json!({"credHelpers": {registry.host(): "kiln-test"}}),
    );
    let mut config = config_for(&registry, &home);
    let mut path = std::ffi::OsString::from(&bin);
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    config.auth_env.path = Some(path);

    let destination = format!("{}/helped/app:1", registry.host());
    let outcome = push_layout(&config, &request(&layout, &destination)).unwrap();
    assert_eq!(
        std::fs::read_to_string(&asked).unwrap().trim(),
        registry.host()
    );
    assert_eq!(outcome.uploaded.len(), 3);
}

#[test]
fn tls_is_verified_trusted_through_a_ca_file_and_refused_without_it() {
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = small_image(dir.path());
    let registry = Registry::start(RegistryKind::Tls);
    let destination = format!("{}/secure/app:1", registry.host());
    let trusted = config_for(&registry, dir.path());

    let untrusted = RegistryConfig {
        ca_files: Vec::new(),
        ..trusted.clone()
    };
    let err = push_layout(&untrusted, &request(&layout, &destination)).unwrap_err();
    assert!(
        matches!(err, RegistryError::UntrustedCertificate { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--registry-ca-file"), "{err}");

    let outcome = push_layout(&trusted, &request(&layout, &destination)).unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(registry.ca_cert().unwrap(), certs.join("ca.crt")).unwrap();
    let inspected = skopeo_inspect(
        &format!("docker://{destination}"),
        &["--cert-dir", certs.to_str().unwrap()],
    );
    assert_eq!(inspected["Digest"], json!(outcome.digest));
    assert_eq!(
        inspected["Layers"],
        json!(layout_layer_digests(&layout, "t"))
    );

    let insecure = RegistryConfig {
        insecure_hosts: vec![registry.host()],
        ..untrusted
    };
    let again = push_layout(&insecure, &request(&layout, &destination)).unwrap();
    assert_eq!(again.present.len(), 3);
}

/// Set in the child process of the kill -9 test: `LAYOUT|DESTINATION|HOME`.
const CHILD_PUSH: &str = "KILN_TEST_CHILD_PUSH";

#[test]
fn a_push_killed_midway_completes_when_run_again() {
    if let Ok(spec) = std::env::var(CHILD_PUSH) {
        // The child: push one blob at a time until the parent kills it.
        let mut parts = spec.split('|');
        let (layout, destination, home) = (
            PathBuf::from(parts.next().unwrap()),
            parts.next().unwrap().to_string(),
            PathBuf::from(parts.next().unwrap()),
        );
        let host = destination.split('/').next().unwrap().to_string();
        let config = RegistryConfig {
            jobs: 1,
            ..plain_http_config(host, &home)
        };
        push_layout(&config, &request(&layout, &destination)).unwrap();
        return;
    }
    if !require(&TOOLS) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_image(&layout, "t");
    // Layers above the single-PUT limit, so the chunked path is used and a
    // kill lands in the middle of a blob.
    for seed in 1..=4 {
        let data = dir.path().join(format!("big{seed}.bin"));
        random_file(&data, 72 << 20, seed);
        insert(&layout, "t", &data, &format!("/big{seed}.bin"));
        std::fs::remove_file(&data).unwrap();
    }
    let registry = Registry::start_logged(RegistryKind::Plain);
    let destination = format!("{}/killed/app:1", registry.host());

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_push_killed_midway_completes_when_run_again",
            "--nocapture",
        ])
        .env(
            CHILD_PUSH,
            format!(
                "{}|{destination}|{}",
                layout.display(),
                dir.path().display()
            ),
        )
        .spawn()
        .unwrap();
    // Kill once the first big blob is in and the next one is under way.
    let start = Instant::now();
    loop {
        let requests = registry.requests();
        let is_finished = |r: &&kiln_harness::Request| {
            r.method == "PUT" && r.path.contains("/blobs/uploads/") && r.status == 201
        };
        let finished = requests.iter().filter(is_finished).count();
        let chunk_after_last = requests
            .iter()
            .rposition(|r| is_finished(&r))
            .is_some_and(|last| requests[last + 1..].iter().any(|r| r.method == "PATCH"));
        if finished >= 2 && chunk_after_last {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{:?}",
            registry.requests()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    let killed = skopeo_inspect_fails(&format!("docker://{destination}"));
    assert!(killed, "the manifest exists although the push was killed");

    let config = config_for(&registry, dir.path());
    let outcome = push_layout(&config, &request(&layout, &destination)).unwrap();
    assert!(
        !outcome.present.is_empty(),
        "nothing survived the kill: {outcome:?}"
    );
    assert!(!outcome.uploaded.is_empty(), "{outcome:?}");
    assert!(
        registry.requests().iter().any(|r| r.method == "PATCH"),
        "big blobs went up in chunks"
    );
    assert_eq!(
        layers_copied_by_skopeo(&format!("docker://{destination}"), dir.path()),
        layout_layer_digests(&layout, "t")
    );
}

fn skopeo_inspect_fails(reference: &str) -> bool {
    !Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", reference])
        .output()
        .unwrap()
        .status
        .success()
}

#[test]
fn a_registry_that_hangs_up_is_retried_then_named_in_the_error() {
    if !require(&["umoci", "busybox"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    busybox_image(&layout, "t");
    // A server that accepts every connection and closes it unanswered.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let config = plain_http_config(host.clone(), dir.path());
    let destination = format!("{host}/nowhere/app:1");
    let err = push_layout(&config, &request(&layout, &destination)).unwrap_err();
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&host) && text.contains("nowhere/app"),
        "{text}"
    );
    assert!(!text.contains('\n'), "{text}");
    // The HTTPS probe, then five attempts at the first call: retried, not
    // given up at once.
    let seen = connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(seen >= 6, "only {seen} connections");
}
