//! A static `Authorization: Bearer <token>`, for Argo CD notifications and any tool that can only send a
//! header. Argo CD's webhook service defaults to GET (with its template's `body`, if it has one), so GET
//! and PUT are accepted besides POST, with or without a body.

use super::{
    authorization_credentials, verify_token, Credential, Methods, Provider, Sender, VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct Bearer;

/// The notification Argo CD sends for a degraded application (see docs/receivers.md).
pub(super) const ARGO_CD_SAMPLE: &str = r#"{"client_payload":{"application":"guestbook","failed_revision":"3f786850e387550fdab836ed7e6dc881de23001b","healthy_revision":"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"},"event_type":"argo-degraded"}"#;

impl Provider for Bearer {
    fn sender(&self) -> Sender {
        let credential = Credential::Token {
            header: "authorization",
            scheme: Some("Bearer"),
        };
        Sender::new(credential, ARGO_CD_SAMPLE)
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_token(Some(authorization_credentials(d, "bearer")?), secrets)
    }
    fn methods(&self) -> Methods {
        Methods::Only(&["POST", "PUT", "GET"])
    }
    /// The token is the proof and the targets are the receiver's: nothing of a body is read.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(auth: Option<&str>) -> Result<(), Rejection> {
        let h = Headers::new(auth.map(|a| ("authorization", a)));
        Bearer.verify(
            &delivery(&h, b""),
            &secrets(&["argo-token"]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(check(Some("Bearer argo-token")), Ok(()));
        assert_eq!(check(Some("bearer argo-token")), Ok(()));
        assert_eq!(
            check(Some("Bearer argo-tokens")),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(
            check(Some("Basic argo-token")),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(
            check(Some("argo-token")),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(check(Some("Bearer ")), Err(Rejection::MalformedSignature));
        assert_eq!(check(None), Err(Rejection::MissingToken));
    }
}
