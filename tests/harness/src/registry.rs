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
    /// HTTPS with a self-signed certificate for 127.0.0.1 ([`Registry::ca_cert`]).
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
        let dir = tempfile::Builder::new()
            .prefix("kiln-registry-")
            .tempdir()
            .expect("registry temp dir");
        let port = free_port();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: kiln-test-secret\n",
            root = dir.path().join("data").display()
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
                let (cert, key) = self_signed_cert(dir.path());
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

    /// The self-signed certificate a client must trust ([`RegistryKind::Tls`]).
    pub fn ca_cert(&self) -> Option<PathBuf> {
        (self.kind == RegistryKind::Tls).then(|| self.dir.path().join("cert.pem"))
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

    /// The registry's own log so far, for assertions and failure messages.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// A self-signed certificate for 127.0.0.1 and localhost, made with openssl.
fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    run(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}
