//! GitLab: the secret itself in `X-Gitlab-Token` (no MAC), compared in constant time.

use super::{
    json_fields, top_level_ref, verify_token, Credential, PayloadFacts, Provider, Sender,
    VerifyOptions,
};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GitLab;

const TOKEN_HEADER: &str = "x-gitlab-token";
const EVENT_HEADER: &str = "x-gitlab-event";
const DELIVERY_HEADERS: [&str; 2] = ["x-gitlab-event-uuid", "idempotency-key"];

impl Provider for GitLab {
    fn sender(&self) -> Sender {
        let credential = Credential::Token {
            header: TOKEN_HEADER,
            scheme: None,
        };
        Sender::new(
            credential,
            r#"{"checkout_sha":"3f786850e387550fdab836ed7e6dc881de23001b","object_kind":"push","ref":"refs/heads/main"}"#,
        )
        .event(EVENT_HEADER, "Push Hook")
        .delivery_header(DELIVERY_HEADERS[0])
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_token(d.headers.get(TOKEN_HEADER), secrets)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn supports_refs(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get(EVENT_HEADER).map(str::to_owned)
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.first_of(&DELIVERY_HEADERS).map(str::to_owned)
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
    fn refuses_any_other_token_and_a_token_elsewhere() {
        use Rejection::{MissingToken, TokenMismatch};
        // (case, header, rejection) with "old-token" and "new-token" configured
        #[rustfmt::skip]
        let cases = [
            ("a configured token with a suffix", ("X-Gitlab-Token", "new-token2"), TokenMismatch),
            ("empty token",                      ("X-Gitlab-Token", ""),           TokenMismatch),
            ("a configured token in upper case", ("X-Gitlab-Token", "NEW-TOKEN"),  TokenMismatch),
            ("the token in Authorization",       ("Authorization", "new-token"),   MissingToken),
        ];
        for (case, header, rejection) in cases {
            assert_eq!(check(&[header]), Err(rejection), "{case}");
        }
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
