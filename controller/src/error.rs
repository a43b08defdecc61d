//! Refusals of a whole reconcile request (a target is refused alone: see `reconcile`). Each is answered with its HTTP status, a stable reason code and
//! its message, which goes to the provider's delivery log: so no variant carries key material or cluster
//! internals. API server errors never become one: they are classified per target (a stable status code in
//! the reply, the API server's message in the controller's log only).

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::StatusCode;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(#[from] hookgate_protocol::attestation::AttestationError),
    /// The attestation verified, but this signature was already accepted within the tolerance window.
    #[error("attestation already used")]
    Replayed,
    /// Too many accepted attestations inside the window to remember another one.
    #[error("too many requests inside the attestation window, retry later")]
    ReplayCacheFull,
    #[error("malformed reconcile request: {0}")]
    MalformedRequest(String),
    #[error("{0}")]
    InvalidTarget(String),
    /// A target filter (`resourceFilter`, `targets[i].filter`) that does not compile: the field and why.
    #[error("{0}")]
    InvalidFilter(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) | Self::Replayed => StatusCode::UNAUTHORIZED,
            Self::ReplayCacheFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::MalformedRequest(_) | Self::InvalidTarget(_) | Self::InvalidFilter(_) => {
                StatusCode::BAD_REQUEST
            }
        }
    }

    /// The stable code of the reply's `reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Replayed => "replayed",
            Self::ReplayCacheFull => "overloaded",
            Self::MalformedRequest(_) | Self::InvalidTarget(_) => "bad_request",
            Self::InvalidFilter(_) => "invalid_filter",
        }
    }

    /// The `outcome` label of the request metric: the reason code, so a refusal reads the same in both.
    pub fn metric_label(&self) -> &'static str {
        self.reason()
    }
}

/// A refusal as the provider sees it: `{"error": message, "reason": code}` with the error's status.
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.to_string(), "reason": self.reason() });
        (self.status(), Json(body)).into_response()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use hookgate_protocol::attestation::AttestationError;

    use super::*;

    #[tokio::test]
    async fn every_refusal_answers_its_status_reason_and_message() {
        // (error, status, reason and metric label, message)
        let cases = [
            (
                Error::from(AttestationError::MissingTimestamp),
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing attestation timestamp",
            ),
            (
                Error::Replayed,
                StatusCode::UNAUTHORIZED,
                "replayed",
                "attestation already used",
            ),
            (
                Error::ReplayCacheFull,
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many requests inside the attestation window, retry later",
            ),
            (
                Error::MalformedRequest("eof".into()),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "malformed reconcile request: eof",
            ),
            (
                Error::InvalidTarget("no targets".into()),
                StatusCode::BAD_REQUEST,
                "bad_request",
                "no targets",
            ),
            (
                Error::InvalidFilter("targets[0].filter: undeclared reference to 'x'".into()),
                StatusCode::BAD_REQUEST,
                "invalid_filter",
                "targets[0].filter: undeclared reference to 'x'",
            ),
        ];
        for (error, status, reason, message) in cases {
            assert_eq!(error.metric_label(), reason, "{message}");
            let response = error.into_response();
            assert_eq!(response.status(), status, "{message}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body, json!({ "error": message, "reason": reason }));
        }
    }
}
