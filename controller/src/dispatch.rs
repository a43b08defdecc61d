//! The `dispatch` action: a GitHub `repository_dispatch` for an Argo CD application that turned Degraded,
//! so a workflow can roll the Git change back. Argo CD retries notifications, so the same (repository,
//! application, failed revision) dispatches once within a window.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hookgate_filter::dispatch::DispatchRequest;
use http::StatusCode;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct DispatchSettings {
    /// `https://api.github.com`, or a GitHub Enterprise API base such as `https://github.example.com/api/v3`.
    pub api_url: String,
    /// A file holding the GitHub token (a mounted Secret); read on every dispatch so a rotated Secret is
    /// picked up without a restart.
    pub token_file: Option<PathBuf>,
    pub dedup_window: Duration,
    pub deadline: Duration,
}

enum Seen {
    InFlight,
    Sent(Instant),
}

pub struct Dispatcher {
    settings: DispatchSettings,
    http: reqwest::Client,
    seen: Mutex<HashMap<(String, String, String), Seen>>,
}

/// The controller's answer to a dispatch request.
pub struct DispatchAnswer {
    pub status: StatusCode,
    pub body: Value,
    /// `sent`, `deduplicated`, `in_progress`, `refused_by_github`, `unavailable`, `error`.
    pub outcome: &'static str,
}

impl Dispatcher {
    pub fn new(settings: DispatchSettings) -> Result<Self, reqwest::Error> {
        // reqwest is built without a TLS provider of its own: use ring, as kube does (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hookgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            settings,
            http,
            seen: Mutex::new(HashMap::new()),
        })
    }

    pub async fn dispatch(&self, request: &DispatchRequest) -> DispatchAnswer {
        if let Err(reason) = request.validate() {
            return answer(StatusCode::BAD_REQUEST, "error", json!({ "error": reason }));
        }
        let token = match self.token() {
            Ok(token) => token,
            Err(reason) => {
                return answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "error",
                    json!({ "error": reason }),
                )
            }
        };
        let key = (
            request.repository.clone(),
            request.application.clone(),
            request.failed_revision.clone(),
        );
        let summary = |dispatch: &str| {
            json!({
                "dispatch": dispatch,
                "repository": request.repository,
                "eventType": request.event_type,
                "application": request.application,
                "failedRevision": request.failed_revision,
                "healthyRevision": request.healthy_revision,
            })
        };
        {
            let mut seen = self
                .seen
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let window = self.settings.dedup_window;
            seen.retain(|_, state| match state {
                Seen::Sent(at) => at.elapsed() < window,
                Seen::InFlight => true,
            });
            match seen.get(&key) {
                Some(Seen::Sent(_)) => {
                    return answer(StatusCode::OK, "deduplicated", summary("deduplicated"))
                }
                Some(Seen::InFlight) => {
                    return answer(StatusCode::ACCEPTED, "in_progress", summary("in_progress"))
                }
                None => {
                    seen.insert(key.clone(), Seen::InFlight);
                }
            }
        }
        let result = self.send(request, &token).await;
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(()) => {
                seen.insert(key, Seen::Sent(Instant::now()));
                answer(StatusCode::OK, "sent", summary("sent"))
            }
            Err(failure) => {
                // Not sent: a redelivery may try again.
                seen.remove(&key);
                let (status, outcome) = match failure {
                    Failure::Refused(_) => (StatusCode::BAD_GATEWAY, "refused_by_github"),
                    Failure::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
                };
                answer(status, outcome, json!({ "error": failure.to_string() }))
            }
        }
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
    async fn send(&self, request: &DispatchRequest, token: &str) -> Result<(), Failure> {
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
        let deadline = Instant::now() + self.settings.deadline;
        let mut backoff = Duration::from_millis(100);
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt = self
                .http
                .post(&url)
                .bearer_auth(token)
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28")
                .json(&body)
                .timeout(remaining.max(Duration::from_millis(1)))
                .send()
                .await;
            let failure = match attempt {
                Ok(response)
                    if response.status() == StatusCode::NO_CONTENT
                        || response.status().is_success() =>
                {
                    tracing::info!(repository = %request.repository, application = %request.application,
                        failed_revision = %request.failed_revision, "repository_dispatch sent");
                    return Ok(());
                }
                Ok(response) => {
                    let status = response.status();
                    let message = response
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_default();
                    let text = format!("GitHub answered {}: {message}", status.as_u16());
                    if !status.is_server_error() {
                        tracing::warn!(repository = %request.repository, %text, "repository_dispatch refused");
                        return Err(Failure::Refused(text));
                    }
                    text
                }
                // reqwest's errors name the URL, never the Authorization header.
                Err(error) => format!("GitHub unreachable: {}", error.without_url()),
            };
            if Instant::now() + backoff >= deadline {
                tracing::warn!(repository = %request.repository, %failure, "repository_dispatch failed until the deadline");
                return Err(Failure::Unavailable(failure));
            }
            tracing::debug!(%failure, ?backoff, "retrying repository_dispatch");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Unavailable(String),
}

fn answer(status: StatusCode, outcome: &'static str, body: Value) -> DispatchAnswer {
    DispatchAnswer {
        status,
        body,
        outcome,
    }
}
