//! Flux's `gcr`: Google Container Registry and Artifact Registry notifications pushed by a Pub/Sub push
//! subscription with a Google-signed ID token. Issuer Google; the receiver names the audience and the
//! service account's `email`, which must be verified (accepting any Google token was CVE-2026-40109).
//! The image tag is in the base64 `message.data` of the Pub/Sub envelope, which is not read here.

use super::{Credential, Provider, Sender, TokenDefaults};

#[derive(Debug)]
pub struct Gcr;

impl Provider for Gcr {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::IdToken,
            r#"{"message":{"data":"eyJhY3Rpb24iOiJJTlNFUlQifQ==","messageId":"1"},"subscription":"s"}"#,
        )
    }
    fn token_defaults(&self) -> Option<TokenDefaults> {
        Some(TokenDefaults {
            issuers: &["https://accounts.google.com", "accounts.google.com"],
            audience: None,
            requires_email: true,
        })
    }
}
