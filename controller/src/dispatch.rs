//! The `dispatch` action: a GitHub `repository_dispatch` for an Argo CD application that turned Degraded,
//! so a workflow can roll the Git change back. Argo CD retries notifications, so the same (repository,
//! event type, application, failed revision) dispatches once within a window, whichever replica gets it.
//!
//! The record of a dispatch lives in the Kubernetes API, which every replica shares: one
//! `coordination.k8s.io/v1` Lease per dispatch key in the controller's own namespace, named
//! `hookgate-dispatch-<sha256 of the key>`. A replica that creates it (`create`: exactly one of N concurrent
//! replicas succeeds, the others get 409) sends the dispatch; the Lease says `sending` for the send's
//! deadline plus a margin, then `sent` for the dedup window, each measured from its `renewTime`. A record
//! whose time is up is taken over with `update` on the resourceVersion read (a conflict means another
//! replica took it). If the dispatch fails, the replica deletes its record (only that version of it) so
//! a redelivery can try again; if even that fails, the `sending` record expires by itself. After each
//! successful dispatch, expired records are deleted, so the records are bounded by the window. Nothing is
//! kept in memory between requests. Replicas compare `renewTime` with their own clocks, which must agree
//! within [`SENDING_MARGIN`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hookgate_protocol::crypto::sha256_hex;
use hookgate_protocol::dispatch::DispatchRequest;
use http::StatusCode;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::Client;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::reconcile::{is_transient, API_RETRY};
use crate::retry::{self, Policy};

/// Names of dispatch records: this prefix and the hex SHA-256 of the dispatch key.
pub const RECORD_PREFIX: &str = "hookgate-dispatch-";
/// The label every dispatch record carries (`hookgate.io/record=dispatch`), so expired ones can be found.
pub const RECORD_LABEL: (&str, &str) = ("hookgate.io/record", "dispatch");
/// The record's state: [`SENDING`] or [`SENT`].
pub const STATE_ANNOTATION: &str = "hookgate.io/dispatch";
pub const SENDING: &str = "sending";
pub const SENT: &str = "sent";
/// How long a `sending` record outlives the send's deadline: room for clocks that differ between replicas
/// and for the API calls around the send.
pub const SENDING_MARGIN: Duration = Duration::from_secs(5);
/// Time allowed for marking a record sent or deleting it, after the send.
const RECORD_BUDGET: Duration = Duration::from_secs(2);
/// Tries to take a record that other replicas keep changing before answering `in_progress`.
const TAKE_ATTEMPTS: usize = 3;

#[derive(Clone, Debug)]
pub struct DispatchSettings {
    /// `https://api.github.com`, or a GitHub Enterprise API base such as `https://github.example.com/api/v3`.
    pub api_url: String,
    /// A file holding the GitHub token (a mounted Secret); read on every dispatch so a rotated Secret is
    /// picked up without a restart.
    pub token_file: Option<PathBuf>,
    pub dedup_window: Duration,
    pub deadline: Duration,
    /// Where the dispatch records (Leases) are kept: the controller's own namespace, shared by its replicas.
    pub namespace: String,
    /// This replica's name (its pod's), written as the records' `holderIdentity`.
    pub identity: String,
}

pub struct Dispatcher {
    settings: DispatchSettings,
    http: reqwest::Client,
    records: Api<Lease>,
    /// Numbers this replica's attempts, so each holds a record under an identity of its own.
    attempts: AtomicU64,
}

/// What a dispatch request came to: the reply's status and the request metric's `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Sent within the window, by this replica or another.
    Deduplicated,
    /// Another replica is sending it now.
    InProgress,
    /// The request itself is malformed.
    Invalid,
    /// No usable GitHub token, or the record cannot be written.
    Error,
    /// GitHub refused it (4xx): not retried.
    RefusedByGithub,
    /// GitHub or the record stayed unavailable until the deadline.
    Unavailable,
}

