//! The registry build cache (`--cache-repo`) with real builds of the Node
//! fixture app, a real `docker-registry` and the fixture's binary cache
//! served over HTTP by nginx, what each fetched counted from their access
//! logs. Empty kiln cache folders stand for fresh machines; every store
//! path goes into kiln's own store, never the host's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use kiln_harness::apps::FixtureApp;
use kiln_harness::nixpkgs::HttpCache;
use kiln_harness::summary::phases_cached;
use kiln_harness::{require, FixtureNixpkgs, Registry, RegistryKind, Request};
use serde_json::Value;

/// A registry, the fixture's HTTP binary cache, and a folder for the
/// machines' caches and apps.
struct Farm {
    fixture: &'static FixtureNixpkgs,
    registry: Registry,
    http: HttpCache,
    work: tempfile::TempDir,
}

impl Farm {
    fn start() -> Option<Farm> {
        let fixture = FixtureNixpkgs::get()?;
        if !require(&["docker-registry", "nginx", "curl"]) {
            return None;
        }
        Some(Farm {
            fixture,
            registry: Registry::start_logged(RegistryKind::Plain),
            http: fixture.serve_http_logged(),
            work: tempfile::tempdir().unwrap(),
        })
    }

    fn cache_repo(&self) -> String {
        format!("{}/kiln-cache", self.registry.host())
    }

    /// `kiln --json build APP --push REGISTRY/app:TAG --cache-repo ...`
    /// with the kiln cache folder of `machine`.
    fn build_command(&self, machine: &str, app: &Path, tag: &str) -> Command {
        let mut command = self.build_without_cache_repo(machine, app, tag);
        command.args(["--cache-repo", &self.cache_repo()]);
        command
    }

    /// [`Farm::build_command`] without the cache repo.
    fn build_without_cache_repo(&self, machine: &str, app: &Path, tag: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kiln"));
        command
            .arg("--cache-dir")
            .arg(self.work.path().join(machine))
            .env_remove("RUST_LOG")
            .env_remove("SOURCE_DATE_EPOCH")
            .env_remove("KILN_CACHE_REPO")
            .args(["--json", "build"])
            .arg(app)
            .arg("--nixpkgs")
            .arg(self.fixture.nixpkgs_dir())
            .args(["--substituter", &self.http.url()])
            .args(["--trusted-public-key", self.fixture.public_key()])
            .arg("--ignore-host-store")
            .args(["--insecure-registry", &self.registry.host()])
            .args(["--push", &format!("{}/app:{tag}", self.registry.host())]);
        command
    }

    fn build(&self, machine: &str, app: &Path, tag: &str) -> Value {
        summary(&self.build_command(machine, app, tag).output().unwrap())
    }

    /// The Node fixture app with a build phase, copied to `name`, with
    /// `server.js` ending in `edit`.
    fn app(&self, name: &str, edit: &str) -> PathBuf {
        let dir = self.work.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["package.json", "package-lock.json", "server.js"] {
            std::fs::copy(FixtureApp::Node.dir().join(file), dir.join(file)).unwrap();
        }
        // Not an npm script: npm leaves a timestamped log in the phase.
        std::fs::write(
            dir.join("nixpacks.toml"),
            "[phases.build]\ncmds = [\"mkdir -p dist && cp server.js dist/\"]\n",
        )
        .unwrap();
        let server = dir.join("server.js");
        let mut text = std::fs::read_to_string(&server).unwrap();
        text.push_str(edit);
        std::fs::write(&server, text).unwrap();
        dir
    }

    fn nar_requests(&self) -> usize {
        self.http
            .requests()
            .iter()
            .filter(|r| r.path.contains("/nar/"))
            .count()
    }
}

fn summary(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "kiln failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kiln printed JSON")
}

