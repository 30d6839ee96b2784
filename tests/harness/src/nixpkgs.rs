//! The fixture nixpkgs of TESTING.md: a small package set built with real
//! Nix from this machine's programs, exported as signed binary caches.
//!
//! Its definition is `tests/fixtures/nixpkgs/` (`default.nix`, the builder
//! helpers, and `attributes`, the attribute names it exposes). The built
//! result lives under `target/kiln-fixtures/nixpkgs-<hash of the definition>`,
//! so a second test run reuses it and a changed definition rebuilds it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tempfile::TempDir;

use crate::archive_server::ArchiveServer;
use crate::hash::hex;
use crate::process::{free_port, run, ChildGuard};
use crate::registry::Request;
use crate::require::{require, require_root};

/// Bumped when the way the fixture is built changes, so old builds are not
/// reused.
const RECIPE_VERSION: &str = "1";

/// Name in the fixture caches' signing key.
const KEY_NAME: &str = "kiln-fixture-1";

/// The whole environment the fixture evaluator ([`FixtureNixpkgs::evaluator`])
/// needs when run with [`EVALUATOR_ARGS`] and nothing of the host visible.
/// Nix 2.8 aborts at startup ("cannot determine user's home directory")
/// without `HOME` when the user has no passwd entry, as in kiln's sandbox;
/// any path will do, even an absent one, and it writes nothing there for an
/// evaluation (`/tmp` is the sandbox's private tmpfs). It needs no
/// `NIX_CONF_DIR` (it reads `/etc/nix/nix.conf` only if present), no
/// `NIX_STATE_DIR`, no `XDG_*`, no `PATH`.
pub const EVALUATOR_ENV: [(&str, &str); 1] = [("HOME", "/tmp")];

/// The options that make the fixture evaluator touch no store: with the
/// default local store Nix wants a writable `/nix/var/nix` and the user's
/// name ("cannot figure out user name"); `dummy://` computes store paths
/// (of `./file` references and `.drv`s) without writing them.
pub const EVALUATOR_ARGS: [&str; 3] = ["--readonly-mode", "--store", "dummy://"];

/// Programs building or loading the fixture needs.
const NIX_PROGRAMS: [&str; 5] = [
    "nix",
    "nix-build",
    "nix-instantiate",
    "nix-store",
    "patchelf",
];

/// The built fixture nixpkgs.
#[derive(Debug)]
pub struct FixtureNixpkgs {
    definition: PathBuf,
    root: PathBuf,
    public_key: String,
    attributes: BTreeMap<String, String>,
}

/// Whether [`FixtureNixpkgs::build_or_reuse`] had to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Built now.
    Built,
    /// Reused from an earlier run.
    Reused,
}