impl Outcome {
    pub fn status(self) -> StatusCode {
        match self {
            Self::Sent | Self::Deduplicated => StatusCode::OK,
            Self::InProgress => StatusCode::ACCEPTED,
            Self::Invalid => StatusCode::BAD_REQUEST,
            Self::Error => StatusCode::INTERNAL_SERVER_ERROR,
            Self::RefusedByGithub => StatusCode::BAD_GATEWAY,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn metric_label(self) -> &'static str {
        match self {
            Self::Sent => "dispatch_sent",
            Self::Deduplicated => "dispatch_deduplicated",
            Self::InProgress => "dispatch_in_progress",
            Self::Invalid | Self::Error => "dispatch_error",
            Self::RefusedByGithub => "dispatch_refused_by_github",
            Self::Unavailable => "dispatch_unavailable",
        }
    }

    /// The metric label without its prefix: the reply's `dispatch` for a dispatch sent or on its way (`sent`,
    /// `deduplicated`, `in_progress`), and the `outcome` of `hookgate_dispatches_total`.
    pub fn code(self) -> &'static str {
        self.metric_label().trim_start_matches("dispatch_")
    }
}

/// The controller's answer to a dispatch request.
pub struct DispatchAnswer {
    pub outcome: Outcome,
    pub body: Value,
}

impl DispatchAnswer {
    /// A dispatch sent, or that will be: what it is.
    fn of(outcome: Outcome, request: &DispatchRequest) -> Self {
        let body = json!({
            "dispatch": outcome.code(),
            "repository": request.repository,
            "eventType": request.event_type,
            "application": request.application,
            "failedRevision": request.failed_revision,
            "healthyRevision": request.healthy_revision,
        });
        Self { outcome, body }
    }

    /// A dispatch not sent: why, in words fit for the sender (no API server message, no token).
    fn not_sent(outcome: Outcome, message: impl std::fmt::Display) -> Self {
        let body = json!({ "error": message.to_string() });
        Self { outcome, body }
    }
}

/// What the record of a dispatch says when a replica tries to take it.
enum Record {
    /// This attempt holds it: send.
    Held(Box<Lease>),
    /// Another replica is sending this dispatch now.
    Sending,
    /// Sent within the window.
    Sent,
}

impl Dispatcher {
    pub fn new(client: Client, settings: DispatchSettings) -> Result<Self, reqwest::Error> {
        // reqwest is built without a TLS provider of its own: use ring, as kube does (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let records = Api::namespaced(client, &settings.namespace);
        Ok(Self {
            settings,
            http,
            records,
            attempts: AtomicU64::new(0),
        })
    }

    pub async fn dispatch(&self, request: &DispatchRequest) -> DispatchAnswer {
        if let Err(reason) = request.validate() {
            return DispatchAnswer::not_sent(Outcome::Invalid, reason);
        }
        let token = match self.token() {
            Ok(token) => token,
            Err(reason) => return DispatchAnswer::not_sent(Outcome::Error, reason),
        };
        let deadline = Instant::now() + self.settings.deadline;
        let name = record_name(request);
        let held = match self.take(&name, request, deadline).await {
            Ok(Record::Held(lease)) => *lease,
            Ok(Record::Sent) => return DispatchAnswer::of(Outcome::Deduplicated, request),
            Ok(Record::Sending) => return DispatchAnswer::of(Outcome::InProgress, request),
            Err(error) => {
                // The API server's message stays in this log; the sender learns only that it failed.
                tracing::warn!(%error, record = %name, namespace = %self.settings.namespace,
                    "cannot record the dispatch; not sent");
                return if is_transient(&error) {
                    DispatchAnswer::not_sent(
                        Outcome::Unavailable,
                        "the dispatch record is unavailable; not sent",
                    )
                } else {
                    DispatchAnswer::not_sent(
                        Outcome::Error,
                        "the dispatch cannot be recorded; not sent",
                    )
                };
            }
        };
        match self.send(request, &token, deadline).await {
            Ok(()) => {
                self.mark_sent(held).await;
                self.sweep();
                DispatchAnswer::of(Outcome::Sent, request)
            }
            Err(failure) => {
                // Not sent: a redelivery may try again.
                self.release(held).await;
                DispatchAnswer::not_sent(failure.outcome(), failure)
            }
        }
    }