fn packed(summary: &Value) -> Vec<String> {
    let mut packed: Vec<String> = summary["packed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    packed.sort();
    packed
}

fn since(requests: Vec<Request>, start: usize) -> Vec<Request> {
    requests.into_iter().skip(start).collect()
}

#[test]
fn a_fresh_machine_builds_from_the_cache_repo_alone() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let app = farm.app("app", "");
    let a = farm.build("machine-a", &app, "a");
    assert!(farm.nar_requests() > 0, "machine A fetched its packages");
    assert_eq!(
        phases_cached(&a),
        [("install".into(), false), ("build".into(), false)]
    );

    let nars_before = farm.nar_requests();
    let registry_before = farm.registry.requests().len();
    let b = farm.build("machine-b", &app, "b");
    let nars = farm.nar_requests() - nars_before;
    let registry = since(farm.registry.requests(), registry_before);
    assert_eq!(nars, 0, "machine B downloaded NARs:\n{}", farm.http.log());
    assert_eq!(
        phases_cached(&b),
        [("install".into(), true), ("build".into(), true)]
    );
    assert_eq!(b["digest"], a["digest"], "the same image on both machines");
    let uploads: Vec<&Request> = registry.iter().filter(|r| r.is_blob_upload()).collect();
    assert!(uploads.is_empty(), "machine B uploaded blobs: {uploads:?}");
    assert_eq!(
        packed(&b),
        ["app files"],
        "machine B compressed only the app"
    );
    let blob_downloads = registry
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/sha256:"))
        .count();
    eprintln!(
        "machine B: {nars} NAR requests, {} registry requests, {blob_downloads} blob downloads",
        registry.len()
    );

    let edited = farm.app("edited", "// edited\n");
    let c = farm.build("machine-b", &edited, "c");
    assert_eq!(
        phases_cached(&c),
        [("install".into(), true), ("build".into(), false)]
    );
    assert_eq!(packed(&c), ["app files", "phase build"]);
    assert_ne!(c["digest"], a["digest"]);

    // The same edit on a machine without the cache repo: the same image.
    let without = summary(
        &farm
            .build_without_cache_repo("machine-c", &edited, "alone")
            .output()
            .unwrap(),
    );
    assert_eq!(
        without["digest"], c["digest"],
        "the cache repo changes no byte:\n{:#}\n{:#}",
        without["layers"], c["layers"]
    );
}

#[test]
fn two_builds_at_once_share_a_cache_repo() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let app = farm.app("app", "");
    let start = |machine: &str| {
        farm.build_command(machine, &app, machine)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (start("one"), start("two"));
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    let (first, second) = (summary(&first), summary(&second));
    assert_eq!(first["digest"], second["digest"]);
    let third = farm.build("three", &app, "three");
    assert_eq!(third["digest"], first["digest"]);
    assert!(phases_cached(&third).iter().all(|(_, cached)| *cached));
}