impl FixtureNixpkgs {
    /// The fixture, built on first use in this process. `None` when the test
    /// should be skipped (never under CI: see [`crate::require`]).
    pub fn get() -> Option<&'static FixtureNixpkgs> {
        static FIXTURE: OnceLock<FixtureNixpkgs> = OnceLock::new();
        if !require(&NIX_PROGRAMS) || !require_root() {
            return None;
        }
        Some(FIXTURE.get_or_init(|| Self::build_or_reuse().0))
    }

    /// The fixture, when it and the programs `tools` are there; `None` when
    /// the test should be skipped, as for [`FixtureNixpkgs::get`].
    pub fn with_tools(tools: &[&str]) -> Option<&'static FixtureNixpkgs> {
        let fixture = Self::get()?;
        require(tools).then_some(fixture)
    }

    /// Builds the fixture unless a build of the same definition exists, and
    /// makes sure its store paths are valid in this machine's `/nix/store`.
    /// Safe to call from several processes at once.
    pub fn build_or_reuse() -> (FixtureNixpkgs, Provenance) {
        let definition = definition_dir();
        let key = definition_key(&definition);
        let parent = target_dir().join("kiln-fixtures");
        fs::create_dir_all(&parent).expect("create target/kiln-fixtures");
        let lock = File::create(parent.join("nixpkgs.lock")).expect("create fixture lock");
        lock.lock().expect("lock the fixture nixpkgs");

        let root = parent.join(format!("nixpkgs-{key}"));
        let provenance = if root.join("attributes.json").exists() {
            Provenance::Reused
        } else {
            build(&definition, &root);
            remove_other_builds(&parent, &root);
            Provenance::Built
        };
        let fixture = FixtureNixpkgs::load(definition, root);
        if provenance == Provenance::Reused {
            fixture.restore_local_store();
        }
        (fixture, provenance)
    }

    fn load(definition: PathBuf, root: PathBuf) -> FixtureNixpkgs {
        let attributes = fs::read(root.join("attributes.json")).expect("read attributes.json");
        let attributes = serde_json::from_slice(&attributes).expect("parse attributes.json");
        let public_key = fs::read_to_string(root.join("public-key")).expect("read public key");
        FixtureNixpkgs {
            definition,
            root,
            public_key: public_key.trim().to_string(),
            attributes,
        }
    }

    /// Copies the fixture's paths back into `/nix/store` when something
    /// removed them since the build (a garbage collection, a new machine).
    fn restore_local_store(&self) {
        let valid = nix_command("nix-store")
            .arg("--check-validity")
            .args(self.attributes.values())
            .output()
            .expect("run nix-store --check-validity")
            .status
            .success();
        if !valid {
            run(nix_command("nix")
                .args(["copy", "--from", &self.xz_cache_url()])
                .args(["--option", "trusted-public-keys", &self.public_key])
                .args(self.attributes.values()));
        }
    }

    /// Checks with `nix-store --verify-path` that no fixture store path was
    /// changed since Nix registered it (a program writing into its own store
    /// path would poison every cache exported from it). Returns the changed
    /// paths.
    pub fn modified_store_paths(&self) -> Vec<String> {
        let mut paths: Vec<&String> = self.attributes.values().collect();
        paths.sort();
        paths.dedup();
        paths
            .into_iter()
            .filter(|path| {
                !nix_command("nix-store")
                    .args(["--verify-path", path])
                    .output()
                    .expect("run nix-store --verify-path")
                    .status
                    .success()
            })
            .cloned()
            .collect()
    }

    /// The nixpkgs folder to evaluate (`import <dir> { overlays = ...; }`).
    pub fn nixpkgs_dir(&self) -> &Path {
        &self.definition
    }

    /// The signed xz binary cache folder.
    pub fn xz_cache(&self) -> PathBuf {
        self.root.join("cache-xz")
    }

    /// `file://` URL of the signed xz binary cache.
    pub fn xz_cache_url(&self) -> String {
        format!("file://{}", self.xz_cache().display())
    }

    /// `file://` URL of the signed zstd binary cache.
    pub fn zstd_cache_url(&self) -> String {
        format!("file://{}", self.root.join("cache-zstd").display())
    }

    /// The caches' trusted public key, `name:base64`.
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// `--nixpkgs`, `--substituter` (the xz cache) and `--trusted-public-key`
    /// for kiln: where it resolves and fetches the fixture's packages.
    pub fn kiln_source_args(&self) -> Vec<String> {
        vec![
            "--nixpkgs".into(),
            self.nixpkgs_dir().display().to_string(),
            "--substituter".into(),
            self.xz_cache_url(),
            "--trusted-public-key".into(),
            self.public_key().to_string(),
        ]
    }

    /// Every exposed attribute name and its store path.
    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    /// The store path of `attribute` (e.g. `nodejs_20`, `stdenv.cc.cc.lib`).
    pub fn store_path(&self, attribute: &str) -> &str {
        self.attributes
            .get(attribute)
            .unwrap_or_else(|| panic!("the fixture nixpkgs has no attribute {attribute}"))
    }

    /// The store path of the fixture's Nix evaluator, attribute `nix`:
    /// Debian's Nix 2.8 with every library it loads in its closure, so it
    /// runs with only that closure at `/nix/store` and no host files.
    /// `bin/nix-instantiate` (a link to `bin/nix`, which picks the command
    /// by the name it is called by) evaluates; run it with exactly
    /// [`EVALUATOR_ENV`] and [`EVALUATOR_ARGS`], e.g.
    /// `nix-instantiate --eval --strict --json --readonly-mode --store
    /// dummy:// -E '(import /nixpkgs {}).bash.outPath'` with
    /// [`Self::nixpkgs_dir`] visible at `/nixpkgs`. Restricted evaluation
    /// works too (`--option restrict-eval true -I nixpkgs=/nixpkgs` and
    /// `import <nixpkgs>`); `tests/evaluator.rs` runs both in kiln's sandbox.
    pub fn evaluator(&self) -> &str {
        self.store_path("nix")
    }

    /// Serves [`Self::nixpkgs_dir`] as `/<commit>.tar.gz` archives (any
    /// commit name) on loopback until the server drops.
    pub fn serve_archive(&self) -> ArchiveServer {
        ArchiveServer::serve_nixpkgs(self.nixpkgs_dir())
    }

    /// Serves the xz cache over HTTP on loopback until the guard drops.
    pub fn serve_http(&self) -> HttpCache {
        HttpCache::serve(&self.xz_cache())
    }

    /// [`Self::serve_http`] with nginx's access log on, so a test can count
    /// what kiln fetched ([`HttpCache::requests`]).
    pub fn serve_http_logged(&self) -> HttpCache {
        HttpCache::serve_with(&self.xz_cache(), true)
    }
}

