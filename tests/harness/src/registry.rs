//! A real OCI registry (`docker-registry serve`, distribution 2.8) on a free
//! loopback port with its own temporary storage.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::process::{free_port, run, ChildGuard};

/// Which registry to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryKind {
    /// Plain HTTP, no auth.
    Plain,
    /// Plain HTTP with htpasswd basic auth ([`Registry::USERNAME`]/[`Registry::PASSWORD`]).
    BasicAuth,
    /// HTTPS with a certificate for 127.0.0.1 issued by a throwaway test CA
    /// ([`Registry::ca_cert`]).
    Tls,
}

/// A running registry, stopped and its storage removed on drop.
pub struct Registry {
    // Declared before `dir` so the process stops before its storage goes.
    process: ChildGuard,
    dir: TempDir,
    kind: RegistryKind,
    port: u16,
}

impl Registry {
    /// User name of the [`RegistryKind::BasicAuth`] registry.
    pub const USERNAME: &'static str = "kiln";
    /// Password of the [`RegistryKind::BasicAuth`] registry.
    pub const PASSWORD: &'static str = "kiln-test-password";

    /// Starts a registry and returns once `GET /v2/` answers 200.
    pub fn start(kind: RegistryKind) -> Registry {
        Self::start_with(kind, false, true)
    }

    /// Like [`Registry::start`], with the registry's access log on, so
    /// [`Registry::requests`] can count what clients asked for.
    pub fn start_logged(kind: RegistryKind) -> Registry {
        Self::start_with(kind, true, true)
    }

    /// A logged plain registry that refuses to delete manifests, as
    /// distribution does unless its config enables deletes.
    pub fn start_refusing_deletes() -> Registry {
        Self::start_with(RegistryKind::Plain, true, false)
    }

    fn start_with(kind: RegistryKind, access_log: bool, deletes: bool) -> Registry {
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .expect("registry temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: {no_access_log}\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: {deletes}\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n",
            root = dir.path().join("data").display(),
            no_access_log = !access_log,
        );
        match kind {
            RegistryKind::Plain => {}
            RegistryKind::BasicAuth => {
                let htpasswd = dir.path().join("htpasswd");
                let line =
                    run(Command::new("htpasswd").args(["-nbB", Self::USERNAME, Self::PASSWORD]));
                std::fs::write(&htpasswd, line.trim_end()).expect("write htpasswd");
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            RegistryKind::Tls => {
                let (cert, key) = test_ca_cert(dir.path());
                config.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n",
                    cert.display(),
                    key.display()
                ));
            }
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let process = ChildGuard::spawn(
            "docker-registry",
            Command::new("docker-registry")
                .arg("serve")
                .arg(&config_path),
            &dir.path().join("registry.log"),
        );
        let mut registry = Registry {
            process,
            dir,
            kind,
            port,
        };
        let probe = registry.curl_status("/v2/");
        registry
            .process
            .wait_ready(Duration::from_secs(30), || probe() == Some(200));
        registry
    }

