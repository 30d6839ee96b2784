//! When to ask a server again, and how long to wait first: the one policy
//! behind the store's blocking downloads and the registry's async calls.
//!
//! The blocking loop lives here too ([`RetryPolicy::run_blocking`]): the
//! store's requests, its bodies that break midway and kiln's archive
//! downloads all go through it. The registry client keeps its own loop,
//! which awaits a timer, and asks [`RetryPolicy::wait_after`] between
//! tries. Each caller keeps its own reading of its HTTP library's errors.

use std::hash::{BuildHasher, RandomState};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The longest `Retry-After` kiln waits. A server asking for more gets no
/// further try: failing now says what happened, where sleeping for an hour
/// would look like a hang.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Wait before the second try; doubled for each one after.
    pub first_delay: Duration,
    /// Longest wait the doubling reaches (jitter may add a quarter).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(4),
        }
    }
}

impl RetryPolicy {
    /// How long to wait after try number `attempt` (1 for the first) failed
    /// for a passing reason, given the server's `Retry-After` if it sent
    /// one; `None` when there is no next try: the tries are used up, or the
    /// server asks for longer than [`MAX_RETRY_AFTER`].
    pub fn wait_after(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        if attempt >= self.attempts || retry_after.is_some_and(|after| after > MAX_RETRY_AFTER) {
            return None;
        }
        let doublings = attempt.saturating_sub(1).min(31);
        let scheduled = self
            .first_delay
            .saturating_mul(1 << doublings)
            .min(self.max_delay);
        let wait = scheduled.saturating_add(jitter(scheduled));
        Some(retry_after.map_or(wait, |after| wait.max(after)))
    }
}

