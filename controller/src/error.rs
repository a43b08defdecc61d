//! Errors of the controller library. A refused request carries the HTTP status and a reason that is safe
//! to return (no key material, no cluster internals beyond what the caller already named).

use http::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unauthorized(#[from] hookgate_filter::attestation::AttestationError),
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
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::MalformedRequest(_) | Self::InvalidTarget(_) => StatusCode::BAD_REQUEST,
            Self::KindNotAllowed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::CrossNamespace { .. } => StatusCode::FORBIDDEN,
            Self::AttestationKey(_) | Self::Kube(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
