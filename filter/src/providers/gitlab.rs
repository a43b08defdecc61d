//! GitLab: the secret itself in `X-Gitlab-Token` (no MAC), compared in constant time.

use super::{json_fields, top_level_ref, verify_token, PayloadFacts, Provider, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GitLab;

impl Provider for GitLab {
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_token(d.headers.get("x-gitlab-token"), secrets)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn supports_refs(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get("x-gitlab-event").map(str::to_owned)
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers
            .first_of(&["x-gitlab-event-uuid", "idempotency-key"])
            .map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        Ok(top_level_ref(&json_fields(d.body, &["/ref"])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(headers: &[(&str, &str)]) -> Result<(), Rejection> {
        let h = Headers::new(headers.iter().copied());
        GitLab.verify(
            &delivery(&h, b"{}"),
            &secrets(&["old-token", "new-token"]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn any_configured_token_is_accepted() {
        assert_eq!(check(&[("X-Gitlab-Token", "new-token")]), Ok(()));
        assert_eq!(check(&[("X-Gitlab-Token", "old-token")]), Ok(()));
    }

    #[test]
    fn negative_cases() {
        assert_eq!(
            check(&[("X-Gitlab-Token", "new-token2")]),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(
            check(&[("X-Gitlab-Token", "")]),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(
            check(&[("X-Gitlab-Token", "NEW-TOKEN")]),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(
            check(&[("Authorization", "new-token")]),
            Err(Rejection::MissingToken)
        );
    }

    #[test]
    fn push_ref_and_event() {
        let h = Headers::new([
            ("x-gitlab-event", "Push Hook"),
            ("x-gitlab-event-uuid", "u-1"),
        ]);
        let d = delivery(&h, br#"{"object_kind":"push","ref":"refs/heads/main"}"#);
        assert_eq!(GitLab.event(&d).as_deref(), Some("Push Hook"));
        assert_eq!(GitLab.delivery_id(&d).as_deref(), Some("u-1"));
        assert_eq!(
            GitLab.payload(&d).unwrap().git_ref.as_deref(),
            Some("refs/heads/main")
        );
        assert_eq!(
            GitLab.payload(&delivery(&h, b"not json")),
            Err(Rejection::MalformedPayload)
        );
    }
}
