//! The status of hookgate's Receivers: `observedGeneration`, `webhookPath`, `url`, the `Ready` condition
//! and `proxies`, written (a merge patch of the status subresource) only when it changed, at least every
//! [`INTERVAL`] so that `NotServed` becomes `Served` as proxies apply the configuration; an Event on every
//! change of the Ready condition's status or reason. Of several replicas, only the one holding the status
//! Lease ([`super::leader`]) writes. hookgate never writes the status of Flux's objects, nor records
//! Events on them: they are only counted in the receivers gauge (and logged by the index).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use hookgate_protocol::channel::Known;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector::Store;
use kube::{Client, Resource};
use serde_json::json;
use tokio::sync::watch;

use super::compile::{key_of, Key, Kind, NotReady, Reason};
use super::crd::{Condition, Proxies, Receiver, ReceiverStatus};
use super::index::{Outcome, Outcomes};
use super::leader::Leadership;
use super::proxies::{counts, ProxyBook};
use crate::metrics::Metrics;

/// How often the status is evaluated again without a new compile (proxies applying it).
pub const INTERVAL: Duration = Duration::from_secs(2);
/// The condition this writes.
pub const READY: &str = "Ready";
const FIELD_MANAGER: &str = "hookgate-controller";
/// Status patches in flight at once.
const CONCURRENCY: usize = 8;

/// What a receiver's status is computed from besides its object and outcome.
pub struct Context<'a> {
    pub proxies: Proxies,
    /// `--webhook-base-url`.
    pub base_url: Option<&'a str>,
    /// RFC 3339, for a condition whose status changes.
    pub now: &'a str,
}

/// The status `object` should have for `outcome`.
pub fn desired(object: &Receiver, outcome: &Outcome, context: &Context) -> ReceiverStatus {
    let generation = object.metadata.generation;
    let (status, reason, message, path, proxies) = match outcome {
        // No path: a refused receiver answers on none (and a conflicting one's path is another's).
        Outcome::Refused(NotReady { reason, message }) => (
            "False",
            *reason,
            message.clone(),
            None,
            Proxies {
                serving: 0,
                seen: context.proxies.seen,
            },
        ),
        Outcome::Included(served) => {
            let proxies = context.proxies;
            let (status, reason, mut message) = if proxies.serving > 0 {
                let message = format!(
                    "served by {} of the {} proxies seen in the last minute",
                    proxies.serving, proxies.seen
                );
                ("True", Reason::Served, message)
            } else {
                let message = format!(
                    "in the configuration since generation {}; no proxy has applied it yet ({} seen in \
                     the last minute)",
                    served.since, proxies.seen
                );
                ("False", Reason::NotServed, message)
            };
            if !served.missing_keys.is_empty() {
                let secret = object
                    .spec
                    .secret_ref
                    .as_ref()
                    .map_or("", |r| r.name.as_str());
                message.push_str(&format!(
                    "; Secret {secret} lacks the keys {} (skipped)",
                    served.missing_keys.join(", ")
                ));
            }
            if served.suspended {
                message.push_str("; suspended: every delivery is refused");
            }
            (
                status,
                reason,
                message,
                served.paths.first().cloned(),
                proxies,
            )
        }
    };
    let previous = ready_condition(object);
    let last_transition_time = match previous {
        Some(condition) if condition.status == status => condition.last_transition_time.clone(),
        _ => context.now.to_string(),
    };
    let url = context
        .base_url
        .zip(path.as_deref())
        .map(|(base, path)| format!("{}{path}", base.trim_end_matches('/')));
    ReceiverStatus {
        observed_generation: generation,
        webhook_path: path,
        url,
        conditions: vec![Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.as_str().into(),
            message,
            last_transition_time,
            observed_generation: generation,
        }],
        proxies: Some(proxies),
    }
}

/// The object's Ready condition, as last written.
pub fn ready_condition(object: &Receiver) -> Option<&Condition> {
    object
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
}

/// The Event for a change of the Ready condition from `before` to `after`, if it changed status or
/// reason.
pub fn transition(before: Option<&Condition>, after: &Condition) -> Option<Event> {
    if before.is_some_and(|b| b.status == after.status && b.reason == after.reason) {
        return None;
    }
    let warning = after.status != "True" && after.reason != Reason::NotServed.as_str();
    Some(Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: after.reason.clone(),
        note: Some(after.message.chars().take(1000).collect()),
        action: "Compile".into(),
        secondary: None,
    })
}