    /// Takes the record `name` for this attempt: creates it, or takes it over once its time is up.
    async fn take(
        &self,
        name: &str,
        request: &DispatchRequest,
        deadline: Instant,
    ) -> Result<Record, kube::Error> {
        let holder = format!(
            "{}/{}-{}",
            self.settings.identity,
            std::process::id(),
            self.attempts.fetch_add(1, Ordering::Relaxed)
        );
        let post = PostParams::default();
        for _ in 0..TAKE_ATTEMPTS {
            let fresh = self.sending_record(name, request, &holder, now());
            match retry::until(deadline, &API_RETRY, || self.records.create(&post, &fresh)).await {
                Ok(lease) => return Ok(Record::Held(Box::new(lease))),
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error),
            }
            let Some(existing) =
                retry::until(deadline, &API_RETRY, || self.records.get_opt(name)).await?
            else {
                continue; // deleted since: create again
            };
            let spec = existing.spec.clone().unwrap_or_default();
            if spec.holder_identity.as_deref() == Some(holder.as_str()) {
                // A retried create whose first try went through.
                return Ok(Record::Held(Box::new(existing)));
            }
            let now = now();
            if expires_at(&existing).is_some_and(|at| now < at) {
                return Ok(if state(&existing) == Some(SENT) {
                    Record::Sent
                } else {
                    Record::Sending
                });
            }
            // Its time is up: take it over, unless another replica changed it since it was read.
            let mut takeover = self.sending_record(name, request, &holder, now);
            takeover.metadata.resource_version = existing.metadata.resource_version.clone();
            if let Some(spec) = takeover.spec.as_mut() {
                spec.lease_transitions = Some(
                    existing
                        .spec
                        .as_ref()
                        .and_then(|s| s.lease_transitions)
                        .unwrap_or(0)
                        .saturating_add(1),
                );
            }
            match retry::until(deadline, &API_RETRY, || {
                self.records.replace(name, &post, &takeover)
            })
            .await
            {
                Ok(lease) => return Ok(Record::Held(Box::new(lease))),
                Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {}
                Err(error) => return Err(error),
            }
        }
        // Other replicas keep taking it: one of them is sending.
        Ok(Record::Sending)
    }

    /// A record held by `holder`, sending since `now`.
    fn sending_record(
        &self,
        name: &str,
        request: &DispatchRequest,
        holder: &str,
        now: Timestamp,
    ) -> Lease {
        let annotations = [
            (STATE_ANNOTATION, SENDING),
            ("hookgate.io/repository", request.repository.as_str()),
            ("hookgate.io/event-type", request.event_type.as_str()),
            ("hookgate.io/application", request.application.as_str()),
            (
                "hookgate.io/failed-revision",
                request.failed_revision.as_str(),
            ),
        ];
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(
                    [
                        (RECORD_LABEL.0.to_string(), RECORD_LABEL.1.to_string()),
                        ("app.kubernetes.io/managed-by".into(), "hookgate".into()),
                    ]
                    .into(),
                ),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                acquire_time: Some(MicroTime(now)),
                renew_time: Some(MicroTime(now)),
                lease_duration_seconds: Some(seconds(self.settings.deadline + SENDING_MARGIN)),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Marks a held record sent: the dedup window starts now. If that fails, the record still says
    /// `sending` and expires after the deadline and margin; a redelivery after that would dispatch again.
    async fn mark_sent(&self, mut held: Lease) {
        let Some(name) = held.metadata.name.clone() else {
            return;
        };
        held.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(STATE_ANNOTATION.into(), SENT.into());
        if let Some(spec) = held.spec.as_mut() {
            spec.renew_time = Some(MicroTime(now()));
            spec.lease_duration_seconds = Some(seconds(self.settings.dedup_window));
        }
        let post = PostParams::default();
        let deadline = Instant::now() + RECORD_BUDGET;
        if let Err(error) = retry::until(deadline, &API_RETRY, || {
            self.records.replace(&name, &post, &held)
        })
        .await
        {
            tracing::warn!(%error, record = %name,
                "dispatch sent, but its record could not be marked sent: a redelivery after it expires would dispatch again");
        }
    }

    /// Deletes a held record after a failed dispatch, so a redelivery can try again: only the version this
    /// attempt wrote (another replica may have taken it over since). If that fails, it expires by itself.
    async fn release(&self, held: Lease) {
        let Some(name) = held.metadata.name.clone() else {
            return;
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: held.metadata.resource_version.clone(),
                uid: held.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        let deadline = Instant::now() + RECORD_BUDGET;
        if let Err(error) =
            retry::until(deadline, &API_RETRY, || self.records.delete(&name, &params)).await
        {
            tracing::warn!(%error, record = %name,
                "dispatch failed and its record could not be deleted: a redelivery will dispatch once it expires");
        }
    }

    /// Deletes the records whose time is up, in the background: only the versions read as expired.
    fn sweep(&self) {
        let records = self.records.clone();
        tokio::spawn(async move {
            let selector = format!("{}={}", RECORD_LABEL.0, RECORD_LABEL.1);
            let list = match records.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => list,
                Err(error) => {
                    tracing::debug!(%error, "cannot list dispatch records to delete expired ones");
                    return;
                }
            };
            let now = now();
            for lease in list.items {
                if expires_at(&lease).is_some_and(|at| now < at) {
                    continue;
                }
                let (Some(name), Some(version)) =
                    (lease.metadata.name, lease.metadata.resource_version)
                else {
                    continue;
                };
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        resource_version: Some(version),
                        uid: lease.metadata.uid,
                    }),
                    ..DeleteParams::default()
                };
                if let Err(error) = records.delete(&name, &params).await {
                    tracing::debug!(%error, record = %name, "expired dispatch record not deleted");
                }
            }
        });
    }

    fn token(&self) -> Result<String, &'static str> {
        let path = self
            .settings
            .token_file
            .as_ref()
            .ok_or("no GitHub token configured (--github-token-file)")?;
        let token =
            std::fs::read_to_string(path).map_err(|_| "the GitHub token file cannot be read")?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err("the GitHub token file is empty");
        }
        Ok(token)
    }

    /// POSTs the dispatch, retrying GitHub's 5xx and network errors with backoff until the deadline.
    async fn send(
        &self,
        request: &DispatchRequest,
        token: &str,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let url = format!(
            "{}/repos/{}/dispatches",
            self.settings.api_url.trim_end_matches('/'),
            request.repository
        );
        let body = json!({
            "event_type": request.event_type,
            "client_payload": {
                "application": request.application,
                "failed_revision": request.failed_revision,
                "healthy_revision": request.healthy_revision,
            },
        });
        let post = || async {
            let response = self
                .http
                .post(&url)
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .json(&body)
                .send()
                .await
                // reqwest's errors name the URL, never the Authorization header.
                .map_err(|e| {
                    Failure::Unavailable(format!("GitHub unreachable: {}", e.without_url()))
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let message = response
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            let text = format!("GitHub answered {}: {message}", status.as_u16());
            Err(if status.is_server_error() {
                Failure::Unavailable(text)
            } else {
                Failure::Refused(text)
            })
        };
        let sent = retry::until(deadline, &GITHUB_RETRY, post).await;
        match &sent {
            Ok(()) => {
                tracing::info!(repository = %request.repository, application = %request.application,
                    failed_revision = %request.failed_revision, "repository_dispatch sent")
            }
            Err(Failure::Refused(text)) => {
                tracing::warn!(repository = %request.repository, %text, "repository_dispatch refused")
            }
            Err(Failure::Unavailable(failure)) => {
                tracing::warn!(repository = %request.repository, %failure, "repository_dispatch failed until the deadline")
            }
        }
        sent
    }
}

/// Why GitHub's `repository_dispatch` was not sent; the text is the reply's `error`.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Refused(String),
    /// A 5xx or a network error, retried until the deadline.
    #[error("{0}")]
    Unavailable(String),
}

