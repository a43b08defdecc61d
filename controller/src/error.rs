//! Errors of the controller library. A refused request carries the HTTP status, a stable reason code and a
//! message that is safe to return to the provider's delivery log: no key material and no cluster internals
//! (API server messages go to the controller's log only, see [`Error::public_message`]).

use http::StatusCode;

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
    #[error("kind {kind} (apiVersion {api_version}) is not reconcilable")]
    KindNotAllowed { kind: String, api_version: String },
    #[error("cross-namespace target {namespace}/{name} refused for receiver {receiver} (see --allow-cross-namespace)")]
    CrossNamespace {
        receiver: String,
        namespace: String,
        name: String,
    },
    #[error("attestation key: {0}")]
    AttestationKey(String),
    #[error("kubernetes client: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) | Self::Replayed => StatusCode::UNAUTHORIZED,
            Self::ReplayCacheFull => StatusCode::SERVICE_UNAVAILABLE,
            Self::MalformedRequest(_) | Self::InvalidTarget(_) => StatusCode::BAD_REQUEST,
            Self::KindNotAllowed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CrossNamespace { .. } => StatusCode::FORBIDDEN,
            Self::AttestationKey(_) | Self::Kube(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A stable code for the reply's `reason` and the `outcome` label of the request metric.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(_) => "unauthorized",
            Self::Replayed => "replayed",
            Self::ReplayCacheFull => "overloaded",
            Self::MalformedRequest(_) | Self::InvalidTarget(_) => "bad_request",
            Self::KindNotAllowed { .. } => "kind_not_allowed",
            Self::CrossNamespace { .. } => "cross_namespace",
            Self::AttestationKey(_) | Self::Kube(_) => "error",
        }
    }

    /// What the reply may say. Kubernetes client errors carry API server messages (the ServiceAccount,
    /// its groups, URLs) and key errors are the operator's business: both are logged, never returned.
    pub fn public_message(&self) -> String {
        match self {
            Self::AttestationKey(_) | Self::Kube(_) => "internal error".into(),
            other => other.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_errors_never_reach_the_reply() {
        let api = kube::Error::Api(Box::new(kube::core::Status {
            code: 403,
            message:
                "User \"system:serviceaccount:hookgate-system:hookgate-controller\" cannot list"
                    .into(),
            ..Default::default()
        }));
        let error = Error::Kube(api);
        assert!(
            error.to_string().contains("system:serviceaccount"),
            "the log keeps it"
        );
        assert_eq!(error.public_message(), "internal error");
        let key = Error::AttestationKey("/var/run/secrets/hookgate/key: too short".into());
        assert_eq!(key.public_message(), "internal error");
    }
}
