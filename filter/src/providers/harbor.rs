//! Harbor: the configured value exactly in `Authorization` (no scheme), compared in constant time. The
//! event is the payload's `type` (`PUSH_ARTIFACT`, ...); the image tag is the first resource's tag.

use super::{
    json_fields, string_at, verify_token, Credential, PayloadFacts, Provider, Sender, VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct Harbor;

const TOKEN_HEADER: &str = "authorization";

impl Provider for Harbor {
    fn sender(&self) -> Sender {
        let credential = Credential::Token {
            header: TOKEN_HEADER,
            scheme: None,
        };
        Sender::new(
            credential,
            r#"{"event_data":{"resources":[{"tag":"1.0.0"}]},"type":"PUSH_ARTIFACT"}"#,
        )
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_token(d.headers.get(TOKEN_HEADER), secrets)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        json_fields(d.body, &["/type"])
            .ok()
            .and_then(|p| string_at(&p, "/type"))
    }
    /// The image tag, if the body is JSON that has one: Flux reads nothing of the body, so one that is
    /// not JSON passes with no tag.
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        const TAG: &str = "/event_data/resources/0/tag";
        Ok(PayloadFacts {
            git_ref: None,
            image_tag: json_fields(d.body, &[TAG])
                .ok()
                .and_then(|payload| string_at(&payload, TAG)),
        })
    }
    /// Flux checks the `Authorization` header and reads nothing of the body.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    const BODY: &[u8] = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"tag":"v3"}]}}"#;

    fn check(auth: Option<&str>) -> Result<(), Rejection> {
        let h = Headers::new(auth.map(|a| ("Authorization", a)));
        Harbor.verify(
            &delivery(&h, BODY),
            &secrets(&["harbor-secret"]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn exact_value_only() {
        assert_eq!(check(Some("harbor-secret")), Ok(()));
        assert_eq!(
            check(Some("Bearer harbor-secret")),
            Err(Rejection::TokenMismatch)
        );
        assert_eq!(check(Some("harbor-secre")), Err(Rejection::TokenMismatch));
        assert_eq!(check(None), Err(Rejection::MissingToken));
    }

    #[test]
    fn event_and_tag() {
        let h = Headers::default();
        assert_eq!(
            Harbor.event(&delivery(&h, BODY)).as_deref(),
            Some("PUSH_ARTIFACT")
        );
        assert_eq!(
            Harbor
                .payload(&delivery(&h, BODY))
                .unwrap()
                .image_tag
                .as_deref(),
            Some("v3")
        );
        assert_eq!(
            Harbor.payload(&delivery(&h, b"<xml/>")),
            Ok(PayloadFacts::default()),
            "Flux reads nothing of the body"
        );
    }
}
