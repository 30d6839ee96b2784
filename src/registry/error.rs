//! What can go wrong talking to a registry, worded so a person knows which
//! registry, which repository and what to do.

use std::path::PathBuf;

use kiln_io::retry::is_retryable_status;
use oci_client::errors::{OciDistributionError, OciErrorCode};

use super::unpack::UnpackError;

/// A failed push, pull or unpack.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference could not be parsed.
    #[error("invalid image reference `{reference}`: {reason}; write it as REGISTRY/NAME[:TAG][@sha256:DIGEST]")]
    Reference { reference: String, reason: String },

    /// The registry answered 401/403 to the credentials kiln sent.
    #[error("registry {registry} refused access to repository {repository} ({answer}) with credentials from {credentials}; check the user name and password there, or pass --registry-username/--registry-password")]
    Unauthorized {
        registry: String,
        repository: String,
        answer: String,
        credentials: String,
    },

    /// The TLS certificate of the registry is not trusted.
    #[error("registry {registry}: TLS certificate not trusted ({detail}); pass its CA with --registry-ca-file, or --insecure-registry {registry} for a local registry")]
    UntrustedCertificate { registry: String, detail: String },

    /// Nothing answered, or the connection broke, after every retry.
    #[error("could not reach registry {registry} while {operation} for repository {repository}: {detail}; check the address and that the registry is running")]
    Unreachable {
        registry: String,
        repository: String,
        operation: String,
        detail: String,
    },

    /// The registry answered, but not with success.
    #[error("registry {registry}, repository {repository}: {operation} failed: {answer}")]
    Refused {
        registry: String,
        repository: String,
        operation: String,
        answer: String,
    },

    /// The registry does not allow deleting manifests.
    #[error("registry {registry} refuses to delete manifests of repository {repository} ({answer}); allow deletes on the registry (docker-registry/distribution: `storage: delete: enabled: true` in its config, or REGISTRY_STORAGE_DELETE_ENABLED=true) or delete the whole repository with the registry's own tools")]
    DeletesDisabled {
        registry: String,
        repository: String,
        answer: String,
    },

    /// A manifest or index from the registry is not one kiln can use.
    #[error("registry {registry}, repository {repository}: {reason}")]
    BadManifest {
        registry: String,
        repository: String,
        reason: String,
    },

    /// A downloaded blob does not have the digest its descriptor names.
    #[error("registry {registry}, repository {repository}: blob {expected} arrived with digest {actual} ({bytes} bytes); the download was deleted, try again or check the registry's storage")]
    DigestMismatch {
        registry: String,
        repository: String,
        expected: String,
        actual: String,
        bytes: u64,
    },

    /// The local OCI image layout to push is missing or malformed.
    #[error("image layout {path}: {reason}")]
    Layout { path: PathBuf, reason: String },

    /// An auth file exists but cannot be used.
    #[error("auth file {path}: {reason}; fix or remove it")]
    AuthFile { path: PathBuf, reason: String },

    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} (named in {config}) failed for {registry}: {reason}")]
    CredentialHelper {
        helper: String,
        config: PathBuf,
        registry: String,
        reason: String,
    },

    /// A `--registry-ca-file` cannot be read or parsed.
    #[error("CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },

    /// A local file or folder operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The async runtime for network calls could not start.
    #[error("could not start kiln's network runtime: {0}")]
    Runtime(#[source] std::io::Error),

    /// Unpacking pulled layers failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
}

impl RegistryError {
    /// An I/O failure on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        RegistryError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Where a registry call happened, to turn `oci-client` errors into
/// [`RegistryError`]s that name it.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub registry: String,
    pub repository: String,
    pub credential_source: String,
}

/// Whether a failed call is worth repeating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    Transient,
    Final,
}

