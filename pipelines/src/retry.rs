//! Retrying a refused or failed request with exponential backoff (on top of the SDK's own
//! retries of transient errors, which do not cover a request the service refused once).

use std::future::Future;
use std::time::Duration;

/// Runs `request` up to `attempts` times, waiting 200 ms, 400 ms, ... between attempts;
/// returns the first success or the last error.
pub async fn with_backoff<T, E, Fut>(
    attempts: u32,
    what: &str,
    mut request: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: std::fmt::Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match request().await {
            Ok(value) => return Ok(value),
            Err(e) if attempt < attempts => {
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn retries_until_success_or_the_last_attempt() {
        let mut calls = 0;
        let r: Result<u32, String> = with_backoff(5, "t", || {
            calls += 1;
            let n = calls;
            async move {
                if n < 3 {
                    Err(format!("no {n}"))
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(r, Ok(3));
        let mut calls = 0;
        let r: Result<u32, String> = with_backoff(2, "t", || {
            calls += 1;
            let n = calls;
            async move { Err(format!("no {n}")) }
        })
        .await;
        assert_eq!(r, Err("no 2".to_owned()));
    }
}
