//! Flux's `generic-oidc`: any OIDC issuer's ID token as `Authorization: Bearer`, verified by Envoy's JWT
//! filter. The receiver names the issuer; the audience is Flux's default unless it names another.

use super::{Credential, Provider, Sender, TokenDefaults, ANY_JSON_SAMPLE};

#[derive(Debug)]
pub struct GenericOidc;

impl Provider for GenericOidc {
    fn sender(&self) -> Sender {
        Sender::new(Credential::IdToken, ANY_JSON_SAMPLE)
    }
    fn token_defaults(&self) -> Option<TokenDefaults> {
        Some(TokenDefaults {
            issuers: &[],
            audience: Some("notification-controller"),
            requires_email: false,
        })
    }
}