/// A Nix command with the single-user, offline settings of TESTING.md.
pub fn nix_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command.env(
        "NIX_CONFIG",
        "sandbox = false\nbuild-users-group =\nsubstituters =\nexperimental-features = nix-command\n",
    );
    command
}

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace folder exists")
}

pub(crate) fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

fn definition_dir() -> PathBuf {
    workspace_dir()
        .join("tests/fixtures/nixpkgs")
        .canonicalize()
        .expect("tests/fixtures/nixpkgs exists")
}

/// Hash of the recipe version and every file of the definition.
fn definition_key(definition: &Path) -> String {
    let mut names: Vec<_> = fs::read_dir(definition)
        .expect("read the fixture nixpkgs definition")
        .map(|e| e.expect("read definition entry").file_name())
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    hasher.update(RECIPE_VERSION);
    for name in names {
        hasher.update(name.as_encoded_bytes());
        hasher.update([0]);
        hasher.update(fs::read(definition.join(&name)).expect("read definition file"));
        hasher.update([0]);
    }
    hex(&hasher.finalize()[..10])
}

/// The attribute names listed in the definition's `attributes` file.
fn attribute_names(definition: &Path) -> Vec<String> {
    fs::read_to_string(definition.join("attributes"))
        .expect("read tests/fixtures/nixpkgs/attributes")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// `p."a"."b"` for the attribute path `a.b`.
fn nix_attribute(name: &str) -> String {
    let quoted: Vec<String> = name.split('.').map(|s| format!("\"{s}\"")).collect();
    format!("p.{}", quoted.join("."))
}

/// Builds into a temporary folder beside `root` and renames it into place, so
/// `root` is complete or absent.
fn build(definition: &Path, root: &Path) {
    let tmp = root.with_extension("tmp");
    if tmp.exists() {
        fs::remove_dir_all(&tmp).expect("remove a stale fixture build");
    }
    fs::create_dir_all(&tmp).expect("create fixture build folder");
    let secret = tmp.join("secret-key");
    run(nix_command("nix-store")
        .arg("--generate-binary-cache-key")
        .arg(KEY_NAME)
        .arg(&secret)
        .arg(tmp.join("public-key")));

    let names = attribute_names(definition);
    let import = format!("let p = import {} {{}}; in", definition.display());
    let fields: Vec<String> = names
        .iter()
        .map(|n| format!("\"{n}\" = {}.outPath;", nix_attribute(n)))
        .collect();
    let json = run(nix_command("nix-instantiate").args([
        "--eval",
        "--strict",
        "--json",
        "-E",
        &format!("{import} {{ {} }}", fields.join(" ")),
    ]));
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&json).expect("nix-instantiate printed an attribute map");

    let drvs: Vec<String> = names.iter().map(|n| nix_attribute(n)).collect();
    run(nix_command("nix-build").args([
        "--no-out-link",
        "-E",
        &format!("{import} [ {} ]", drvs.join(" ")),
    ]));

    let mut paths: Vec<&String> = attributes.values().collect();
    paths.sort();
    paths.dedup();
    // xz at level 0: the toolchains make over a gigabyte of NARs, which xz's
    // default level packs at a few MB/s a core (one fixture build had
    // written 79 MB of them after 8 minutes; at level 0 the whole fixture
    // takes about 90 s); the tests need xz NARs, not the smallest ones.
    for (folder, options) in [
        (
            "cache-xz",
            "compression=xz&parallel-compression=true&compression-level=0",
        ),
        ("cache-zstd", "compression=zstd"),
    ] {
        let url = format!(
            "file://{}?{options}&secret-key={}",
            tmp.join(folder).display(),
            secret.display()
        );
        run(nix_command("nix").args(["copy", "--to", &url]).args(&paths));
    }
    fs::write(
        tmp.join("attributes.json"),
        serde_json::to_vec_pretty(&attributes).expect("serialize attributes"),
    )
    .expect("write attributes.json");
    fs::rename(&tmp, root).expect("move the fixture build into place");
}