impl Site {
    /// Classifies `err` from `operation` as transient (connection errors,
    /// the HTTP answers kiln-io's policy retries) or final, and words it.
    pub(crate) fn classify(
        &self,
        operation: &str,
        err: OciDistributionError,
    ) -> (Retry, RegistryError) {
        let refused = |answer: String| RegistryError::Refused {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            operation: operation.to_string(),
            answer,
        };
        let unauthorized = |answer: String| RegistryError::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            answer,
            credentials: self.credential_source.clone(),
        };
        match err {
            OciDistributionError::RequestError(e) => self.classify_request(operation, e),
            OciDistributionError::UnauthorizedError { .. } => {
                (Retry::Final, unauthorized("401 Unauthorized".into()))
            }
            OciDistributionError::AuthenticationFailure(reason) => (
                Retry::Final,
                unauthorized(format!("token request failed: {}", one_line(&reason))),
            ),
            OciDistributionError::ServerError { code, message, .. } => {
                let answer = format!("HTTP {code}: {}", one_line(&message));
                match code {
                    401 | 403 => (Retry::Final, unauthorized(answer)),
                    code if is_retryable_status(code) => (Retry::Transient, refused(answer)),
                    _ => (Retry::Final, refused(answer)),
                }
            }
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let answer = one_line(&envelope.to_string());
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    (Retry::Final, unauthorized(answer))
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
                {
                    (Retry::Transient, refused(answer))
                } else {
                    (Retry::Final, refused(answer))
                }
            }
            OciDistributionError::IoError(e) => (
                Retry::Transient,
                RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    operation: operation.to_string(),
                    detail: e.to_string(),
                },
            ),
            other => (Retry::Final, refused(one_line(&other.to_string()))),
        }
    }

    fn classify_request(&self, operation: &str, e: reqwest::Error) -> (Retry, RegistryError) {
        let detail = error_chain(&e);
        if detail.contains("certificate") || detail.contains("UnknownIssuer") {
            return (
                Retry::Final,
                RegistryError::UntrustedCertificate {
                    registry: self.registry.clone(),
                    detail,
                },
            );
        }
        if let Some(status) = e.status() {
            let answer = format!("HTTP {status}");
            return match status.as_u16() {
                401 | 403 => (
                    Retry::Final,
                    RegistryError::Unauthorized {
                        registry: self.registry.clone(),
                        repository: self.repository.clone(),
                        answer,
                        credentials: self.credential_source.clone(),
                    },
                ),
                code => (
                    if is_retryable_status(code) {
                        Retry::Transient
                    } else {
                        Retry::Final
                    },
                    RegistryError::Refused {
                        registry: self.registry.clone(),
                        repository: self.repository.clone(),
                        operation: operation.to_string(),
                        answer,
                    },
                ),
            };
        }
        (
            Retry::Transient,
            RegistryError::Unreachable {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                operation: operation.to_string(),
                detail,
            },
        )
    }
}

/// `err` and its causes on one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    one_line(&text)
}

/// A registry's answer squeezed onto one short line.
pub(crate) fn one_line(text: &str) -> String {
    const MAX: usize = 300;
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= MAX {
        flat
    } else {
        let cut: String = flat.chars().take(MAX).collect();
        format!("{cut}...")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            registry: "127.0.0.1:5000".into(),
            repository: "app".into(),
            credential_source: "docker config /home/u/.docker/config.json".into(),
        }
    }

    #[test]
    fn server_errors_and_throttling_are_retried_client_errors_are_not() {
        let server = |code| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: "m".into(),
        };
        assert_eq!(site().classify("op", server(503)).0, Retry::Transient);
        assert_eq!(site().classify("op", server(429)).0, Retry::Transient);
        assert_eq!(site().classify("op", server(408)).0, Retry::Transient);
        assert_eq!(site().classify("op", server(400)).0, Retry::Final);
        assert_eq!(site().classify("op", server(404)).0, Retry::Final);
    }

    #[test]
    fn unauthorized_names_registry_repository_and_credential_source_on_one_line() {
        let (retry, err) = site().classify(
            "push",
            OciDistributionError::ServerError {
                code: 401,
                url: "u".into(),
                message: "{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}\n".into(),
            },
        );
        assert_eq!(retry, Retry::Final);
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:5000"), "{text}");
        assert!(text.contains("repository app"), "{text}");
        assert!(text.contains("/home/u/.docker/config.json"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn long_answers_are_cut() {
        let long = "x ".repeat(1000);
        assert!(one_line(&long).len() < 320);
    }
}