    /// `127.0.0.1:<port>`, the registry part of an image reference.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Base URL, `http://` or `https://`.
    pub fn url(&self) -> String {
        let scheme = if self.kind == RegistryKind::Tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.host())
    }

    /// User name and password when the registry asks for them.
    pub fn credentials(&self) -> Option<(&'static str, &'static str)> {
        (self.kind == RegistryKind::BasicAuth).then_some((Self::USERNAME, Self::PASSWORD))
    }

    /// The CA certificate a client must trust ([`RegistryKind::Tls`]).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        (self.kind == RegistryKind::Tls).then(|| self.dir.path().join("ca.pem"))
    }

    /// A `curl` command set up to talk to this registry: silent, failing on
    /// no status, with the credentials and certificate it needs.
    pub fn curl(&self) -> Command {
        let mut curl = Command::new("curl");
        curl.args(["--silent", "--show-error"]);
        if let Some((user, password)) = self.credentials() {
            curl.arg("--user").arg(format!("{user}:{password}"));
        }
        if let Some(cert) = self.ca_cert() {
            curl.arg("--cacert").arg(cert);
        }
        curl
    }

    /// A closure that answers the HTTP status of `GET <path>`, or None when
    /// nothing answered.
    fn curl_status(&self, path: &str) -> impl Fn() -> Option<u16> {
        let mut template = self.curl();
        template.args(["--output", "/dev/null", "--write-out", "%{http_code}"]);
        template.arg(format!("{}{path}", self.url()));
        let program = template.get_program().to_owned();
        let args: Vec<_> = template.get_args().map(|a| a.to_owned()).collect();
        move || {
            let output = Command::new(&program).args(&args).output().ok()?;
            String::from_utf8_lossy(&output.stdout).trim().parse().ok()
        }
    }

    /// The folder where the registry keeps repositories and blobs.
    pub fn storage(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Requests the registry served so far, from its access log
    /// ([`Registry::start_logged`]), oldest first.
    pub fn requests(&self) -> Vec<Request> {
        self.log().lines().filter_map(Request::parse).collect()
    }

    /// The registry's own log so far, for assertions and failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A test CA (`ca.pem`) and a server certificate for 127.0.0.1 and
/// localhost issued by it, made with openssl. A CA apart from the server
/// certificate is what strict TLS stacks (rustls, webpki) accept: they refuse
/// a CA certificate used as the server's own.
fn test_ca_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let ca = dir.join("ca.pem");
    let ca_key = dir.join("ca-key.pem");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let request = dir.join("server.csr");
    let extensions = dir.join("server.ext");
    let new_key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(Command::new("openssl")
        .args(["req", "-x509"])
        .args(new_key)
        .args(["-days", "2", "-subj", "/CN=kiln test CA"])
        .arg("-keyout")
        .arg(&ca_key)
        .arg("-out")
        .arg(&ca));
    run(Command::new("openssl")
        .arg("req")
        .args(new_key)
        .args(["-subj", "/CN=127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&request));
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write certificate extensions");
    run(Command::new("openssl")
        .args(["x509", "-req", "-days", "2", "-set_serial", "1"])
        .arg("-in")
        .arg(&request)
        .arg("-CA")
        .arg(&ca)
        .arg("-CAkey")
        .arg(&ca_key)
        .arg("-extfile")
        .arg(&extensions)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// One request a test server saw: a line of the registry's access log, or
/// a request the [`crate::ArchiveServer`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, `POST`, `PATCH`, `PUT`, ...
    pub method: String,
    /// Path and query, e.g. `/v2/app/blobs/uploads/`.
    pub path: String,
    /// HTTP status of the answer.
    pub status: u16,
}

impl Request {
    /// Parses a combined-log-format line (`... "PUT /v2/x HTTP/1.1" 201 ...`).
    pub(crate) fn parse(line: &str) -> Option<Request> {
        let (_, rest) = line.split_once('"')?;
        let (request, rest) = rest.split_once('"')?;
        let mut words = request.split(' ');
        let method = words.next()?.to_string();
        let path = words.next()?.to_string();
        let status = rest.split_whitespace().next()?.parse().ok()?;
        Some(Request {
            method,
            path,
            status,
        })
    }

    /// Whether this request carries or starts a blob upload (`POST`,
    /// `PATCH` or `PUT` under `/blobs/uploads/`), cross-repository mounts
    /// excluded.
    pub fn is_blob_upload(&self) -> bool {
        self.path.contains("/blobs/uploads/")
            && matches!(self.method.as_str(), "POST" | "PATCH" | "PUT")
            && !self.path.contains("mount=")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_log_lines_parse() {
        let line = r#"127.0.0.1 - - [25/Nov/2026:05:00:00 +0000] "PATCH /v2/app/blobs/uploads/abc?_state=x HTTP/1.1" 202 0 "" "ua""#;
        let request = Request::parse(line).unwrap();
        assert_eq!(request.method, "PATCH");
        assert_eq!(request.status, 202);
        assert!(request.is_blob_upload());
        assert_eq!(Request::parse("time=x level=warning msg=nothing"), None);
    }
}
