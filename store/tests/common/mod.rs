//! Shared by the store's integration tests: hostile copies of the fixture
//! caches, re-signed with the fixture's own key where a test needs a valid
//! signature, and tiny HTTP servers that misbehave on purpose.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use ed25519_dalek::{Signer, SigningKey};
use kiln_harness::nixpkgs::nix_command;
use kiln_harness::FixtureNixpkgs;
use kiln_store::{hash_part, parse_store_path, FetchOptions, NarInfo, Store, StorePath};
use nix_derivation::StoreDir;

/// Fetch options with short timeouts so failure tests end quickly.
pub fn quick_options() -> FetchOptions {
    FetchOptions {
        connect_timeout: Duration::from_secs(2),
        read_timeout: Duration::from_secs(1),
        retries: 2,
        backoff: Duration::from_millis(20),
        jobs: 4,
        verify_signatures: true,
    }
}

/// A fresh kiln store that never uses the host's `/nix/store`, where the
/// fixture paths are also valid.
pub fn empty_store() -> (tempfile::TempDir, Store) {
    let cache = tempfile::tempdir().unwrap();
    let store = Store::open(cache.path()).unwrap().with_host_store(None);
    (cache, store)
}

/// The closure of `attribute` as real Nix computes it.
pub fn nix_closure(fixture: &FixtureNixpkgs, attribute: &str) -> BTreeSet<String> {
    let output = nix_command("nix-store")
        .args(["-qR", fixture.store_path(attribute)])
        .output()
        .unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Real Nix's NAR hash of the tree at `dir`, `sha256:<base32>`.
pub fn nix_hash_path(dir: &Path) -> String {
    let output = nix_command("nix")
        .args(["hash", "path", "--type", "sha256", "--base32"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    format!(
        "sha256:{}",
        String::from_utf8(output.stdout).unwrap().trim()
    )
}

/// Everything in the store folder besides its bookkeeping folders.
pub fn store_entries(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| ![".valid", ".locks", ".host-verified"].contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

/// Asserts the store holds nothing of `path` and no temp folder at all.
pub fn assert_no_trace(store: &Store, path: &StorePath) {
    let entries = store_entries(store);
    let hash = hash_part(path);
    assert!(
        entries
            .iter()
            .all(|n| !n.contains(&hash) && !n.starts_with(".tmp")),
        "store keeps a trace: {entries:?}"
    );
    assert!(!store.is_valid(path));
    assert!(!store.dir().join(".valid").join(&hash).exists());
}

/// A copy of a fixture cache that tests may break: narinfo files copied,
/// NARs linked (they are large and only read).
pub struct CacheCopy {
    pub dir: tempfile::TempDir,
    secret: SigningKey,
    key_name: String,
}

impl CacheCopy {
    /// Copies the xz cache.
    pub fn of_xz(fixture: &FixtureNixpkgs) -> CacheCopy {
        let source = fixture.xz_cache();
        let dir = tempfile::tempdir().unwrap();
        for entry in fs::read_dir(&source).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name();
            if entry.file_type().unwrap().is_dir() {
                fs::create_dir(dir.path().join(&name)).unwrap();
                for nar in fs::read_dir(entry.path()).unwrap() {
                    let nar = nar.unwrap();
                    std::os::unix::fs::symlink(
                        nar.path(),
                        dir.path().join(&name).join(nar.file_name()),
                    )
                    .unwrap();
                }
            } else {
                fs::copy(entry.path(), dir.path().join(&name)).unwrap();
            }
        }
        let secret_text = fs::read_to_string(source.parent().unwrap().join("secret-key")).unwrap();
        let (key_name, encoded) = secret_text.trim().split_once(':').unwrap();
        let bytes: [u8; 64] = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap()
            .try_into()
            .unwrap();
        CacheCopy {
            dir,
            secret: SigningKey::from_keypair_bytes(&bytes).unwrap(),
            key_name: key_name.to_string(),
        }
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    pub fn narinfo_path(&self, path: &StorePath) -> PathBuf {
        self.dir.path().join(format!("{}.narinfo", hash_part(path)))
    }

    pub fn narinfo_text(&self, path: &StorePath) -> String {
        fs::read_to_string(self.narinfo_path(path)).unwrap()
    }

    pub fn narinfo(&self, path: &StorePath) -> NarInfo {
        NarInfo::parse_in(&StoreDir::default(), self.narinfo_text(path).as_bytes()).unwrap()
    }

    /// Rewrites the narinfo of `path` with `edit`, leaving its signature.
    pub fn edit_narinfo(&self, path: &StorePath, edit: impl FnOnce(String) -> String) {
        let text = edit(self.narinfo_text(path));
        fs::write(self.narinfo_path(path), text).unwrap();
    }

    /// Rewrites the narinfo of `path` with `edit` and signs the result with
    /// the fixture's key, replacing the old signature.
    pub fn edit_and_resign(&self, path: &StorePath, edit: impl FnOnce(String) -> String) {
        let edited = edit(self.narinfo_text(path));
        let unsigned: String = edited
            .lines()
            .filter(|l| !l.starts_with("Sig:"))
            .map(|l| format!("{l}\n"))
            .collect();
        let info = NarInfo::parse_in(&StoreDir::default(), unsigned.as_bytes()).unwrap();
        let fingerprint = info.fingerprint(&StoreDir::default());
        let signature = self.secret.sign(fingerprint.as_bytes());
        let encoded = base64::engine::general_purpose::STANDARD.encode(signature.to_bytes());
        fs::write(
            self.narinfo_path(path),
            format!("{unsigned}Sig: {}:{encoded}\n", self.key_name),
        )
        .unwrap();
    }

    /// Replaces the NAR file of `path` (a link into the fixture) by `bytes`.
    pub fn replace_nar(&self, path: &StorePath, bytes: &[u8]) {
        let url = self.narinfo(path).url().to_string();
        let file = self.dir.path().join(url);
        fs::remove_file(&file).unwrap();
        fs::write(&file, bytes).unwrap();
    }

    /// The bytes of the NAR file of `path`.
    pub fn nar_bytes(&self, path: &StorePath) -> Vec<u8> {
        let url = self.narinfo(path).url().to_string();
        fs::read(self.dir.path().join(url)).unwrap()
    }
}

/// Parses a fixture attribute's store path.
pub fn fixture_path(fixture: &FixtureNixpkgs, attribute: &str) -> StorePath {
    parse_store_path(fixture.store_path(attribute)).unwrap()
}

/// Builds NARs by hand: hostile archives cannot come from a real tool.
pub struct NarWriter(pub Vec<u8>);

impl NarWriter {
    pub fn new() -> Self {
        let mut w = NarWriter(Vec::new());
        w.token(b"nix-archive-1");
        w
    }
    pub fn token(&mut self, bytes: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        self.0.extend_from_slice(bytes);
        self.0
            .extend(std::iter::repeat_n(0, (8 - bytes.len() % 8) % 8));
        self
    }
    pub fn tokens(&mut self, tokens: &[&str]) -> &mut Self {
        for t in tokens {
            self.token(t.as_bytes());
        }
        self
    }
}

/// An HTTP server on loopback that serves files of `root`, answering 500
/// to the first `failures` requests of each file. Stopped on drop.
pub struct FlakyServer {
    pub port: u16,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FlakyServer {
    pub fn serve(root: PathBuf, failures: usize) -> FlakyServer {
        FlakyServer::serve_with_auth(root, failures, None)
    }

    /// Like [`FlakyServer::serve`], answering 401 to requests without the
    /// `Authorization` header value `auth`.
    pub fn serve_with_auth(root: PathBuf, failures: usize, auth: Option<String>) -> FlakyServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, done) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = std::collections::HashMap::<String, usize>::new();
            while !done.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                let Some((target, authorization)) = read_request(&stream) else {
                    continue;
                };
                if auth.is_some() && authorization != auth {
                    respond(stream, "401 Unauthorized", &[]);
                    continue;
                }
                let attempts = seen.entry(target.clone()).or_default();
                *attempts += 1;
                if *attempts <= failures {
                    respond(stream, "500 Internal Server Error", &[]);
                    continue;
                }
                match fs::read(root.join(target.trim_start_matches('/'))) {
                    Ok(body) => respond(stream, "200 OK", &body),
                    Err(_) => respond(stream, "404 Not Found", &[]),
                }
            }
        });
        FlakyServer {
            port,
            requests,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FlakyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A server that accepts connections and never answers. Stopped on drop.
pub struct SilentServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl SilentServer {
    pub fn serve() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let done = stop.clone();
        std::thread::spawn(move || {
            let mut open = Vec::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok((stream, _)) = listener.accept() {
                    open.push(stream);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        SilentServer { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The request's target and `Authorization` header.
fn read_request(stream: &TcpStream) -> Option<(String, Option<String>)> {
    let mut reader = BufReader::new(stream);
    let mut first = String::new();
    reader.read_line(&mut first).ok()?;
    let target = first.split_whitespace().nth(1)?.to_string();
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    Some((target, authorization))
}

fn respond(mut stream: TcpStream, status: &str, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let mut rest = Vec::new();
    let _ = stream.take(0).read_to_end(&mut rest);
}

/// Runs a command and returns its stdout, panicking with stderr on failure.
pub fn output_of(command: &mut Command) -> String {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}
