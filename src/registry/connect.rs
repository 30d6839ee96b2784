//! Opening an authenticated `oci-client` session to one registry: trust
//! (system roots, extra CA files, `--insecure-registry`), credentials, and
//! the first auth handshake.

use std::str::FromStr;
use std::time::Duration;

use kiln_io::retry::RetryPolicy;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::auth;
use super::error::{RegistryError, Site};
use super::retry::with_retry;
use super::RegistryConfig;

/// Blobs up to this size go up in one PUT; bigger ones in chunks, which
/// registries and proxies with request size limits accept.
pub(crate) const MONOLITHIC_MAX: u64 = 64 << 20;

/// An authenticated connection to the registry of one reference.
pub(crate) struct Session {
    /// Pushes blobs monolithically (and does everything else).
    pub client: Client,
    /// Pushes blobs in chunks.
    pub chunked: Client,
    /// The reference, parsed.
    pub reference: Reference,
    /// Registry, repository and credential source, for errors.
    pub site: Site,
    /// Retry policy for every call.
    pub backoff: RetryPolicy,
    /// The credentials in use (redacted in `Debug`).
    pub auth: RegistryAuth,
    /// `http://` or `https://` and the registry host: the base of the
    /// requests oci-client has no call for (see [`super::raw`]).
    pub base_url: String,
    /// A plain HTTP client with the same trust settings, for those.
    pub raw: reqwest::Client,
}

/// Parses an image reference (`host[:port]/name[:tag][@digest]`).
pub(crate) fn parse_reference(text: &str) -> Result<Reference, RegistryError> {
    let text = text.strip_prefix("docker://").unwrap_or(text);
    Reference::from_str(text).map_err(|e| RegistryError::Reference {
        reference: text.to_string(),
        reason: e.to_string(),
    })
}

/// Whether `registry` (`host[:port]`) is listed in `insecure` (an entry
/// without a port covers every port of that host).
fn is_insecure(insecure: &[String], registry: &str) -> bool {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    insecure
        .iter()
        .any(|entry| entry == registry || entry == host)
}

/// Connects to the registry of `reference` for `operation`.
pub(crate) async fn connect(
    config: &RegistryConfig,
    reference: Reference,
    operation: RegistryOperation,
) -> Result<Session, RegistryError> {
    let registry = reference.resolve_registry().to_string();
    let (auth, source) = auth::resolve(&registry, config.credentials.as_ref(), &config.auth_env)?;
    tracing::debug!(%registry, credentials = %source, "connecting");
    let site = Site {
        registry: registry.clone(),
        repository: reference.repository().to_string(),
        credential_source: source.to_string(),
    };
    let insecure = is_insecure(&config.insecure_hosts, &registry);
    let plain_http = insecure && !speaks_https(&registry).await;
    let protocol = match plain_http {
        true => ClientProtocol::Http,
        false => ClientProtocol::Https,
    };
    let mut certificates = Vec::new();
    for path in &config.ca_files {
        let data = std::fs::read(path).map_err(|e| RegistryError::CaFile {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        reqwest::Certificate::from_pem(&data).map_err(|e| RegistryError::CaFile {
            path: path.clone(),
            reason: format!("not a PEM certificate ({e})"),
        })?;
        certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data,
        });
    }
    let build = |monolithic: bool| {
        Client::try_from(ClientConfig {
            protocol: protocol.clone(),
            accept_invalid_certificates: insecure,
            use_monolithic_push: monolithic,
            extra_root_certificates: certificates.clone(),
            platform_resolver: None,
            max_concurrent_upload: config.jobs.max(1),
            max_concurrent_download: config.jobs.max(1),
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(300)),
            ..ClientConfig::default()
        })
        .map_err(|e| site.classify("setting up the connection", e).1)
    };
    let mut raw = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(insecure)
        .connect_timeout(Duration::from_secs(30))
        .timeout(Duration::from_secs(300))
        .redirect(reqwest::redirect::Policy::none());
    for certificate in &certificates {
        if let Ok(certificate) = reqwest::Certificate::from_pem(&certificate.data) {
            raw = raw.add_root_certificate(certificate);
        }
    }
    let raw = raw
        .build()
        .map_err(|e| site.classify("setting up the connection", e.into()).1)?;
    let scheme = if plain_http { "http" } else { "https" };
    let session = Session {
        client: build(true)?,
        chunked: build(false)?,
        base_url: format!("{scheme}://{registry}"),
        raw,
        reference,
        site,
        backoff: RetryPolicy::default(),
        auth,
    };
    futures_util::try_join!(
        authenticate(&session, &session.client, &session.auth, operation),
        authenticate(&session, &session.chunked, &session.auth, operation),
    )?;
    Ok(session)
}

async fn authenticate(
    session: &Session,
    client: &Client,
    auth: &RegistryAuth,
    operation: RegistryOperation,
) -> Result<(), RegistryError> {
    with_retry(session.backoff, &session.site, "authenticating", || {
        client.auth(&session.reference, auth, operation)
    })
    .await
    .map(drop)
}

/// Whether an `--insecure-registry` host answers HTTPS at all (with any
/// certificate); if not, kiln talks plain HTTP to it, as docker and skopeo do.
async fn speaks_https(registry: &str) -> bool {
    let Ok(probe) = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return false;
    };
    probe
        .get(format!("https://{registry}/v2/"))
        .send()
        .await
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_entries_match_host_with_or_without_port() {
        let list = vec!["127.0.0.1:5000".to_string(), "local".to_string()];
        assert!(is_insecure(&list, "127.0.0.1:5000"));
        assert!(!is_insecure(&list, "127.0.0.1:5001"));
        assert!(is_insecure(&list, "local:443"));
        assert!(!is_insecure(&list, "elsewhere:5000"));
    }

    #[test]
    fn references_keep_registry_repository_and_tag() {
        let r = parse_reference("docker://127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!(r.registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "team/app");
        assert_eq!(r.tag(), Some("v1"));
        let err = parse_reference("UPPER/Case:tag").unwrap_err().to_string();
        assert!(err.contains("UPPER/Case:tag"), "{err}");
    }
}