/// Removes builds of earlier definitions, which no test can use any more.
fn remove_other_builds(parent: &Path, keep: &Path) {
    for entry in fs::read_dir(parent).expect("read target/kiln-fixtures") {
        let path = entry.expect("read fixture entry").path();
        let is_build = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("nixpkgs-"));
        if is_build && path.is_dir() && path != keep {
            fs::remove_dir_all(&path)
                .unwrap_or_else(|e| panic!("remove old fixture build {}: {e}", path.display()));
        }
    }
}

/// A folder served over HTTP on loopback by nginx, stopped on drop.
pub struct HttpCache {
    process: ChildGuard,
    _dir: TempDir,
    port: u16,
}

impl HttpCache {
    /// Serves `folder` (read-only) and returns once it answers.
    pub fn serve(folder: &Path) -> HttpCache {
        HttpCache::serve_with(folder, false)
    }

    /// [`HttpCache::serve`], with the access log in nginx's log when
    /// `access_log` is set.
    fn serve_with(folder: &Path, access_log: bool) -> HttpCache {
        let dir = tempfile::Builder::new()
            .prefix("kiln-http-cache-")
            .tempdir()
            .expect("http cache temp dir");
        let port = free_port();
        let temp = dir.path().display();
        let config = format!(
            "daemon off;\nmaster_process off;\npid {temp}/nginx.pid;\nerror_log stderr warn;\n\
             events {{}}\n\
             http {{\n  access_log {access};\n  client_body_temp_path {temp}/body;\n  \
             proxy_temp_path {temp}/proxy;\n  fastcgi_temp_path {temp}/fastcgi;\n  \
             uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n  \
             default_type application/octet-stream;\n  \
             types {{ text/x-nix-narinfo narinfo; text/plain nix-cache-info; }}\n  \
             server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            root = folder.display(),
            access = if access_log { "/dev/stderr" } else { "off" },
        );
        let config_path = dir.path().join("nginx.conf");
        fs::write(&config_path, config).expect("write nginx config");
        let mut process = ChildGuard::spawn(
            "nginx",
            Command::new("nginx")
                .arg("-e")
                .arg("stderr")
                .arg("-p")
                .arg(dir.path())
                .arg("-c")
                .arg(&config_path),
            &dir.path().join("nginx.log"),
        );
        let url = format!("http://127.0.0.1:{port}/nix-cache-info");
        process.wait_ready(Duration::from_secs(20), || {
            Command::new("curl")
                .args(["--silent", "--fail", "--output", "/dev/null", &url])
                .status()
                .is_ok_and(|s| s.success())
        });
        HttpCache {
            process,
            _dir: dir,
            port,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// nginx's log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Requests served so far, oldest first (needs
    /// [`FixtureNixpkgs::serve_http_logged`]).
    pub fn requests(&self) -> Vec<Request> {
        self.log().lines().filter_map(Request::parse).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_attributes_are_quoted_per_segment() {
        assert_eq!(
            nix_attribute("stdenv.cc.cc.lib"),
            r#"p."stdenv"."cc"."cc"."lib""#
        );
        assert_eq!(nix_attribute("npm-8_x"), r#"p."npm-8_x""#);
    }

    #[test]
    fn definition_key_is_stable_and_lists_every_attribute() {
        let dir = definition_dir();
        // A copy at another path, every file with another mtime, is the
        // same definition: a checkout elsewhere reuses the built fixture.
        let copy = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let from = entry.unwrap().path();
            let to = copy.path().join(from.file_name().unwrap());
            fs::copy(&from, &to).unwrap();
            File::options()
                .write(true)
                .open(&to)
                .unwrap()
                .set_modified(std::time::UNIX_EPOCH + Duration::from_secs(1))
                .unwrap();
        }
        assert_eq!(definition_key(copy.path()), definition_key(&dir));
        // One byte changed is another definition, built afresh.
        let recipe = copy.path().join("default.nix");
        let mut bytes = fs::read(&recipe).unwrap();
        bytes[0] ^= 1;
        fs::write(&recipe, bytes).unwrap();
        assert_ne!(definition_key(copy.path()), definition_key(&dir));

        let names = attribute_names(&dir);
        for needed in [
            "glibc",
            "stdenv.cc.cc.lib",
            "nodejs_18",
            "python3",
            "nginx",
            "zlib",
            "nix",
        ] {
            assert!(names.iter().any(|n| n == needed), "{needed} missing");
        }
    }
}
