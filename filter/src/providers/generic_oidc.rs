//! Flux's `generic-oidc`: any OIDC issuer's ID token as `Authorization: Bearer`, verified by Envoy's JWT
//! filter. The receiver names the issuer; the audience is Flux's default unless it names another.

use super::{Credential, Provider, Sender, TokenDefaults, ANY_JSON_SAMPLE};
use crate::delivery::Headers;

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
    /// The token is the proof; Flux reads nothing of the body (its example sends none).
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

/// An issuer that signs tokens for anyone on its platform, with any audience the caller asks for: a
/// signature of its alone proves nothing about who sent a delivery.
#[derive(Debug)]
pub struct SharedIssuer {
    /// The `iss` its tokens carry.
    pub issuer: &'static str,
    /// Who runs it, for messages.
    pub platform: &'static str,
    /// The claims that say which repository, project or account a token was issued to: a receiver on
    /// this issuer must read one of them in a validation (or name the sender's `email`).
    pub identity_claims: &'static [&'static str],
}

/// The shared issuers hookgate knows (from each platform's documentation of its ID tokens).
pub const SHARED_ISSUERS: &[SharedIssuer] = &[
    SharedIssuer {
        issuer: "https://token.actions.githubusercontent.com",
        platform: "GitHub Actions, for every repository",
        identity_claims: &[
            "repository",
            "repository_id",
            "repository_owner",
            "repository_owner_id",
            "sub",
            "job_workflow_ref",
            "workflow_ref",
            "enterprise",
            "enterprise_id",
        ],
    },
    SharedIssuer {
        issuer: "https://gitlab.com",
        platform: "GitLab.com CI, for every project",
        identity_claims: &[
            "project_path",
            "project_id",
            "namespace_path",
            "namespace_id",
            "sub",
            "ci_config_ref_uri",
        ],
    },
    SharedIssuer {
        issuer: "https://accounts.google.com",
        platform: "Google, for every account and service account",
        identity_claims: &["email", "sub", "azp"],
    },
    SharedIssuer {
        issuer: "accounts.google.com",
        platform: "Google, for every account and service account",
        identity_claims: &["email", "sub", "azp"],
    },
];

/// The shared issuer `issuer` is, if it is one.
pub fn shared_issuer(issuer: &str) -> Option<&'static SharedIssuer> {
    SHARED_ISSUERS.iter().find(|s| s.issuer == issuer)
}
