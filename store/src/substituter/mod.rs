//! Binary caches: where narinfo files and NARs come from.
//!
//! A substituter is a `file://` folder or an `http(s)://` server laid out as
//! Nix writes binary caches (`nix-cache-info`, `<hash>.narinfo`, `nar/...`).
//! HTTP requests are retried with backoff (kiln-io's policy, honouring
//! `Retry-After`) on connection errors, timeouts, 408, 429 and 5xx answers;
//! a 404 means "not here, ask the next cache".

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use kiln_io::retry::{is_retryable_status, parse_retry_after, Failure, RetryPolicy};
use nix_derivation::StorePath;
use nix_narinfo::{NarInfo, TrustedPublicKey, MAX_NARINFO_SIZE};

use crate::error::StoreError;
use crate::narinfo::{check_signature, hash_part, parse_narinfo, parse_public_keys};
use crate::netrc::{credentials_for, Credentials};
use crate::redact::redact_url;

/// The public NixOS binary cache, used when no substituter is given.
pub const DEFAULT_SUBSTITUTER: &str = "https://cache.nixos.org";

/// The published key of [`DEFAULT_SUBSTITUTER`].
pub const DEFAULT_PUBLIC_KEY: &str =
    "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY=";

/// The store folder every path kiln handles lives in.
pub const STORE_DIR: &str = "/nix/store";

/// How downloads behave.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Longest wait for a TCP (and TLS) connection.
    pub connect_timeout: Duration,
    /// Longest wait for a response's headers, and for each read of its body.
    pub read_timeout: Duration,
    /// Attempts after the first on a connection error, timeout, 408, 429
    /// or 5xx.
    pub retries: u32,
    /// Wait before the first retry; doubled for each next one, up to the
    /// shared [`RetryPolicy`]'s longest wait.
    pub backoff: Duration,
    /// How many narinfo and NAR downloads run at once.
    pub jobs: usize,
    /// Whether narinfo signatures are checked. Only `--no-verify` turns this off.
    pub verify_signatures: bool,
}

impl FetchOptions {
    /// The shared retry policy with these options' tries and first wait.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            attempts: self.retries.saturating_add(1),
            first_delay: self.backoff,
            ..RetryPolicy::default()
        }
    }
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(250),
            jobs: 8,
            verify_signatures: true,
        }
    }
}

/// The caches to ask, in order, with the keys their narinfo must be signed
/// by.
pub struct Substituters {
    caches: Vec<Substituter>,
    keys: Vec<TrustedPublicKey>,
    options: FetchOptions,
    agent: ureq::Agent,
}

/// A narinfo that describes the path asked for and passed the signature
/// check, with the cache that served it.
#[derive(Debug, Clone)]
pub struct FoundNarInfo {
    /// The record.
    pub info: NarInfo,
    /// Index of the cache in [`Substituters`].
    pub cache: usize,
}

impl Substituters {
    /// Caches at `urls` (the public NixOS cache when empty), trusting
    /// `trusted_keys` (`name:base64`; the public NixOS cache's key when
    /// empty).
    pub fn new(
        urls: &[String],
        trusted_keys: &[String],
        options: FetchOptions,
    ) -> Result<Substituters, StoreError> {
        let default_url = [DEFAULT_SUBSTITUTER.to_string()];
        let default_key = [DEFAULT_PUBLIC_KEY.to_string()];
        let urls = if urls.is_empty() {
            &default_url[..]
        } else {
            urls
        };
        let keys = if trusted_keys.is_empty() {
            &default_key[..]
        } else {
            trusted_keys
        };
        Ok(Substituters {
            caches: urls
                .iter()
                .map(|url| Substituter::parse(url))
                .collect::<Result<_, _>>()?,
            keys: parse_public_keys(keys)?,
            agent: agent(&options),
            options,
        })
    }

    /// Uses the netrc text's credentials for the HTTP caches it names.
    pub fn with_netrc(mut self, netrc: &str) -> Substituters {
        for cache in &mut self.caches {
            let credentials = cache.host().and_then(|host| credentials_for(netrc, host));
            cache.set_credentials(credentials);
        }
        self
    }

    /// The caches' URLs, in the order they are asked.
    pub fn urls(&self) -> Vec<&str> {
        self.caches.iter().map(Substituter::url).collect()
    }