/// Writes the Receivers' status from the compile outcomes and the proxies' requests.
pub struct StatusWriter {
    pub client: Client,
    pub stores: Vec<Store<Receiver>>,
    pub outcomes: watch::Receiver<Arc<Outcomes>>,
    pub proxies: Arc<ProxyBook>,
    pub base_url: Option<String>,
    pub recorder: Recorder,
    pub leadership: Leadership,
    pub metrics: Arc<Metrics>,
}

impl StatusWriter {
    pub async fn run(mut self) {
        let mut interval = tokio::time::interval(INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The resourceVersion each status was written over, and the status (see `as_written`).
        let mut written: HashMap<Key, (Option<String>, ReceiverStatus)> = HashMap::new();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                changed = self.outcomes.changed() => if changed.is_err() { return },
            }
            let outcomes = self.outcomes.borrow_and_update().clone();
            let leading = self.leadership.leading().await;
            if !leading {
                // Another replica writes; what it wrote is what this one would compare with next.
                written.clear();
            }
            if outcomes.compiled {
                self.write_all(&outcomes, &mut written, leading).await;
            }
        }
    }

    /// Computes every receiver's status (and the receivers gauge); writes the ones that changed when
    /// `leading`.
    async fn write_all(
        &self,
        outcomes: &Outcomes,
        written: &mut HashMap<Key, (Option<String>, ReceiverStatus)>,
        leading: bool,
    ) {
        let recent = self.proxies.recent(Instant::now());
        self.metrics
            .configuration_proxies
            .set(i64::try_from(recent.len()).unwrap_or(i64::MAX));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut by_reason: HashMap<(Kind, bool, Reason), i64> = HashMap::new();
        let mut changes = Vec::new();
        for object in self.stores.iter().flat_map(Store::state) {
            let key = key_of(&object);
            let Some(outcome) = outcomes.receivers.get(&key) else {
                continue; // created after the last compile: the next one covers it
            };
            let object = as_written(object, written.get(&key));
            let proxies = match outcome {
                Outcome::Included(served) => counts(&recent, served.since, &outcomes.digest),
                Outcome::Refused(_) => counts(&recent, u64::MAX, ""),
            };
            let context = Context {
                proxies,
                base_url: self.base_url.as_deref(),
                now: &now,
            };
            let status = desired(&object, outcome, &context);
            let ready = status.conditions[0].status == "True";
            *by_reason
                .entry((Kind::Hookgate, ready, reason_of(&status)))
                .or_default() += 1;
            if leading && object.status.as_ref() != Some(&status) {
                let version = object.metadata.resource_version.clone();
                written.insert(key.clone(), (version, status.clone()));
                changes.push((key, object, status));
            }
        }
        for outcome in outcomes.flux.values() {
            let (ready, reason) = flux_readiness(outcome, &recent, &outcomes.digest);
            *by_reason.entry((Kind::Flux, ready, reason)).or_default() += 1;
        }
        self.metrics.set_receivers(&by_reason);
        written.retain(|key, _| outcomes.receivers.contains_key(key));
        let failed: Vec<Key> = stream::iter(changes)
            .map(|(key, object, status)| async move {
                (!self.write(object, status).await).then_some(key)
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await;
        // Compared with what the object says again next time, and written again.
        for key in failed {
            written.remove(&key);
        }
    }

    /// Writes `status` and records the Event of its Ready transition; false when the write failed.
    async fn write(&self, object: Arc<Receiver>, status: ReceiverStatus) -> bool {
        let (namespace, name) = key_of(&object);
        let api: Api<Receiver> = Api::namespaced(self.client.clone(), &namespace);
        let patch = Patch::Merge(json!({ "status": status }));
        let params = PatchParams::apply(FIELD_MANAGER);
        if let Err(error) = api.patch_status(&name, &params, &patch).await {
            tracing::warn!(%error, receiver = %object.label(), "cannot write the receiver's status");
            return false;
        }
        let after = &status.conditions[0];
        if let Some(event) = transition(ready_condition(&object), after) {
            let reference = object.object_ref(&());
            if let Err(error) = self.recorder.publish(&event, &reference).await {
                tracing::warn!(%error, receiver = %object.label(), "cannot record an event");
            }
        }
        true
    }
}

/// The object as this writer last wrote it: while the watch has not brought back the written object
/// (its resourceVersion is still the one the status was written over), the written status stands for its
/// status, so that nothing is written twice and no transition is recorded twice.
fn as_written(
    object: Arc<Receiver>,
    written: Option<&(Option<String>, ReceiverStatus)>,
) -> Arc<Receiver> {
    match written {
        Some((version, status)) if *version == object.metadata.resource_version => {
            let mut object = (*object).clone();
            object.status = Some(status.clone());
            Arc::new(object)
        }
        _ => object,
    }
}

/// Whether a Flux Receiver is ready, and the reason, as a hookgate Receiver's `Ready` condition would say
/// them: served once a proxy has applied it.
fn flux_readiness(outcome: &Outcome, recent: &[Known], digest: &str) -> (bool, Reason) {
    match outcome {
        Outcome::Refused(not_ready) => (false, not_ready.reason),
        Outcome::Included(served) if counts(recent, served.since, digest).serving > 0 => {
            (true, Reason::Served)
        }
        Outcome::Included(_) => (false, Reason::NotServed),
    }
}

fn reason_of(status: &ReceiverStatus) -> Reason {
    let reason = status.conditions.first().map_or("", |c| c.reason.as_str());
    Reason::ALL
        .into_iter()
        .find(|r| r.as_str() == reason)
        .unwrap_or(Reason::InvalidSpec)
}

#[cfg(test)]
mod tests {
    use super::super::index::Served;
    use super::*;
    use kube::api::ObjectMeta;

    const NOW: &str = "2030-01-01T00:00:00Z";
    const EARLIER: &str = "2029-12-31T23:00:00Z";

    fn object(path: Option<&str>, status: Option<ReceiverStatus>) -> Receiver {
        let mut spec: super::super::crd::ReceiverSpec = serde_json::from_value(json!({
            "type": "github", "secretRef": {"name": "webhook-token", "keys": ["token", "next"]},
            "targets": [{"kind": "GitRepository", "name": "app"}]}))
        .unwrap();
        spec.path = path.map(str::to_string);
        Receiver {
            metadata: ObjectMeta {
                name: Some("app".into()),
                namespace: Some("tenant".into()),
                generation: Some(3),
                ..ObjectMeta::default()
            },
            spec,
            status,
        }
    }

    fn served(missing: &[&str]) -> Outcome {
        Outcome::Included(Served {
            paths: vec!["/hook/abc".into(), "/hook/def".into()],
            since: 1_700_000_000_000,
            missing_keys: missing.iter().map(|k| k.to_string()).collect(),
            suspended: false,
        })
    }

    fn context(serving: u32, seen: u32, base_url: Option<&str>) -> Context<'_> {
        Context {
            proxies: Proxies { serving, seen },
            base_url,
            now: NOW,
        }
    }

    #[test]
    fn the_status_says_where_and_whether_it_is_served() {
        let status = desired(
            &object(None, None),
            &served(&[]),
            &context(2, 3, Some("https://hooks.example.com/")),
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(status.webhook_path.as_deref(), Some("/hook/abc"));
        assert_eq!(
            status.url.as_deref(),
            Some("https://hooks.example.com/hook/abc")
        );
        assert_eq!(
            status.proxies,
            Some(Proxies {
                serving: 2,
                seen: 3
            })
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.type_.as_str(),
                ready.status.as_str(),
                ready.reason.as_str()
            ),
            ("Ready", "True", "Served")
        );
        assert_eq!(
            ready.message,
            "served by 2 of the 3 proxies seen in the last minute"
        );
        assert_eq!(
            (
                ready.last_transition_time.as_str(),
                ready.observed_generation
            ),
            (NOW, Some(3))
        );

        let status = desired(
            &object(None, None),
            &served(&["next"]),
            &context(0, 3, None),
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "NotServed")
        );
        assert!(
            ready
                .message
                .ends_with("; Secret webhook-token lacks the keys next (skipped)"),
            "{}",
            ready.message
        );
        assert_eq!(status.url, None);
    }

    #[test]
    fn a_refused_receiver_says_why_and_has_no_path() {
        let refused = Outcome::Refused(NotReady {
            reason: Reason::SecretNotFound,
            message: "Secret webhook-token not found in namespace tenant".into(),
        });
        let status = desired(
            &object(Some("/hook/pinned"), None),
            &refused,
            &context(5, 5, Some("https://hooks.example.com")),
        );
        assert_eq!((status.webhook_path, status.url), (None, None));
        assert_eq!(
            status.proxies,
            Some(Proxies {
                serving: 0,
                seen: 5
            })
        );
        let ready = &status.conditions[0];
        assert_eq!(
            (
                ready.status.as_str(),
                ready.reason.as_str(),
                ready.message.as_str()
            ),
            (
                "False",
                "SecretNotFound",
                "Secret webhook-token not found in namespace tenant"
            )
        );
    }

    /// The transition time moves only when the condition's status does, and an Event is recorded when the
    /// status or the reason changes.
    #[test]
    fn transitions() {
        let before = desired(&object(None, None), &served(&[]), &context(0, 1, None));
        let mut earlier = before.clone();
        earlier.conditions[0].last_transition_time = EARLIER.into();
        let written = object(None, Some(earlier));
        let still_not_served = desired(&written, &served(&[]), &context(0, 2, None));
        assert_eq!(still_not_served.conditions[0].last_transition_time, EARLIER);
        assert!(transition(ready_condition(&written), &still_not_served.conditions[0]).is_none());

        let now_served = desired(&written, &served(&[]), &context(1, 2, None));
        assert_eq!(now_served.conditions[0].last_transition_time, NOW);
        let event = transition(ready_condition(&written), &now_served.conditions[0]).unwrap();
        assert_eq!(
            (event.type_, event.reason.as_str()),
            (EventType::Normal, "Served")
        );

        let refused = Outcome::Refused(NotReady {
            reason: Reason::InvalidSpec,
            message: "spec.targets[0].name: name must be an object name".into(),
        });
        let invalid = desired(&written, &refused, &context(1, 2, None));
        assert_eq!(
            invalid.conditions[0].last_transition_time, EARLIER,
            "still False"
        );
        let event = transition(ready_condition(&written), &invalid.conditions[0]).unwrap();
        assert_eq!(
            (event.type_, event.reason.as_str()),
            (EventType::Warning, "InvalidSpec")
        );

        let first = transition(None, &before.conditions[0]).unwrap();
        assert_eq!(
            (first.type_, first.reason.as_str()),
            (EventType::Normal, "NotServed")
        );
    }

    /// A Flux Receiver is counted as a hookgate one would be: refused with its reason, served once a proxy
    /// applied it.
    #[test]
    fn flux_receivers_are_counted_by_readiness() {
        let served_since = |since| {
            Outcome::Included(Served {
                paths: vec!["/hook/abc".into()],
                since,
                missing_keys: Vec::new(),
                suspended: false,
            })
        };
        let proxy = |generation| Known {
            generation,
            digest: Some(format!("d{generation}")),
        };
        let refused = Outcome::Refused(NotReady {
            reason: Reason::UnsupportedType,
            message: "type `gcr` proves with an ID token".into(),
        });
        let cases = [
            (
                "refused",
                refused,
                vec![proxy(5)],
                (false, Reason::UnsupportedType),
            ),
            (
                "no proxy",
                served_since(5),
                vec![],
                (false, Reason::NotServed),
            ),
            (
                "a proxy behind",
                served_since(5),
                vec![proxy(4)],
                (false, Reason::NotServed),
            ),
            (
                "a proxy serving it",
                served_since(5),
                vec![proxy(4), proxy(6)],
                (true, Reason::Served),
            ),
        ];
        for (case, outcome, recent, expected) in cases {
            assert_eq!(flux_readiness(&outcome, &recent, "d9"), expected, "{case}");
        }
    }

    /// Until the watch brings back the object written, the written status stands for its status.
    #[test]
    fn the_written_status_stands_until_the_watch_brings_it_back() {
        let mut stale = object(None, None);
        stale.metadata.resource_version = Some("1".into());
        let stale = Arc::new(stale);
        let written = desired(&stale, &served(&[]), &context(1, 1, None));
        let entry = (Some("1".to_string()), written.clone());
        assert_eq!(
            as_written(stale.clone(), Some(&entry)).status.as_ref(),
            Some(&written)
        );
        let mut fresh = (*stale).clone();
        fresh.metadata.resource_version = Some("2".into());
        assert_eq!(as_written(Arc::new(fresh), Some(&entry)).status, None);
        assert_eq!(as_written(stale, None).status, None);
    }
}