impl Failure {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Refused(_) => Outcome::RefusedByGithub,
            Self::Unavailable(_) => Outcome::Unavailable,
        }
    }
}

/// How GitHub's `repository_dispatch` is retried: its 5xx and network errors.
const GITHUB_RETRY: Policy<Failure> = Policy {
    first_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(2),
    is_transient: |failure| matches!(failure, Failure::Unavailable(_)),
    deadline_exceeded: || Failure::Unavailable("GitHub did not answer before the deadline".into()),
};

/// The record of a dispatch: one per (repository, event type, application, failed revision). None of them
/// can hold a newline (validated), so joining them with newlines is unambiguous.
pub fn record_name(request: &DispatchRequest) -> String {
    let key = [
        request.repository.as_str(),
        request.event_type.as_str(),
        request.application.as_str(),
        request.failed_revision.as_str(),
    ]
    .join("\n");
    format!("{RECORD_PREFIX}{}", sha256_hex(&[key.as_bytes()]))
}

fn state(lease: &Lease) -> Option<&str> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(STATE_ANNOTATION)
        .map(String::as_str)
}

/// When a record's time is up: its `renewTime` plus `leaseDurationSeconds` (none: already).
fn expires_at(lease: &Lease) -> Option<Timestamp> {
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let seconds = spec.lease_duration_seconds?;
    renewed
        .checked_add(SignedDuration::from_secs(seconds.into()))
        .ok()
}

