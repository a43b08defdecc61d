//! One retry loop for every call the controller makes on a provider's clock: patches and lists on the API
//! server, the dispatch records, GitHub's `repository_dispatch`. The caller says which errors may go away by
//! themselves and how the waits grow; the loop keeps every try, and every wait, inside the deadline.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How one kind of call is retried.
pub struct Policy<E> {
    /// The wait after the first failed try; each further wait doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// Whether an error may go away by itself (the callee restarting, overloaded, unreachable).
    pub is_transient: fn(&E) -> bool,
    /// The error of a try the deadline cut short.
    pub deadline_exceeded: fn() -> E,
}

/// Runs `attempt` until it succeeds, fails for good, or the wait before another try would reach the deadline
/// (then the last error is returned). Each try is itself bounded by the deadline, so a hung connection
/// cannot hold the provider past it.
pub async fn until<T, E, Fut>(
    deadline: Instant,
    policy: &Policy<E>,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = policy.first_backoff;
    loop {
        let outcome = tokio::time::timeout_at(deadline, attempt())
            .await
            .unwrap_or_else(|_| Err((policy.deadline_exceeded)()));
        match outcome {
            Err(error) if (policy.is_transient)(&error) && Instant::now() + backoff < deadline => {
                tracing::debug!(%error, ?backoff, "transient failure, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(policy.max_backoff);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    /// What one try does.
    #[derive(Clone, Copy, Debug)]
    enum Try {
        Succeed,
        FailTransient,
        FailForGood,
        /// Never answers.
        Hang,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum TestError {
        Transient(usize),
        ForGood(usize),
        Deadline,
    }

    impl Display for TestError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    const POLICY: Policy<TestError> = Policy {
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        is_transient: |e| matches!(e, TestError::Transient(_)),
        deadline_exceeded: || TestError::Deadline,
    };

    struct Case {
        name: &'static str,
        /// What each try does, in turn.
        tries: &'static [Try],
        /// Tries are numbered from 0: the result names the one it came from.
        result: Result<usize, TestError>,
        tries_made: usize,
        /// Time from the first try to the result, on a deadline of 1 s.
        time_ms: u64,
    }

    /// The clock is tokio's paused one, so waits take no real time and are exact.
    #[tokio::test(start_paused = true)]
    async fn retries_transient_failures_with_growing_waits_inside_the_deadline() {
        use Try::*;
        let cases = [
            Case {
                name: "success at once",
                tries: &[Succeed],
                result: Ok(0),
                tries_made: 1,
                time_ms: 0,
            },
            Case {
                name: "transient failures, then success: waits of 100 and 200 ms",
                tries: &[FailTransient, FailTransient, Succeed],
                result: Ok(2),
                tries_made: 3,
                time_ms: 300,
            },
            Case {
                name: "a failure for good is not retried",
                tries: &[FailForGood, Succeed],
                result: Err(TestError::ForGood(0)),
                tries_made: 1,
                time_ms: 0,
            },
            Case {
                name: "transient until the deadline: waits of 100, 200, 400 ms, then 400 would reach it",
                tries: &[FailTransient; 10],
                result: Err(TestError::Transient(3)),
                tries_made: 4,
                time_ms: 700,
            },
            Case {
                name: "a hung try is cut at the deadline",
                tries: &[Hang, Succeed],
                result: Err(TestError::Deadline),
                tries_made: 1,
                time_ms: 1000,
            },
            Case {
                name: "a try hung after a failure is cut at the deadline too",
                tries: &[FailTransient, Hang],
                result: Err(TestError::Deadline),
                tries_made: 2,
                time_ms: 1000,
            },
        ];
        for case in cases {
            let name = case.name;
            let made = Cell::new(0);
            let started = Instant::now();
            let result = until(started + Duration::from_secs(1), &POLICY, || {
                let n = made.replace(made.get() + 1);
                async move {
                    match case.tries[n] {
                        Succeed => Ok(n),
                        FailTransient => Err(TestError::Transient(n)),
                        FailForGood => Err(TestError::ForGood(n)),
                        Hang => std::future::pending().await,
                    }
                }
            })
            .await;
            assert_eq!(result, case.result, "{name}");
            assert_eq!(made.get(), case.tries_made, "{name}: tries");
            let time = Duration::from_millis(case.time_ms);
            assert_eq!(started.elapsed(), time, "{name}: time");
        }
    }
}
