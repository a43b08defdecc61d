//! Which replica writes the Receivers' status: the one holding the Lease [`LEASE_NAME`] in the controller's
//! own namespace. Every replica compiles and serves; but each counts only the proxies that asked it, so two
//! replicas writing status would undo each other's counts (and record an Event each time). The holder
//! renews the Lease every [`RENEW`]; another replica takes it over once it has not been renewed for
//! [`DURATION`].

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use kube::Client;

/// The Lease the status writer holds.
pub const LEASE_NAME: &str = "hookgate-controller-status";
/// How long a Lease not renewed stays held.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews it (and the others look whether it expired).
pub const RENEW: Duration = Duration::from_secs(5);

/// What to do about the Lease as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// This replica holds it: renew.
    Renew,
    /// Nobody holds it, or its holder stopped renewing it: take it.
    TakeOver,
    /// Another replica holds it.
    HeldByAnother,
}

/// What `identity` does about `lease` at `now`.
pub fn decide(lease: &Lease, identity: &str, now: Timestamp) -> Decision {
    let Some(spec) = &lease.spec else {
        return Decision::TakeOver;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::TakeOver,
        Some(_) => {
            let expires = spec.renew_time.as_ref().and_then(|renewed| {
                let seconds = spec.lease_duration_seconds?;
                renewed
                    .0
                    .checked_add(SignedDuration::from_secs(seconds.into()))
                    .ok()
            });
            match expires {
                Some(expires) if expires > now => Decision::HeldByAnother,
                _ => Decision::TakeOver,
            }
        }
    }
}

/// `lease` held by `identity` as of `now` (a take-over counts a transition).
pub fn held(mut lease: Lease, identity: &str, now: Timestamp, decision: Decision) -> Lease {
    let mut spec = lease.spec.take().unwrap_or_default();
    if decision == Decision::TakeOver {
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.holder_identity = Some(identity.to_string());
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(i32::try_from(DURATION.as_secs()).unwrap_or(i32::MAX));
    lease.spec = Some(spec);
    lease
}

/// `lease` let go by `identity` (unchanged when another holds it): the next replica to look takes it over.
pub fn released(mut lease: Lease, identity: &str) -> Option<Lease> {
    let spec = lease.spec.as_mut()?;
    if spec.holder_identity.as_deref() != Some(identity) {
        return None;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    Some(lease)
}

/// Lets the Lease go when this replica stops, so that another writes status at once rather than after
/// [`DURATION`] (a rolling update, a restart).
#[derive(Clone)]
pub struct Release {
    api: Api<Lease>,
    identity: String,
}

impl Release {
    pub async fn release(&self) {
        let lease = match self.api.get_opt(LEASE_NAME).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot read the Lease of the receivers' status writer to let it go");
                return;
            }
        };
        let Some(lease) = released(lease, &self.identity) else {
            return;
        };
        // Replaced at the resourceVersion read: a replica that took it over meanwhile keeps it.
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                tracing::info!(identity = %self.identity, "receivers' status writer let its Lease go")
            }
            Err(error) => {
                tracing::warn!(%error, "cannot let the Lease of the receivers' status writer go")
            }
        }
    }
}

/// This replica's part in the election.
pub struct Leadership {
    api: Api<Lease>,
    identity: String,
    last_attempt: Option<Instant>,
    leading: bool,
}

impl Leadership {
    pub fn new(client: Client, namespace: &str, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            identity,
            last_attempt: None,
            leading: false,
        }
    }

    /// What lets the Lease go at shutdown.
    pub fn release(&self) -> Release {
        Release {
            api: self.api.clone(),
            identity: self.identity.clone(),
        }
    }

    /// Whether this replica writes status now; the Lease is asked about at most every [`RENEW`].
    pub async fn leading(&mut self) -> bool {
        let now = Instant::now();
        if self
            .last_attempt
            .is_some_and(|last| now.duration_since(last) < RENEW)
        {
            return self.leading;
        }
        self.last_attempt = Some(now);
        let leading = self.try_hold().await;
        if leading != self.leading {
            tracing::info!(
                identity = %self.identity,
                leading,
                "receivers' status writer {}",
                if leading { "elected" } else { "stepped down" }
            );
        }
        self.leading = leading;
        leading
    }

    async fn try_hold(&self) -> bool {
        let now = timestamp();
        let result = match self.api.get_opt(LEASE_NAME).await {
            Ok(None) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(LEASE_NAME.into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec::default()),
                };
                let lease = held(lease, &self.identity, now, Decision::TakeOver);
                self.api.create(&PostParams::default(), &lease).await
            }
            Ok(Some(lease)) => match decide(&lease, &self.identity, now) {
                Decision::HeldByAnother => return false,
                decision => {
                    // Replaced at the resourceVersion read: of two replicas taking over, one wins.
                    let lease = held(lease, &self.identity, now, decision);
                    self.api
                        .replace(LEASE_NAME, &PostParams::default(), &lease)
                        .await
                }
            },
            Err(error) => Err(error),
        };
        match result {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if status.code == 409 => false,
            Err(error) => {
                tracing::warn!(%error, "cannot hold the Lease of the receivers' status writer");
                false
            }
        }
    }
}

fn timestamp() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    fn lease(holder: Option<&str>, renewed: Option<i64>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed.map(|s| MicroTime(at(s))),
                lease_duration_seconds: Some(15),
                lease_transitions: Some(2),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn a_lease_is_renewed_by_its_holder_and_taken_once_expired() {
        let cases = [
            (
                "held by this replica",
                lease(Some("a"), Some(0)),
                5,
                Decision::Renew,
            ),
            (
                "held by another",
                lease(Some("b"), Some(0)),
                14,
                Decision::HeldByAnother,
            ),
            ("expired", lease(Some("b"), Some(0)), 15, Decision::TakeOver),
            (
                "never renewed",
                lease(Some("b"), None),
                0,
                Decision::TakeOver,
            ),
            ("released", lease(None, Some(0)), 0, Decision::TakeOver),
            (
                "no spec",
                Lease {
                    spec: None,
                    ..lease(None, None)
                },
                0,
                Decision::TakeOver,
            ),
        ];
        for (case, lease, now, expected) in cases {
            assert_eq!(decide(&lease, "a", at(now)), expected, "{case}");
        }
    }

    #[test]
    fn holding_renews_and_a_take_over_counts() {
        let renewed = held(lease(Some("a"), Some(0)), "a", at(5), Decision::Renew);
        let spec = renewed.spec.unwrap();
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!((spec.lease_transitions, spec.acquire_time), (Some(2), None));

        let taken = held(lease(Some("b"), Some(0)), "a", at(20), Decision::TakeOver);
        let spec = taken.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("a"));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(20))));
        assert_eq!(spec.lease_transitions, Some(3));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }

    #[test]
    fn only_the_holder_lets_the_lease_go_and_another_takes_it_at_once() {
        let let_go = released(lease(Some("a"), Some(0)), "a").unwrap();
        assert_eq!(decide(&let_go, "b", at(1)), Decision::TakeOver);
        assert!(released(lease(Some("b"), Some(0)), "a").is_none());
        assert!(released(lease(None, None), "a").is_none());
    }
}