fn now() -> Timestamp {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
    Timestamp::from_microsecond(micros).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Whole seconds, rounded up, as a Lease's `leaseDurationSeconds`.
fn seconds(duration: Duration) -> i32 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(whole).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> DispatchRequest {
        DispatchRequest {
            repository: "example/gitops".into(),
            event_type: "argo-degraded".into(),
            application: "guestbook".into(),
            failed_revision: "3f786850e387550fdab836ed7e6dc881de23001b".into(),
            healthy_revision: "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d".into(),
        }
    }

    #[test]
    fn each_outcome_has_its_status_code_and_metric_label() {
        use Outcome::*;
        let cases = [
            (Sent, StatusCode::OK, "sent", "dispatch_sent"),
            (
                Deduplicated,
                StatusCode::OK,
                "deduplicated",
                "dispatch_deduplicated",
            ),
            (
                InProgress,
                StatusCode::ACCEPTED,
                "in_progress",
                "dispatch_in_progress",
            ),
            (Invalid, StatusCode::BAD_REQUEST, "error", "dispatch_error"),
            (
                Error,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                "dispatch_error",
            ),
            (
                RefusedByGithub,
                StatusCode::BAD_GATEWAY,
                "refused_by_github",
                "dispatch_refused_by_github",
            ),
            (
                Unavailable,
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "dispatch_unavailable",
            ),
        ];
        for (outcome, status, code, label) in cases {
            assert_eq!(
                (outcome.status(), outcome.code(), outcome.metric_label()),
                (status, code, label),
                "{outcome:?}"
            );
        }
        let sent = DispatchAnswer::of(Sent, &request());
        assert_eq!(
            sent.body,
            json!({"dispatch": "sent", "repository": "example/gitops", "eventType": "argo-degraded",
                "application": "guestbook", "failedRevision": "3f786850e387550fdab836ed7e6dc881de23001b",
                "healthyRevision": "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"})
        );
        let refused = Failure::Refused("GitHub answered 422: no".into());
        let answer = DispatchAnswer::not_sent(refused.outcome(), refused);
        assert_eq!(answer.outcome, RefusedByGithub);
        assert_eq!(answer.body, json!({"error": "GitHub answered 422: no"}));
    }

    #[test]
    fn a_record_is_named_after_what_makes_two_dispatches_the_same() {
        let name = record_name(&request());
        assert!(name.starts_with(RECORD_PREFIX) && name.len() == RECORD_PREFIX.len() + 64);
        let other_healthy = DispatchRequest {
            healthy_revision: "main".into(),
            ..request()
        };
        assert_eq!(
            record_name(&other_healthy),
            name,
            "the healthy revision is not part of it"
        );
        type Change = fn(&mut DispatchRequest);
        let changes: [(&str, Change); 4] = [
            ("repository", |r| r.repository = "example/other".into()),
            ("event type", |r| r.event_type = "rollback".into()),
            ("application", |r| r.application = "shop".into()),
            ("failed revision", |r| r.failed_revision = "b".repeat(40)),
        ];
        for (field, change) in changes {
            let mut changed = request();
            change(&mut changed);
            assert_ne!(record_name(&changed), name, "{field}");
        }
    }

    #[test]
    fn a_record_expires_at_its_renew_time_plus_its_duration() {
        let at = |second: i64| Timestamp::from_second(second).unwrap();
        let lease = |renewed: Option<i64>, duration: Option<i32>| Lease {
            spec: Some(LeaseSpec {
                renew_time: renewed.map(|s| MicroTime(at(s))),
                lease_duration_seconds: duration,
                ..LeaseSpec::default()
            }),
            ..Lease::default()
        };
        assert_eq!(expires_at(&lease(Some(1_000), Some(600))), Some(at(1_600)));
        assert_eq!(
            expires_at(&lease(None, Some(600))),
            None,
            "no time: expired"
        );
        assert_eq!(
            expires_at(&lease(Some(1_000), None)),
            None,
            "no duration: expired"
        );
        assert_eq!(seconds(Duration::from_millis(8_000) + SENDING_MARGIN), 13);
        assert_eq!(seconds(Duration::from_millis(1_500)), 2, "rounded up");
        assert_eq!(seconds(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
