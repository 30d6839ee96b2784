//! Repeating registry calls that failed for a passing reason (connection
//! errors, 429, 5xx) with exponential backoff.

use std::future::Future;
use std::time::Duration;

use oci_client::errors::OciDistributionError;

use super::error::{RegistryError, Retry, Site};

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled each time after.
    pub first_delay: Duration,
    /// Longest single wait.
    pub max_delay: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub(crate) async fn with_retry<T, F, Fut>(
    backoff: Backoff,
    site: &Site,
    operation: &str,
    mut call: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut delay = backoff.first_delay;
    let mut attempt = 1;
    loop {
        let err = match call().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let (retry, err) = site.classify(operation, err);
        if retry == Retry::Final || attempt >= backoff.attempts {
            return Err(err);
        }
        tracing::warn!(%err, attempt, "retrying in {delay:?}");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(backoff.max_delay);
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn site() -> Site {
        Site {
            registry: "r".into(),
            repository: "a".into(),
            credential_source: "none".into(),
        }
    }

    fn quick() -> Backoff {
        Backoff {
            attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn server(code: u16) -> OciDistributionError {
        OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        }
    }

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn transient_failures_are_retried_until_success() {
        let calls = Cell::new(0);
        let result = block_on(with_retry(quick(), &site(), "op", || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(server(if n == 1 { 503 } else { 429 }))
                } else {
                    Ok(n)
                }
            }
        }));
        assert_eq!(result.unwrap(), 3);
    }

    #[test]
    fn attempts_are_bounded() {
        let calls = Cell::new(0);
        let result: Result<(), _> = block_on(with_retry(quick(), &site(), "op", || {
            calls.set(calls.get() + 1);
            async { Err(server(502)) }
        }));
        assert!(result.unwrap_err().to_string().contains("HTTP 502"));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn final_failures_are_not_retried() {
        let calls = Cell::new(0);
        let result: Result<(), _> = block_on(with_retry(quick(), &site(), "op", || {
            calls.set(calls.get() + 1);
            async { Err(server(404)) }
        }));
        assert!(result.is_err());
        assert_eq!(calls.get(), 1);
    }
}
