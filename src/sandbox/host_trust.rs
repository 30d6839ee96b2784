//! The host's TLS trust and proxy settings, passed into build commands.
//!
//! Company networks often re-sign TLS with a CA that only the host's system
//! bundle trusts, and reach the internet through a proxy named in
//! `HTTPS_PROXY`. A build that ignored both would fail at its first
//! `pip install` or `npm ci`. Docker passes the proxy variables to builds,
//! and buildah and podman mount the host's CA store; kiln does both: the
//! bundle is bound read-only at [`CA_BUNDLE_INSIDE`], the variables common
//! tools read point at it, and the proxy variables are passed on. None of it
//! enters a phase's cache key, a layer or the image's configuration: it
//! describes the machine, not the app.

use std::path::{Path, PathBuf};

use super::env::add_unset;
use super::{FolderBind, Sandbox};

/// Where the bundle appears inside the sandbox: a folder of kiln's own,
/// so it never hides or replaces a base image's certificates.
pub const CA_BUNDLE_INSIDE: &str = "/run/kiln/ca-certificates.crt";

/// The variables that point TLS clients at a CA bundle: OpenSSL and Go
/// (`SSL_CERT_FILE`), Nix, pip, Python requests, Node.js (in addition to
/// its own roots), cargo, git and curl.
pub const CA_VARIABLES: [&str; 8] = [
    "SSL_CERT_FILE",
    "NIX_SSL_CERT_FILE",
    "PIP_CERT",
    "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "GIT_SSL_CAINFO",
    "CURL_CA_BUNDLE",
];

/// The proxy variables passed on from kiln's environment, in both cases as
/// tools read either.
pub const PROXY_VARIABLES: [&str; 10] = [
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "ftp_proxy",
    "no_proxy",
    "all_proxy",
];

/// Where Linux distributions keep the system CA bundle, most common first
/// (Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine, the extracted
/// RHEL form).
const SYSTEM_BUNDLES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
];

/// What build commands get from the host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostTrust {
    /// The CA bundle to bind, resolved to a regular file.
    pub ca_file: Option<PathBuf>,
    /// Proxy variables and their values.
    pub proxy: Vec<(String, String)>,
}

/// How the CA bundle is chosen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum CaChoice {
    /// The host's: `SSL_CERT_FILE` when it names a file, else the first
    /// system bundle that exists.
    #[default]
    Host,
    /// This file (`--ca-file`).
    File(PathBuf),
    /// None (`--no-host-ca`).
    Off,
}

impl HostTrust {
    /// The trust of this machine: the bundle `choice` picks and the proxy
    /// variables of kiln's own environment.
    pub fn from_host(choice: &CaChoice) -> anyhow::Result<HostTrust> {
        let env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let ca_file = match choice {
            CaChoice::Off => None,
            CaChoice::File(file) => Some(bundle_file(file).map_err(|reason| {
                anyhow::anyhow!(
                    "--ca-file {}: {reason}; name a PEM bundle of CA certificates",
                    file.display()
                )
            })?),
            CaChoice::Host => host_bundle(env("SSL_CERT_FILE").as_deref(), &SYSTEM_BUNDLES),
        };
        let proxy = PROXY_VARIABLES
            .iter()
            .filter_map(|name| {
                let value = std::env::var(name).ok()?;
                (!value.is_empty()).then(|| (name.to_string(), value))
            })
            .collect();
        Ok(HostTrust { ca_file, proxy })
    }

    /// Binds the bundle into `sandbox` and adds the variables its
    /// environment does not set already: a plan's or `--env`'s own value
    /// wins.
    pub fn apply(&self, sandbox: &mut Sandbox) {
        let mut added = Vec::new();
        if let Some(ca_file) = &self.ca_file {
            sandbox.read_only.push(FolderBind {
                host: ca_file.clone(),
                inside: PathBuf::from(CA_BUNDLE_INSIDE),
            });
            added.extend(
                CA_VARIABLES
                    .iter()
                    .map(|name| (name.to_string(), CA_BUNDLE_INSIDE.to_string())),
            );
        }
        added.extend(self.proxy.iter().cloned());
        add_unset(&mut sandbox.env, added);
    }
}