    /// How downloads behave.
    pub fn options(&self) -> &FetchOptions {
        &self.options
    }

    /// Whether `info` passes this realization's signature check: signed by
    /// a trusted key, or signatures are not checked (`--no-verify`).
    pub fn trusts(&self, info: &NarInfo) -> bool {
        !self.options.verify_signatures
            || info.has_valid_signature(&nix_derivation::StoreDir::default(), &self.keys)
    }

    /// The first cache's narinfo for `path`, checked. A cache without it
    /// passes the question on; no cache having it is an error naming all.
    pub fn narinfo(&self, path: &StorePath) -> Result<FoundNarInfo, StoreError> {
        let name = format!("{}.narinfo", hash_part(path));
        for (index, cache) in self.caches.iter().enumerate() {
            cache.check_store_dir(&self.agent, &self.options)?;
            let url = cache.url_of(&name);
            let Some(text) =
                cache.read_text(&name, MAX_NARINFO_SIZE as u64, &self.agent, &self.options)?
            else {
                continue;
            };
            let info = parse_narinfo(text.as_bytes(), &url, path)?;
            if self.options.verify_signatures {
                check_signature(&info, &self.keys, &url)?;
            }
            return Ok(FoundNarInfo { info, cache: index });
        }
        Err(StoreError::NotInAnyCache {
            path: path.to_string(),
            tried: self.urls().join(", "),
        })
    }

    /// How often a NAR download from cache `cache` that broke midway is
    /// started again: the shared policy for HTTP caches, none for a
    /// `file://` folder, where a second read finds the same bytes.
    pub(crate) fn nar_retry_policy(&self, cache: usize) -> RetryPolicy {
        self.caches[cache].body_retry_policy(&self.options)
    }

    /// Opens the (compressed) NAR `found` points at; returns it with its URL.
    pub fn open_nar(&self, found: &FoundNarInfo) -> Result<(Download, String), StoreError> {
        let cache = &self.caches[found.cache];
        let url = cache.url_of(found.info.url());
        match cache.open(found.info.url(), &self.agent, &self.options)? {
            Some(reader) => Ok((reader, url)),
            None => Err(StoreError::Fetch {
                url,
                reason: format!(
                    "the cache lists {} but does not have its NAR",
                    found.info.store_path()
                ),
            }),
        }
    }
}

enum Transport {
    File(PathBuf),
    Http(String),
}

/// One binary cache.
pub struct Substituter {
    url: String,
    transport: Transport,
    credentials: Option<Credentials>,
    store_dir_checked: OnceLock<()>,
}

/// A readable download: a file, or an HTTP response body.
pub type Download = Box<dyn Read + Send>;

