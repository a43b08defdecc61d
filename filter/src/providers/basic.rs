//! HTTP basic authentication (`Authorization: Basic base64(user:password)`), for Argo CD notifications
//! configured with `basicAuth`. The configured secret is `user:password`; the decoded credentials are
//! compared in constant time. GET and PUT are accepted besides POST, with or without a body, as for
//! `bearer`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hookgate_protocol::Secret;

use super::bearer::ARGO_CD_SAMPLE;
use super::{
    authorization_credentials, verify_token, Credential, Methods, Provider, Sender, VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Basic;

impl Provider for Basic {
    fn sender(&self) -> Sender {
        Sender::new(Credential::BasicAuth, ARGO_CD_SAMPLE)
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_basic_auth(d, secrets)
    }
    fn placeholder_secret(&self, seed: &str) -> String {
        basic_placeholder_secret(seed)
    }
    fn decode_secret(&self, secret: &str) -> Result<Secret, String> {
        decode_basic_secret(secret)
    }
    fn methods(&self) -> Methods {
        Methods::Only(&["POST", "PUT", "GET"])
    }
    /// The token is the proof and the targets are the receiver's: nothing of a body is read.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

/// Checks `Authorization: Basic base64(user:password)` against every configured `user:password`.
pub(super) fn verify_basic_auth(d: &Delivery, secrets: &[Secret]) -> Result<(), Rejection> {
    let encoded = authorization_credentials(d, "basic")?;
    let decoded = STANDARD
        .decode(encoded)
        .map_err(|_| Rejection::MalformedSignature)?;
    let credentials = String::from_utf8(decoded).map_err(|_| Rejection::MalformedSignature)?;
    verify_token(Some(&credentials), secrets)
}

pub(super) fn basic_placeholder_secret(seed: &str) -> String {
    format!("hookgate-check:{seed}")
}

/// A basic-auth secret is `user:password` with a user.
pub(super) fn decode_basic_secret(secret: &str) -> Result<Secret, String> {
    if secret
        .split_once(':')
        .is_some_and(|(user, _)| !user.is_empty())
    {
        Ok(Secret::from(secret))
    } else {
        Err("a basic secret is user:password".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(auth: Option<&str>) -> Result<(), Rejection> {
        let h = Headers::new(auth.map(|a| ("Authorization", a)));
        Basic.verify(
            &delivery(&h, b"{}"),
            &secrets(&["argocd:s3cret"]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn basic_credentials() {
        let good = format!("Basic {}", STANDARD.encode("argocd:s3cret"));
        assert_eq!(check(Some(&good)), Ok(()));
        assert_eq!(check(Some(&good.replace("Basic", "basic"))), Ok(()));
        let wrong = format!("Basic {}", STANDARD.encode("argocd:guess"));
        assert_eq!(check(Some(&wrong)), Err(Rejection::TokenMismatch));
        assert_eq!(check(Some("Basic %%%")), Err(Rejection::MalformedSignature));
        assert_eq!(
            check(Some(&format!(
                "Bearer {}",
                STANDARD.encode("argocd:s3cret")
            ))),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(check(None), Err(Rejection::MissingToken));
        assert!(Basic.decode_secret("no-colon").is_err());
        assert!(Basic.decode_secret(":nouser").is_err());
    }
}