/// `SSL_CERT_FILE` when it names a bundle, else the first of `system`
/// that does; `None` on a machine with neither.
fn host_bundle(ssl_cert_file: Option<&Path>, system: &[&str]) -> Option<PathBuf> {
    ssl_cert_file
        .into_iter()
        .chain(system.iter().map(Path::new))
        .find_map(|candidate| bundle_file(candidate).ok())
}

/// `path` resolved to a readable regular file (distributions make the
/// bundle a symlink), or why it is not one.
fn bundle_file(path: &Path) -> Result<PathBuf, String> {
    let resolved = path.canonicalize().map_err(|e| e.to_string())?;
    let meta = std::fs::metadata(&resolved).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    std::fs::File::open(&resolved).map_err(|e| e.to_string())?;
    Ok(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(env: &[(&str, &str)]) -> Sandbox {
        let mut sandbox = Sandbox::new("t", "/bin/bash".into(), "/u".into(), Vec::new());
        sandbox.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        sandbox
    }

    #[test]
    fn the_bundle_is_bound_and_every_variable_points_at_it_unless_set() {
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let trust = HostTrust {
            ca_file: Some(bundle.clone()),
            proxy: vec![("HTTPS_PROXY".into(), "http://proxy:3128".into())],
        };
        let mut sandbox = sandbox(&[("PIP_CERT", "/app/mine.pem"), ("HOME", "/root")]);
        trust.apply(&mut sandbox);
        assert_eq!(sandbox.read_only.len(), 1);
        assert_eq!(sandbox.read_only[0].host, bundle);
        assert_eq!(sandbox.read_only[0].inside, Path::new(CA_BUNDLE_INSIDE));
        let get = |name: &str| {
            sandbox
                .env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("PIP_CERT"), Some("/app/mine.pem"));
        for name in CA_VARIABLES.iter().filter(|n| **n != "PIP_CERT") {
            assert_eq!(get(name), Some(CA_BUNDLE_INSIDE), "{name}");
        }
        assert_eq!(get("HTTPS_PROXY"), Some("http://proxy:3128"));
        let names: Vec<&String> = sandbox.env.iter().map(|(k, _)| k).collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    }

    #[test]
    fn no_bundle_and_no_proxy_change_nothing() {
        let mut sandbox = sandbox(&[("HOME", "/root")]);
        HostTrust::default().apply(&mut sandbox);
        assert!(sandbox.read_only.is_empty());
        assert_eq!(sandbox.env, vec![("HOME".into(), "/root".into())]);
    }

    #[test]
    fn ssl_cert_file_comes_before_the_system_bundles_and_missing_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("own.pem");
        let system = dir.path().join("system.pem");
        std::fs::write(&own, "x").unwrap();
        std::fs::write(&system, "x").unwrap();
        let missing = dir.path().join("missing.pem");
        let candidates = [missing.to_str().unwrap(), system.to_str().unwrap()];
        assert_eq!(host_bundle(Some(&own), &candidates), Some(own.clone()));
        assert_eq!(host_bundle(Some(&missing), &candidates), Some(system));
        assert_eq!(host_bundle(None, &[missing.to_str().unwrap()]), None);
        assert_eq!(host_bundle(Some(dir.path()), &[]), None);
    }

    #[test]
    fn a_named_file_that_is_not_a_bundle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [dir.path().join("absent.pem"), dir.path().to_path_buf()] {
            let err = HostTrust::from_host(&CaChoice::File(bad.clone()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--ca-file") && err.contains(&bad.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn a_symlinked_bundle_is_bound_as_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target.pem");
        std::fs::write(&target, "x").unwrap();
        let link = dir.path().join("link.pem");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let trust = HostTrust::from_host(&CaChoice::File(link)).unwrap();
        assert_eq!(trust.ca_file, Some(target.canonicalize().unwrap()));
    }
}
