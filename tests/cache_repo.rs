//! The registry build cache (`--cache-repo`) with real builds of the Node
//! fixture app, a real `docker-registry` and the fixture's binary cache
//! served over HTTP by nginx, what each fetched counted from their access
//! logs. Empty kiln cache folders stand for fresh machines; every store
//! path goes into kiln's own store, never the host's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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
        "kiln failed:\n{}",
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

#[test]
fn a_tampered_record_or_a_lost_blob_runs_the_phase() {
    let Some(farm) = Farm::start() else {
        return;
    };
    let app = farm.app("app", "");
    let a = farm.build("machine-a", &app, "a");
    let config = kiln::registry::RegistryConfig {
        insecure_hosts: vec![farm.registry.host()],
        ..kiln::registry::RegistryConfig::default()
    };
    let repo = kiln::registry::ArtifactRepo::connect(&config, &farm.cache_repo(), true).unwrap();
    let phase_tags = tags(&farm, "phase-");
    assert_eq!(phase_tags.len(), 2, "{phase_tags:?}");

    // Every phase record now names another diff than its blob.
    for tag in &phase_tags {
        let artifact = repo.get(tag).unwrap().unwrap();
        let mut record: Value = serde_json::from_slice(&artifact.config).unwrap();
        record["layer"]["digest"] = format!("sha256:{}", "0".repeat(64)).into();
        let config_file = farm.work.path().join(format!("{tag}.json"));
        let bytes = serde_json::to_vec(&record).unwrap();
        std::fs::write(&config_file, &bytes).unwrap();
        let named = farm
            .work
            .path()
            .join(hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes)));
        std::fs::rename(&config_file, &named).unwrap();
        let blob = &artifact.layers[0];
        let source = farm.work.path().join("blobs");
        let path = repo.fetch_blob(blob, &source).unwrap();
        let layer = kiln::registry::LayoutBlob {
            digest: blob.digest.clone(),
            size: blob.size,
            media_type: blob.media_type.clone(),
            path,
        };
        repo.put(
            tag,
            "application/vnd.kiln.cache.record.v1+json",
            &named,
            vec![layer],
            &[],
            std::time::SystemTime::now(),
        )
        .unwrap();
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