/// How one try of [`RetryPolicy::run_blocking`] failed.
#[derive(Debug)]
pub enum Failure<P, F> {
    /// For a reason that may pass: another try may succeed, after at least
    /// the server's `Retry-After` when it sent one.
    Passing {
        /// What went wrong.
        error: P,
        /// The server's `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// For good: no try is made after it.
    Final(F),
}

impl<P, F> Failure<P, F> {
    /// A passing failure without a `Retry-After`.
    pub fn passing(error: P) -> Self {
        Failure::Passing {
            error,
            retry_after: None,
        }
    }
}

/// Why [`RetryPolicy::run_blocking`] stopped without a result.
#[derive(Debug)]
pub enum GaveUp<P, F> {
    /// A try failed for good.
    Final(F),
    /// Every try failed for a passing reason, or the server asked to wait
    /// longer than [`MAX_RETRY_AFTER`]: the last try's error, and how many
    /// tries were made.
    Exhausted {
        /// The last try's error.
        error: P,
        /// Tries made, the first included.
        attempts: u32,
    },
}

impl<P, F> GaveUp<P, F> {
    /// The error to report: a final one as it is, the last passing one
    /// through `exhausted`, given the number of tries.
    pub fn into_error(self, exhausted: impl FnOnce(P, u32) -> F) -> F {
        match self {
            GaveUp::Final(err) => err,
            GaveUp::Exhausted { error, attempts } => exhausted(error, attempts),
        }
    }
}

impl RetryPolicy {
    /// Calls `try_once` until it succeeds, fails for good, or the policy
    /// allows no next try, sleeping the thread in between. `on_retry` hears
    /// each passing failure before its wait, with the try's number and the
    /// wait, for the caller's log line.
    pub fn run_blocking<T, P, F>(
        &self,
        mut try_once: impl FnMut() -> Result<T, Failure<P, F>>,
        mut on_retry: impl FnMut(&P, u32, Duration),
    ) -> Result<T, GaveUp<P, F>> {
        let mut attempt = 1;
        loop {
            let (error, retry_after) = match try_once() {
                Ok(value) => return Ok(value),
                Err(Failure::Final(err)) => return Err(GaveUp::Final(err)),
                Err(Failure::Passing { error, retry_after }) => (error, retry_after),
            };
            let Some(wait) = self.wait_after(attempt, retry_after) else {
                return Err(GaveUp::Exhausted {
                    error,
                    attempts: attempt,
                });
            };
            on_retry(&error, attempt, wait);
            std::thread::sleep(wait);
            attempt += 1;
        }
    }
}

/// Up to a quarter of `scheduled` more, so the parallel downloads that one
/// server hiccup failed together do not all come back at the same instant.
fn jitter(scheduled: Duration) -> Duration {
    // Each RandomState is freshly keyed, which is random enough to spread
    // waits without a random number crate.
    let random = RandomState::new().hash_one(());
    let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
    (scheduled / 4).mul_f64(fraction)
}

/// Whether an HTTP answer with `status` may differ if asked again: 408 (the
/// server gave up waiting for the request), 429 (too many requests) and
/// 5xx. Every other answer, 401, 403 and 404 included, would be the same.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// The wait a `Retry-After` header value asks for at `now`: a number of
/// seconds, or an HTTP date in any of RFC 9110's three forms (a date already
/// past asks for no wait). `None` for anything else, which is then ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits too many for a u64 still ask for a very long wait.
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_secs() as i64,
        Err(before) => -(before.duration().as_secs() as i64),
    };
    let at = http_date(value, now_secs)?;
    let Ok(at) = u64::try_from(at) else {
        return Some(Duration::ZERO);
    };
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(at))?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Seconds since 1970 of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`),
/// RFC 850 date (`Sunday, 06-Nov-94 08:49:37 GMT`) or asctime date
/// (`Sun Nov  6 08:49:37 1994`). `now_secs` places RFC 850's two-digit year.
fn http_date(value: &str, now_secs: i64) -> Option<i64> {
    let tokens: Vec<&str> = value
        .split([' ', ',', '-'])
        .filter(|token| !token.is_empty())
        .collect();
    let (day, month, year, time) = match tokens[..] {
        [_, day, month, year, time, "GMT"] => (day, month, year, time),
        [_, month, day, time, year] => (day, month, year, time),
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| *m == month)? as i64 + 1;
    let day = number(day, 1, 2)?;
    let year = match year.len() {
        4 => number(year, 4, 4)?,
        2 => two_digit_year(number(year, 2, 2)?, now_secs),
        _ => return None,
    };
    let mut clock = time.split(':').map(|part| number(part, 2, 2));
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if clock.next().is_some()
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        // 60 is a leap second.
        || second > 60
    {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// A string of `min..=max` ASCII digits as a number; `u64::from_str` alone
/// would also take a sign.
fn number(text: &str, min: usize, max: usize) -> Option<i64> {
    let fits = (min..=max).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit());
    fits.then(|| text.parse().ok()).flatten()
}

/// RFC 9110: a two-digit year is the one with those digits nearest now,
/// never more than 50 years ahead. The year of `now_secs` is approximate,
/// which cannot matter a lifetime away from the boundary.
fn two_digit_year(two_digits: i64, now_secs: i64) -> i64 {
    let this_year = 1970 + now_secs.div_euclid(31_556_952);
    let year = this_year - this_year.rem_euclid(100) + two_digits;
    if year > this_year + 50 {
        year - 100
    } else if year < this_year - 50 {
        year + 100
    } else {
        year
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1994-11-06 08:49:37 UTC, the date of RFC 9110's examples.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn quick(attempts: u32) -> RetryPolicy {
        RetryPolicy {
            attempts,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    #[test]
    fn the_blocking_loop_retries_passing_failures_until_success() {
        let mut tries = 0;
        let mut heard = Vec::new();
        let result: Result<u32, GaveUp<&str, &str>> = quick(5).run_blocking(
            || {
                tries += 1;
                if tries < 3 {
                    Err(Failure::passing("cut"))
                } else {
                    Ok(tries)
                }
            },
            |error, attempt, _| heard.push((error.to_string(), attempt)),
        );
        assert_eq!(result.unwrap(), 3);
        assert_eq!(heard, vec![("cut".to_string(), 1), ("cut".to_string(), 2)]);
    }

    #[test]
    fn the_blocking_loop_stops_at_a_final_failure_or_when_tries_run_out() {
        let mut tries = 0;
        let result: Result<(), _> = quick(5).run_blocking(
            || {
                tries += 1;
                Err(Failure::<&str, &str>::Final("refused"))
            },
            |_, _, _| {},
        );
        assert!(matches!(result, Err(GaveUp::Final("refused"))));
        assert_eq!(tries, 1);

        let result: Result<(), _> =
            quick(3).run_blocking(|| Err(Failure::<&str, &str>::passing("cut")), |_, _, _| {});
        assert!(matches!(
            result,
            Err(GaveUp::Exhausted {
                error: "cut",
                attempts: 3
            })
        ));
        let too_long = Failure::<&str, &str>::Passing {
            error: "busy",
            retry_after: Some(MAX_RETRY_AFTER * 2),
        };
        let mut once = Some(too_long);
        let result: Result<(), _> =
            quick(3).run_blocking(|| Err(once.take().unwrap()), |_, _, _| {});
        assert!(matches!(result, Err(GaveUp::Exhausted { attempts: 1, .. })));
    }

    #[test]
    fn waits_double_up_to_the_cap_with_at_most_a_quarter_of_jitter() {
        let policy = RetryPolicy::default();
        for (attempt, base_ms) in [(1, 250), (2, 500), (3, 1000), (4, 2000)] {
            let wait = policy.wait_after(attempt, None).unwrap();
            let base = Duration::from_millis(base_ms);
            assert!(
                wait >= base && wait <= base + base / 4,
                "{attempt}: {wait:?}"
            );
        }
        let long = RetryPolicy {
            attempts: u32::MAX,
            ..policy
        };
        for attempt in [6, 40, u32::MAX - 1] {
            let wait = long.wait_after(attempt, None).unwrap();
            assert!(wait >= Duration::from_secs(4) && wait <= Duration::from_secs(5));
        }
    }

    #[test]
    fn the_last_attempt_has_no_next() {
        let policy = RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(policy.wait_after(2, None).is_some());
        assert!(policy.wait_after(3, None).is_none());
        let once = RetryPolicy {
            attempts: 1,
            ..policy
        };
        assert!(once.wait_after(1, None).is_none());
    }

    #[test]
    fn retry_after_lengthens_the_wait_but_too_long_ends_the_tries() {
        let policy = RetryPolicy::default();
        let asked = Duration::from_secs(30);
        assert_eq!(policy.wait_after(1, Some(asked)), Some(asked));
        let short = policy.wait_after(3, Some(Duration::ZERO)).unwrap();
        assert!(short >= Duration::from_secs(1), "{short:?}");
        assert_eq!(
            policy.wait_after(1, Some(MAX_RETRY_AFTER)),
            Some(MAX_RETRY_AFTER)
        );
        assert!(policy.wait_after(1, Some(MAX_RETRY_AFTER * 2)).is_none());
        assert!(policy.wait_after(1, Some(Duration::MAX)).is_none());
    }

    #[test]
    fn huge_settings_saturate_instead_of_overflowing() {
        let policy = RetryPolicy {
            attempts: u32::MAX,
            first_delay: Duration::MAX,
            max_delay: Duration::MAX,
        };
        assert_eq!(policy.wait_after(9, None), Some(Duration::MAX));
    }

    #[test]
    fn passing_answers_retry_and_final_ones_do_not() {
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(is_retryable_status(status), "{status}");
        }
        for status in [200, 304, 400, 401, 403, 404, 410, 418, 499, 600] {
            assert!(!is_retryable_status(status), "{status}");
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        let now = at(EXAMPLE);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::MAX)
        );
    }

    #[test]
    fn retry_after_as_any_of_the_three_http_dates() {
        let now = at(EXAMPLE - 10);
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(10)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", at(EXAMPLE + 5)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 29 Feb 2024 23:59:60 GMT", at(1_709_251_190)),
            Some(Duration::from_secs(10))
        );
    }

    #[test]
    fn two_digit_years_are_never_far_in_the_future() {
        let in_2026 = 1_767_225_600;
        assert_eq!(two_digit_year(94, in_2026), 1994);
        assert_eq!(two_digit_year(30, in_2026), 2030);
        assert_eq!(two_digit_year(76, in_2026), 2076);
        assert_eq!(two_digit_year(77, in_2026), 1977);
    }

    #[test]
    fn hostile_retry_after_values_are_ignored() {
        let now = at(EXAMPLE);
        for value in [
            "",
            "   ",
            "-1",
            "+5",
            "1.5",
            "12abc",
            "soon",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Sun, 06 nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:60:00 GMT",
            "Sun, 06 Nov 1994 8:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37:01 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
            "Sun, 06 Nov 19940 08:49:37 GMT",
            "Sun, 06 Nov 1994 ０8:49:37 GMT",
            "Sun, 006 Nov 1994 08:49:37 GMT",
            "Sun, -06 Nov 1994 08:49:37 GMT, extra",
        ] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }

    #[test]
    fn a_date_before_1970_is_past() {
        assert_eq!(
            parse_retry_after("Fri, 01 Jan 1960 00:00:00 GMT", at(EXAMPLE)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", at(EXAMPLE)),
            Some(Duration::ZERO)
        );
    }
}
