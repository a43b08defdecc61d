//! What the filter decides for a delivery, and how each decision is answered.

use crate::forward::Forward;

/// A refusal. Each has one HTTP status and one short reason that is safe to show the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// The filter configuration was invalid: every request is refused (fail closed).
    NotConfigured,
    UnknownPath,
    /// The receiver is suspended (`suspend: true`): 503 without verifying, as Flux answers.
    ReceiverSuspended,
    MethodNotAllowed,
    PayloadTooLarge,
    MissingSignature,
    MalformedSignature,
    UnsupportedAlgorithm,
    SignatureMismatch,
    MissingToken,
    TokenMismatch,
    /// An ID token that Envoy's JWT filter did not verify, or not this one (`id_token`).
    TokenNotVerified,
    /// A verified ID token whose claims the receiver does not accept (issuer, audience, email, expiry).
    ClaimsNotAccepted,
    StaleTimestamp,
    MissingEvent,
    MalformedPayload,
    /// A dispatch for an application the receiver does not list.
    ApplicationNotAllowed,
    /// A dispatch naming another event type (workflow) than the receiver's.
    EventTypeNotAllowed,
    /// A verified request without a body, for a type whose payload Flux decodes (an empty one is not JSON),
    /// or whose senders always send one.
    EmptyBody,
}

impl Rejection {
    pub fn status(self) -> u32 {
        match self {
            Self::NotConfigured | Self::ReceiverSuspended => 503,
            Self::UnknownPath => 404,
            Self::ApplicationNotAllowed | Self::EventTypeNotAllowed | Self::ClaimsNotAccepted => {
                403
            }
            Self::MethodNotAllowed => 405,
            Self::PayloadTooLarge => 413,
            Self::MissingSignature
            | Self::MalformedSignature
            | Self::UnsupportedAlgorithm
            | Self::SignatureMismatch
            | Self::MissingToken
            | Self::TokenMismatch
            | Self::TokenNotVerified
            | Self::StaleTimestamp => 401,
            Self::MissingEvent | Self::MalformedPayload | Self::EmptyBody => 400,
        }
    }

    /// Short human reason, returned in the local reply and logged.
    pub fn reason(self) -> &'static str {
        match self {
            Self::NotConfigured => "filter configuration invalid",
            Self::UnknownPath => "unknown webhook path",
            Self::ReceiverSuspended => "receiver suspended",
            Self::MethodNotAllowed => "method not allowed",
            Self::PayloadTooLarge => "payload too large",
            Self::MissingSignature => "missing signature",
            Self::MalformedSignature => "malformed signature header",
            Self::UnsupportedAlgorithm => "unsupported signature algorithm",
            Self::SignatureMismatch => "signature mismatch",
            Self::MissingToken => "missing token",
            Self::TokenMismatch => "token mismatch",
            Self::TokenNotVerified => "token not verified",
            Self::ClaimsNotAccepted => "token claims not accepted",
            Self::StaleTimestamp => "timestamp outside tolerance",
            Self::MissingEvent => "missing event header",
            Self::MalformedPayload => "malformed payload",
            Self::ApplicationNotAllowed => "application not allowed",
            Self::EventTypeNotAllowed => "event type not allowed",
            Self::EmptyBody => "empty body",
        }
    }

    /// Metric-name form of the reason.
    pub fn metric_key(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::UnknownPath => "unknown_path",
            Self::ReceiverSuspended => "receiver_suspended",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::MissingSignature => "missing_signature",
            Self::MalformedSignature => "malformed_signature",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::SignatureMismatch => "signature_mismatch",
            Self::MissingToken => "missing_token",
            Self::TokenMismatch => "token_mismatch",
            Self::TokenNotVerified => "token_not_verified",
            Self::ClaimsNotAccepted => "claims_not_accepted",
            Self::StaleTimestamp => "stale_timestamp",
            Self::MissingEvent => "missing_event",
            Self::MalformedPayload => "malformed_payload",
            Self::ApplicationNotAllowed => "application_not_allowed",
            Self::EventTypeNotAllowed => "event_type_not_allowed",
            Self::EmptyBody => "empty_body",
        }
    }
}

/// The decision for one complete delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reject(Rejection),
    /// A verified ping-style event: answered at the edge, never forwarded.
    Pong,
    /// Verified, but filtered out by the receiver's events or refs: a 2xx so an attacker learns nothing,
    /// and nothing is forwarded.
    Ignored(&'static str),
    Forward(Box<Forward>),
}

/// A local reply: status and a small JSON body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u32,
    pub body: String,
}

impl Reply {
    pub fn rejection(rejection: Rejection) -> Self {
        Self {
            status: rejection.status(),
            body: json_object("error", rejection.reason()),
        }
    }
    pub fn pong() -> Self {
        Self {
            status: 200,
            body: json_object("status", "pong"),
        }
    }
    pub fn ignored(reason: &str) -> Self {
        Self {
            status: 202,
            body: format!(
                "{{\"status\":\"ignored\",\"reason\":{}}}",
                serde_json::Value::from(reason)
            ),
        }
    }
}

fn json_object(key: &str, value: &str) -> String {
    format!("{{\"{key}\":{}}}", serde_json::Value::from(value))
}

impl Outcome {
    /// The local reply for every outcome except a forward.
    pub fn reply(&self) -> Option<Reply> {
        match self {
            Self::Reject(r) => Some(Reply::rejection(*r)),
            Self::Pong => Some(Reply::pong()),
            Self::Ignored(reason) => Some(Reply::ignored(reason)),
            Self::Forward(_) => None,
        }
    }

    /// What a counter counts of this outcome.
    pub fn counted(&self) -> Counted {
        match self {
            Self::Reject(r) => Counted::Rejected(*r),
            Self::Pong => Counted::Ping,
            Self::Ignored(reason) => Counted::Ignored(reason),
            Self::Forward(_) => Counted::Accepted,
        }
    }

    /// See [`Counted::metric_suffix`].
    pub fn metric_suffix(&self) -> String {
        self.counted().metric_suffix()
    }
}

/// An outcome as counters count it: one counter per kind, and per reason of a refusal or of an ignored
/// delivery. Small and `Copy`, so the filter finds a counter by it without formatting the counter's name
/// per request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counted {
    Rejected(Rejection),
    Ping,
    Ignored(&'static str),
    Accepted,
}

impl Counted {
    /// The `outcome` label: `accepted`, `ping`, `ignored` or `rejected`.
    pub fn outcome_label(self) -> &'static str {
        match self {
            Self::Rejected(_) => "rejected",
            Self::Ping => "ping",
            Self::Ignored(_) => "ignored",
            Self::Accepted => "accepted",
        }
    }

    /// The `reason` label: a refusal's [`Rejection::metric_key`], an ignored delivery's reason with `_` for
    /// spaces (`ref_not_accepted`), and empty for the others (Prometheus reads an empty label as absent).
    pub fn reason_label(self) -> String {
        match self {
            Self::Rejected(r) => r.metric_key().into(),
            Self::Ignored(reason) => reason.replace(' ', "_"),
            Self::Ping | Self::Accepted => String::new(),
        }
    }

    /// The end of a counter's name, `;outcome=<outcome>;reason=<reason>`, which Envoy's tag extractors
    /// turn into labels (see [`crate::label`]).
    pub fn metric_suffix(self) -> String {
        format!(
            ";outcome={};reason={}",
            self.outcome_label(),
            self.reason_label()
        )
    }
}
