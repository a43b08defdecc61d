//! The contract between hookgate's edge filter and its controller, with no Kubernetes client and no Envoy in
//! it: the attested request the filter forwards and the controller accepts ([`AttestedRequest`]), its
//! attestation, the keyed-hash helpers both use, the dispatch contract, and the one validation of every field
//! that ends up in an API path or a label selector. Filter and controller both build on these types, so the
//! two ends cannot drift apart.
#![forbid(unsafe_code)]

pub mod attestation;
pub mod channel;
pub mod crypto;
pub mod dispatch;
pub mod enrollment;
pub mod kinds;
pub mod kubernetes;
pub mod request;
pub mod secret;

pub use request::{
    Action, AttestedRequest, ReceiverRef, Target, TargetError, DEFAULT_FORWARD_PATH,
    MAX_BODY_BYTES, MAX_REQUEST_BYTES,
};
pub use secret::Secret;