impl Substituter {
    /// Parses `file:///path`, `http://host[/prefix]` or `https://...`.
    pub fn parse(url: &str) -> Result<Substituter, StoreError> {
        let bad = |reason: &str| StoreError::BadSubstituter {
            url: redact_url(url),
            reason: reason.to_string(),
        };
        let trimmed = url.trim_end_matches('/');
        let transport = if let Some(path) = trimmed.strip_prefix("file://") {
            // Query options such as `?compression=` only matter to writers.
            let path = path.split('?').next().unwrap_or_default();
            if !path.starts_with('/') {
                return Err(bad("a file:// cache needs an absolute path"));
            }
            Transport::File(PathBuf::from(path))
        } else if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            let host = trimmed.split("://").nth(1).unwrap_or_default();
            if host.is_empty() || host.starts_with('/') {
                return Err(bad("no host in the URL"));
            }
            Transport::Http(trimmed.to_string())
        } else {
            return Err(bad("unknown scheme"));
        };
        Ok(Substituter {
            url: redact_url(trimmed),
            transport,
            credentials: None,
            store_dir_checked: OnceLock::new(),
        })
    }

    /// The cache's URL for messages: as given, without a trailing slash
    /// and with any `user:pass@` replaced by `***@`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn set_credentials(&mut self, credentials: Option<Credentials>) {
        self.credentials = credentials;
    }

    /// The host of an HTTP cache, for credential look-up.
    pub(crate) fn host(&self) -> Option<&str> {
        match &self.transport {
            Transport::File(_) => None,
            Transport::Http(base) => {
                let rest = base.split("://").nth(1)?;
                let authority = rest.split('/').next()?;
                Some(authority.split(':').next().unwrap_or(authority))
            }
        }
    }

    /// The full URL of a file in the cache, for messages (redacted).
    pub fn url_of(&self, relative: &str) -> String {
        format!("{}/{relative}", self.url)
    }

    /// Opens `relative` (a narinfo name or a narinfo's `URL`). `Ok(None)`
    /// when the cache does not have it.
    pub(crate) fn open(
        &self,
        relative: &str,
        agent: &ureq::Agent,
        options: &FetchOptions,
    ) -> Result<Option<Download>, StoreError> {
        let url = self.url_of(relative);
        if !is_plain_relative(relative) {
            return Err(StoreError::Fetch {
                url,
                reason: "refusing a location outside the cache (absolute or with `..`)".to_string(),
            });
        }
        match &self.transport {
            Transport::File(dir) => open_file(&dir.join(relative), &url),
            // Requests go to the URL as given; messages name the redacted one.
            Transport::Http(base) => {
                let request = format!("{base}/{relative}");
                http_get(&request, &url, self.credentials.as_ref(), agent, options)
            }
        }
    }

    /// How often a download from this cache that broke midway starts
    /// again: the shared policy over HTTP, a single try for a `file://`
    /// folder, where a second read finds the same bytes.
    fn body_retry_policy(&self, options: &FetchOptions) -> RetryPolicy {
        match self.transport {
            Transport::Http(_) => options.retry_policy(),
            Transport::File(_) => RetryPolicy {
                attempts: 1,
                ..options.retry_policy()
            },
        }
    }

    /// The text of `relative` (at most `limit` bytes); `None` when the
    /// cache does not have it. Over HTTP, a body that breaks midway is
    /// asked for again on the same schedule as a failed request.
    fn read_text(
        &self,
        relative: &str,
        limit: u64,
        agent: &ureq::Agent,
        options: &FetchOptions,
    ) -> Result<Option<String>, StoreError> {
        let url = self.url_of(relative);
        let read_once = || {
            let Some(reader) = self
                .open(relative, agent, options)
                .map_err(Failure::Final)?
            else {
                return Ok(None);
            };
            let mut bytes = Vec::new();
            match reader.take(limit + 1).read_to_end(&mut bytes) {
                Ok(_) => small_text(bytes, limit, &url)
                    .map(Some)
                    .map_err(Failure::Final),
                Err(err) => Err(Failure::passing(err.to_string())),
            }
        };
        let log = |failure: &String, attempt, wait| {
            tracing::warn!(%url, attempt, %failure, "download broke, retrying in {wait:?}");
        };
        self.body_retry_policy(options)
            .run_blocking(read_once, log)
            .map_err(|stopped| {
                stopped.into_error(|error, attempts| StoreError::Fetch {
                    url: url.clone(),
                    reason: if attempts > 1 {
                        format!("{error} (gave up after {attempts} attempts)")
                    } else {
                        error
                    },
                })
            })
    }

    /// Fails when the cache's `nix-cache-info` names a store folder other
    /// than `/nix/store`. A cache without the file passes, as in Nix.
    pub(crate) fn check_store_dir(
        &self,
        agent: &ureq::Agent,
        options: &FetchOptions,
    ) -> Result<(), StoreError> {
        if self.store_dir_checked.get().is_some() {
            return Ok(());
        }
        if let Some(text) = self.read_text("nix-cache-info", 64 * 1024, agent, options)? {
            let store_dir = text
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.trim() == "StoreDir")
                .map(|(_, value)| value.trim().to_string());
            if let Some(found) = store_dir.filter(|dir| dir != STORE_DIR) {
                return Err(StoreError::WrongStoreDir {
                    url: self.url.clone(),
                    found,
                });
            }
        }
        let _ = self.store_dir_checked.set(());
        Ok(())
    }
}

