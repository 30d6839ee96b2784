//! Repeating registry calls that failed for a passing reason (connection
//! errors, 408, 429, 5xx) on kiln-io's retry policy. oci-client's errors
//! carry no headers, so a registry's `Retry-After` cannot be seen here.

use std::future::Future;

use kiln_io::retry::RetryPolicy;
use oci_client::errors::OciDistributionError;

use super::error::{RegistryError, Retry, Site};

/// Runs `call` until it succeeds, fails for good, or runs out of attempts.
pub(crate) async fn with_retry<T, F, Fut>(
    backoff: RetryPolicy,
    site: &Site,
    operation: &str,
    mut call: F,
) -> Result<T, RegistryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, OciDistributionError>>,
{
    let mut attempt = 1;
    loop {
        let err = match call().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let (retry, err) = site.classify(operation, err);
        let wait = match retry {
            Retry::Transient => backoff.wait_after(attempt, None),
            Retry::Final => None,
        };
        let Some(wait) = wait else {
            return Err(err);
        };
        tracing::warn!(%err, attempt, "retrying in {wait:?}");
        tokio::time::sleep(wait).await;
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::time::Duration;

    use super::*;

    fn site() -> Site {
        Site {
            registry: "r".into(),
            repository: "a".into(),
            credential_source: "none".into(),
        }
    }

    fn quick() -> RetryPolicy {
        RetryPolicy {
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
