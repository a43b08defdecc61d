//! Bitbucket Cloud and Bitbucket Server / Data Center: `X-Hub-Signature: sha256=<hex>` over the raw body,
//! events in `X-Event-Key`; `diagnostics:ping` is Server's "test connection" button.

use hookgate_protocol::Secret;
use serde_json::Value;

use super::github::go_github_reads_body;
use super::{
    json_fields, string_at, verify_prefixed_hex_signature, Credential, PayloadFacts, Provider,
    Sender, VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::crypto::Algorithm;

#[derive(Debug)]
pub struct Bitbucket;

const SIGNATURE_HEADER: &str = "x-hub-signature";
const EVENT_HEADER: &str = "x-event-key";
const DELIVERY_HEADERS: [&str; 3] = ["x-request-uuid", "x-hook-uuid", "x-request-id"];

impl Provider for Bitbucket {
    fn sender(&self) -> Sender {
        let credential = Credential::BodyMac {
            header: SIGNATURE_HEADER,
            algorithm: Algorithm::Sha256,
            labelled: true,
        };
        Sender::new(
            credential,
            r#"{"push":{"changes":[{"new":{"name":"main","type":"branch"}}]}}"#,
        )
        .event(EVENT_HEADER, "repo:push")
        .delivery_header(DELIVERY_HEADERS[0])
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        // Bitbucket signs with SHA-256 only; a sha1 label is never accepted here.
        verify_prefixed_hex_signature(d.headers.get(SIGNATURE_HEADER), d, secrets, false)
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
    fn is_ping(&self, event: &str) -> bool {
        event.eq_ignore_ascii_case("diagnostics:ping")
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.first_of(&DELIVERY_HEADERS).map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        let payload = json_fields(
            d.body,
            &[
                "/push/changes/0/new",
                "/changes/0/ref/id",
                "/changes/0/refId",
            ],
        )?;
        Ok(PayloadFacts {
            git_ref: cloud_ref(&payload).or_else(|| server_ref(&payload)),
            image_tag: None,
        })
    }
    /// Flux validates Bitbucket's deliveries with go-github's `ValidatePayload`, as GitHub's.
    fn takes_empty_body(&self, headers: &Headers) -> bool {
        go_github_reads_body(headers)
    }
}

/// Cloud: `push.changes[0].new` is `{type: branch|tag, name}` (absent when a branch is deleted).
fn cloud_ref(payload: &Value) -> Option<String> {
    let new = payload.pointer("/push/changes/0/new")?;
    let name = string_at(new, "/name")?;
    match new.get("type").and_then(Value::as_str) {
        Some("tag") => Some(format!("refs/tags/{name}")),
        Some("branch" | "named_branch") => Some(format!("refs/heads/{name}")),
        _ => None,
    }
}

/// Server / Data Center: `changes[0].ref.id` (or `refId`) is already a full ref.
fn server_ref(payload: &Value) -> Option<String> {
    string_at(payload, "/changes/0/ref/id").or_else(|| string_at(payload, "/changes/0/refId"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(headers: &[(&str, &str)], body: &[u8]) -> Result<(), Rejection> {
        let h = Headers::new(headers.iter().copied());
        Bitbucket.verify(
            &delivery(&h, body),
            &secrets(&[SECRET]),
            VerifyOptions {
                allow_sha1: true,
                ..Default::default()
            },
        )
    }

    #[test]
    fn verifies_sha256_and_refuses_variants() {
        let body = br#"{"push":{"changes":[{"new":{"type":"branch","name":"main"}}]}}"#;
        let good = format!("sha256={}", hex_hmac(Algorithm::Sha256, SECRET, body));
        assert_eq!(check(&[("x-hub-signature", &good)], body), Ok(()));
        assert_eq!(
            check(&[("x-hub-signature", &good)], b"{}"),
            Err(Rejection::SignatureMismatch)
        );
        let wrong = format!("sha256={}", hex_hmac(Algorithm::Sha256, "x", body));
        assert_eq!(
            check(&[("x-hub-signature", &wrong)], body),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(&[("x-hub-signature-256", &good)], body),
            Err(Rejection::MissingSignature)
        );
        let sha1 = format!("sha1={}", hex_hmac(Algorithm::Sha1, SECRET, body));
        assert_eq!(
            check(&[("x-hub-signature", &sha1)], body),
            Err(Rejection::UnsupportedAlgorithm)
        );
        assert_eq!(
            check(&[("x-hub-signature", "sha256")], body),
            Err(Rejection::MalformedSignature)
        );
    }

    #[test]
    fn refs_from_cloud_and_server() {
        let h = Headers::default();
        let cloud = br#"{"push":{"changes":[{"new":{"type":"tag","name":"v2"}}]}}"#;
        assert_eq!(
            Bitbucket
                .payload(&delivery(&h, cloud))
                .unwrap()
                .git_ref
                .as_deref(),
            Some("refs/tags/v2")
        );
        let server =
            br#"{"eventKey":"repo:refs_changed","changes":[{"ref":{"id":"refs/heads/main"}}]}"#;
        assert_eq!(
            Bitbucket
                .payload(&delivery(&h, server))
                .unwrap()
                .git_ref
                .as_deref(),
            Some("refs/heads/main")
        );
        let deleted = br#"{"push":{"changes":[{"new":null}]}}"#;
        assert_eq!(
            Bitbucket.payload(&delivery(&h, deleted)).unwrap().git_ref,
            None
        );
    }

    #[test]
    fn diagnostics_ping_is_a_ping() {
        let h = Headers::new([("X-Event-Key", "diagnostics:ping")]);
        assert!(Bitbucket.is_ping(&Bitbucket.event(&delivery(&h, b"")).unwrap()));
        assert!(!Bitbucket.is_ping("repo:push"));
    }
}