/// Opens any `file://`, `http://` or `https://` URL with the substituters'
/// timeouts, retries and trusted roots, for downloads that are not in a
/// binary cache (nixpkgs archives, overlays). `Ok(None)` when the file is
/// missing or the server answers 404 or 410.
pub fn open_url(url: &str, options: &FetchOptions) -> Result<Option<Download>, StoreError> {
    let location = Substituter::parse(url)?;
    match &location.transport {
        Transport::File(path) => open_file(path, url),
        Transport::Http(_) => http_get(url, &redact_url(url), None, &agent(options), options),
    }
}

/// GETs `target`, retrying what may pass per the shared policy; errors
/// and logs name `url`, its redacted form.
fn http_get(
    target: &str,
    url: &str,
    credentials: Option<&Credentials>,
    agent: &ureq::Agent,
    options: &FetchOptions,
) -> Result<Option<Download>, StoreError> {
    let log = |failure: &String, attempt, wait| {
        tracing::warn!(%url, attempt, %failure, "download failed, retrying in {wait:?}");
    };
    options
        .retry_policy()
        .run_blocking(|| get_once(target, url, credentials, agent), log)
        .map_err(|stopped| {
            stopped.into_error(|error, attempts| StoreError::Fetch {
                url: url.to_string(),
                reason: format!("{error} (gave up after {attempts} attempts)"),
            })
        })
}

/// One GET of `target`: the body on 2xx, `None` on 404 or 410; a failure
/// worth another try (a connection error, 408, 429, 5xx) is passing.
fn get_once(
    target: &str,
    url: &str,
    credentials: Option<&Credentials>,
    agent: &ureq::Agent,
) -> Result<Option<Download>, Failure<String, StoreError>> {
    let mut request = agent.get(target);
    if let Some(credentials) = credentials {
        request = request.header("Authorization", credentials.basic_auth_header());
    }
    let fetch_error = |reason: String| {
        Failure::Final(StoreError::Fetch {
            url: url.to_string(),
            reason,
        })
    };
    let response = match request.call() {
        Ok(response) => response,
        Err(err) if is_transient(&err) => return Err(Failure::passing(err.to_string())),
        Err(err) => return Err(fetch_error(err.to_string())),
    };
    match response.status().as_u16() {
        200..=299 => Ok(Some(Box::new(response.into_body().into_reader()))),
        404 | 410 => Ok(None),
        status if is_retryable_status(status) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, SystemTime::now()));
            let error = match retry_after {
                Some(wait) => format!(
                    "the server answered {status} and asked to wait {}s",
                    wait.as_secs()
                ),
                None => format!("the server answered {status}"),
            };
            Err(Failure::Passing { error, retry_after })
        }
        status => Err(fetch_error(format!(
            "the server answered {status}{}",
            if status == 401 || status == 403 {
                " (credentials for private caches go in ~/.netrc or KILN_NETRC)"
            } else {
                ""
            }
        ))),
    }
}

fn is_transient(err: &ureq::Error) -> bool {
    matches!(
        err,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
    )
}

/// A ureq agent with kiln's timeouts; status codes are handled by the caller.
/// It trusts the system's CA store (through rustls-platform-verifier), as
/// the registry client does: a company proxy that re-signs TLS with its own
/// CA, trusted only by the host's bundle, must work without flags, which
/// Mozilla's built-in roots alone would refuse.
pub(crate) fn agent(options: &FetchOptions) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_recv_response(Some(options.read_timeout))
        .timeout_per_read(Some(options.read_timeout))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn open_file(path: &Path, url: &str) -> Result<Option<Download>, StoreError> {
    match File::open(path) {
        Ok(file) => Ok(Some(Box::new(file))),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(StoreError::Fetch {
            url: url.to_string(),
            reason: err.to_string(),
        }),
    }
}

/// `bytes` as text, refused beyond `limit` bytes or when not UTF-8.
fn small_text(bytes: Vec<u8>, limit: u64, url: &str) -> Result<String, StoreError> {
    if bytes.len() as u64 > limit {
        return Err(StoreError::Fetch {
            url: url.to_string(),
            reason: format!("larger than {limit} bytes"),
        });
    }
    String::from_utf8(bytes).map_err(|_| StoreError::Fetch {
        url: url.to_string(),
        reason: "not UTF-8 text".to_string(),
    })
}

/// A location inside the cache: relative, no `..`, no empty name.
fn is_plain_relative(relative: &str) -> bool {
    !relative.is_empty()
        && Path::new(relative)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests;