/// The tags of the cache repo starting with `prefix`.
fn tags(farm: &Farm, prefix: &str) -> Vec<String> {
    let output = farm
        .registry
        .curl()
        .arg(format!("{}/v2/kiln-cache/tags/list", farm.registry.url()))
        .output()
        .unwrap();
    let list: Value = serde_json::from_slice(&output.stdout).unwrap();
    list["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .filter(|t| t.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// Puts `record` under `tag` of `repo` as kiln writes records, with
/// `layers` and the creation time `created`, through the registry API.
fn put_record(
    repo: &kiln::registry::ArtifactRepo,
    work: &Path,
    tag: &str,
    record: &Value,
    layers: Vec<kiln::registry::LayoutBlob>,
    created: SystemTime,
) {
    let bytes = serde_json::to_vec(record).unwrap();
    let named = work.join(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
    std::fs::write(&named, &bytes).unwrap();
    repo.put(
        tag,
        "application/vnd.kiln.cache.record.v1+json",
        &named,
        layers,
        &[],
        created,
    )
    .unwrap();
}

fn registry_config(registry: &Registry) -> kiln::registry::RegistryConfig {
    kiln::registry::RegistryConfig {
        insecure_hosts: vec![registry.host()],
        ..kiln::registry::RegistryConfig::default()
    }
}

#[test]
fn a_tampered_record_or_a_lost_blob_runs_the_phase() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let app = farm.app("app", "");
    let a = farm.build("machine-a", &app, "a");
    let repo = kiln::registry::ArtifactRepo::connect(
        &registry_config(&farm.registry),
        &farm.cache_repo(),
        true,
    )
    .unwrap();
    let phase_tags = tags(&farm, "phase-");
    assert_eq!(phase_tags.len(), 2, "{phase_tags:?}");

    // Every phase record now names another diff than its blob.
    for tag in &phase_tags {
        let artifact = repo.get(tag).unwrap().unwrap();
        let mut record: Value = serde_json::from_slice(&artifact.config).unwrap();
        record["layer"]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
        let blob = &artifact.layers[0];
        let path = repo
            .fetch_blob(blob, &farm.work.path().join("blobs"))
            .unwrap();
        let layer = kiln::registry::LayoutBlob {
            digest: blob.digest.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            path,
        };
        put_record(
            &repo,
            farm.work.path(),
            tag,
            &record,
            vec![layer],
            SystemTime::now(),
        );
    }
    let output = farm.build_command("machine-b", &app, "b").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let b = summary(&output);
    assert_eq!(
        phases_cached(&b),
        [("install".into(), false), ("build".into(), false)]
    );
    assert!(
        stderr.contains("(it does not match its blob); running the phase"),
        "{stderr}"
    );
    assert_eq!(b["digest"], a["digest"]);

    // Machine B wrote good records again; now lose the install diff's blob
    // from the registry's storage.
    let artifact = repo.get(&phase_tags[0]).unwrap().unwrap();
    let hex = artifact.layers[0]
        .digest
        .trim_start_matches("sha256:")
        .to_string();
    let data = farm
        .registry
        .storage()
        .join("docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(&hex);
    std::fs::remove_dir_all(&data).unwrap();
    let output = farm.build_command("machine-c", &app, "c").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let c = summary(&output);
    assert!(
        phases_cached(&c).iter().any(|(_, cached)| !cached),
        "a phase ran: {c}"
    );
    assert!(stderr.contains("running the phase"), "{stderr}");
    assert_eq!(c["digest"], a["digest"]);
}

#[test]
fn kiln_pack_takes_its_layers_from_the_cache_repo() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let pack = |machine: &str, tag: &str| {
        let host = farm.registry.host();
        let output = Command::new(env!("CARGO_BIN_EXE_kiln"))
            .arg("--cache-dir")
            .arg(farm.work.path().join(machine))
            .env_remove("RUST_LOG")
            .env_remove("KILN_CACHE_REPO")
            .args(["--json", "pack", "bash"])
            .args(farm.fixture.kiln_source_args())
            .arg("--ignore-host-store")
            .args(["--insecure-registry", &host])
            .args(["--push", &format!("{host}/tools:{tag}")])
            .args(["--cache-repo", &farm.cache_repo()])
            .output()
            .unwrap();
        summary(&output)
    };
    let a = pack("machine-a", "a");
    let before = farm.registry.requests().len();
    let b = pack("machine-b", "b");
    assert_eq!(b["digest"], a["digest"]);
    let uploads: Vec<Request> = since(farm.registry.requests(), before)
        .into_iter()
        .filter(|r| r.is_blob_upload())
        .collect();
    assert!(uploads.is_empty(), "machine B uploaded blobs: {uploads:?}");
}

#[test]
fn a_warm_build_writes_nothing_the_cache_repo_holds() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let app = farm.app("app", "");
    let a = farm.build("machine-a", &app, "a");
    let records = tags(&farm, "").len();
    assert!(records > 2, "machine A wrote its records");

    let before = farm.registry.requests().len();
    let warm = farm.build("machine-a", &app, "warm");
    let registry = since(farm.registry.requests(), before);
    assert_eq!(warm["digest"], a["digest"]);
    assert!(phases_cached(&warm).iter().all(|(_, cached)| *cached));
    let writes: Vec<&Request> = registry
        .iter()
        .filter(|r| {
            r.path.starts_with("/v2/kiln-cache/") && r.method != "GET" && r.method != "HEAD"
        })
        .collect();
    assert!(
        writes.is_empty(),
        "the warm build wrote records: {writes:?}"
    );
    let uploads: Vec<&Request> = registry.iter().filter(|r| r.is_blob_upload()).collect();
    assert!(
        uploads.is_empty(),
        "the warm build uploaded blobs: {uploads:?}"
    );
    let checks = registry
        .iter()
        .filter(|r| r.method == "HEAD" && r.path.starts_with("/v2/kiln-cache/manifests/"))
        .count();
    // At most one HEAD for each record the build had locally (the package
    // view of a warm build is not written at all).
    assert!(
        checks > 0 && checks <= records,
        "{checks} record checks for {records} records:\n{registry:#?}"
    );
    assert_eq!(tags(&farm, "").len(), records);
}

/// `kiln --json cache prune --cache-repo REGISTRY/kiln-cache ARGS`.
fn prune(registry: &Registry, work: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(work.join("prune-cache"))
        .env_remove("RUST_LOG")
        .env_remove("KILN_CACHE_REPO")
        .args(["--json", "cache", "prune"])
        .args(["--cache-repo", &format!("{}/kiln-cache", registry.host())])
        .args(["--insecure-registry", &registry.host()])
        .args(args)
        .output()
        .unwrap()
}

/// `(action, tag)` of every record a prune summary lists, sorted.
fn prune_actions(summary: &Value) -> Vec<(String, String)> {
    let mut actions: Vec<(String, String)> = summary["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["action"].as_str().unwrap().into(),
                r["tag"].as_str().unwrap().into(),
            )
        })
        .collect();
    actions.sort();
    actions
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn prune_removes_old_records_and_never_an_image() {
    let Some(farm) = Farm::start() else {
        return;
    };
    if !require(&["skopeo"]) {
        return;
    }
    let app = farm.app("app", "");
    let a = farm.build("machine-a", &app, "a");
    let host = farm.registry.host();
    let repo = kiln::registry::ArtifactRepo::connect(
        &registry_config(&farm.registry),
        &farm.cache_repo(),
        true,
    )
    .unwrap();

    // The image, pushed into the cache repo too: its phase layers are the
    // very blobs of the phase records.
    let skopeo = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false", "--dest-tls-verify=false"])
        .arg(format!("docker://{host}/app:a"))
        .arg(format!("docker://{host}/kiln-cache:image"))
        .output()
        .unwrap();
    assert!(
        skopeo.status.success(),
        "{}",
        String::from_utf8_lossy(&skopeo.stderr)
    );
    let image: Value = serde_json::from_slice(
        &farm
            .registry
            .curl()
            .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
            .arg(format!(
                "{}/v2/kiln-cache/manifests/image",
                farm.registry.url()
            ))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let image_layers: Vec<&str> = image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();

    // The build phase's record is made 40 days old; the install phase's
    // is rewritten as an older kiln wrote it, with no time.
    let phase_tags = tags(&farm, "phase-");
    let old = phase_tags
        .iter()
        .find(|tag| {
            let record: Value =
                serde_json::from_slice(&repo.get(tag).unwrap().unwrap().config).unwrap();
            record["phase"] == "build"
        })
        .unwrap()
        .clone();
    let timeless = phase_tags.iter().find(|t| **t != old).unwrap().clone();
    let artifact = repo.get(&old).unwrap().unwrap();
    let blob = &artifact.layers[0];
    assert!(
        image_layers.contains(&blob.digest.as_str()),
        "the image shares the record's blob"
    );
    let path = repo
        .fetch_blob(blob, &farm.work.path().join("blobs"))
        .unwrap();
    let layer = kiln::registry::LayoutBlob {
        digest: blob.digest.clone(),
        size: blob.size,
        media_type: blob.media_type.clone(),
        path,
    };
    let record: Value = serde_json::from_slice(&artifact.config).unwrap();
    put_record(
        &repo,
        farm.work.path(),
        &old,
        &record,
        vec![layer],
        SystemTime::now() - 40 * DAY,
    );
    let manifest_url = format!("{}/v2/kiln-cache/manifests/{timeless}", farm.registry.url());
    let mut manifest: Value = serde_json::from_slice(
        &farm
            .registry
            .curl()
            .args(["-H", "Accept: application/vnd.oci.image.manifest.v1+json"])
            .arg(&manifest_url)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    manifest
        .as_object_mut()
        .unwrap()
        .remove("annotations")
        .unwrap();
    let put = farm
        .registry
        .curl()
        .args(["--fail", "-X", "PUT"])
        .args([
            "-H",
            "Content-Type: application/vnd.oci.image.manifest.v1+json",
        ])
        .arg("--data-binary")
        .arg(serde_json::to_string(&manifest).unwrap())
        .arg(&manifest_url)
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let all_tags = tags(&farm, "");

    // A dry run lists and deletes nothing.
    let before = farm.registry.requests().len();
    let dry = summary(&prune(
        &farm.registry,
        farm.work.path(),
        &["--older-than", "30", "--dry-run"],
    ));
    let removable: Vec<String> = prune_actions(&dry)
        .into_iter()
        .filter(|(action, _)| action == "remove")
        .map(|(_, tag)| tag)
        .collect();
    let mut expected = vec![old.clone(), timeless.clone()];
    expected.sort();
    assert_eq!(removable, expected, "{dry:#}");
    assert_eq!(
        dry["records"].as_array().unwrap().len(),
        all_tags.len() - 1,
        "every tag but the image is a record"
    );
    assert_eq!(dry["otherManifests"], 1);
    let deletes = since(farm.registry.requests(), before)
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deletes, 0, "the dry run deleted");
    assert_eq!(tags(&farm, ""), all_tags);

    // The prune removes those two, keeps the young records and the image.
    let pruned = summary(&prune(
        &farm.registry,
        farm.work.path(),
        &["--older-than", "30"],
    ));
    assert_eq!(pruned["dryRun"], false);
    let left = tags(&farm, "");
    assert_eq!(
        left,
        all_tags
            .iter()
            .filter(|t| !expected.contains(t))
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(left.contains(&"image".to_string()));
    let pulled = Command::new("skopeo")
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{host}/kiln-cache:image"))
        .arg(format!(
            "oci:{}:image",
            farm.work.path().join("pulled").display()
        ))
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "the image no longer pulls: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );

    // A new machine rebuilds the same image, running both phases again.
    let output = farm.build_command("machine-b", &app, "b").output().unwrap();
    let b = summary(&output);
    assert_eq!(b["digest"], a["digest"]);
    assert_eq!(
        phases_cached(&b),
        [("install".into(), false), ("build".into(), false)]
    );

    // Human output: a line a record and a summary naming the collector.
    let text = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("--cache-dir")
        .arg(farm.work.path().join("prune-cache"))
        .env_remove("KILN_CACHE_REPO")
        .args(["cache", "prune", "--older-than", "0", "--dry-run"])
        .args([
            "--cache-repo",
            &farm.cache_repo(),
            "--insecure-registry",
            &host,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.starts_with("phase ") && l.ends_with("would remove")),
        "{text}"
    );
    assert!(text.contains("garbage collector"), "{text}");
}

#[test]
fn prune_on_a_registry_refusing_deletes_says_so_and_removes_nothing() {
    if !require(&["docker-registry", "curl"]) {
        return;
    }
    let registry = Registry::start_refusing_deletes();
    let work = tempfile::tempdir().unwrap();
    let repo = kiln::registry::ArtifactRepo::connect(
        &registry_config(&registry),
        &format!("{}/kiln-cache", registry.host()),
        true,
    )
    .unwrap();
    // docker-registry 2.8 answers every tag in one page whatever `n` asks,
    // so following `Link` pages is covered by the unit tests of
    // kiln::registry's raw calls, not here.
    let count = 20;
    for i in 0..count {
        let key = format!("{i:064x}");
        let record = serde_json::json!({"kind": "packages", "key": key});
        put_record(
            &repo,
            work.path(),
            &format!("packages-{key}"),
            &record,
            vec![],
            SystemTime::now() - 60 * DAY,
        );
    }
    let dry = summary(&prune(
        &registry,
        work.path(),
        &["--older-than", "30", "--dry-run"],
    ));
    let actions = prune_actions(&dry);
    assert_eq!(actions.len(), count);
    assert!(actions.iter().all(|(action, _)| action == "remove"));

    let output = prune(&registry, work.path(), &["--older-than", "30"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the prune succeeded: {stderr}");
    assert!(stderr.contains("refuses to delete"), "{stderr}");
    assert!(stderr.contains("delete: enabled: true"), "{stderr}");
    assert!(stderr.contains("no record was removed"), "{stderr}");
    let list: Value = serde_json::from_slice(
        &registry
            .curl()
            .arg(format!("{}/v2/kiln-cache/tags/list", registry.url()))
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        list["tags"].as_array().unwrap().len(),
        count,
        "nothing was removed"
    );
}
