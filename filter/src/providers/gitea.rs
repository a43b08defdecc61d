//! Gitea, Forgejo and Gogs: bare lowercase hex HMAC-SHA256 in `X-Gitea-Signature` / `X-Forgejo-Signature`
//! / `X-Gogs-Signature`. They also send GitHub-style headers, which a Gitea receiver accepts as well.

use super::github::{github_payload_facts, verify_github_signature, PUSH_SAMPLE};
use super::{verify_hex_mac, Credential, Methods, PayloadFacts, Provider, Sender, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::crypto::Algorithm;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct Gitea;

const SIGNATURE_HEADERS: [&str; 3] = [
    "x-gitea-signature",
    "x-forgejo-signature",
    "x-gogs-signature",
];
const EVENT_HEADERS: [&str; 4] = [
    "x-gitea-event",
    "x-forgejo-event",
    "x-gogs-event",
    "x-github-event",
];
const DELIVERY_HEADERS: [&str; 4] = [
    "x-gitea-delivery",
    "x-forgejo-delivery",
    "x-gogs-delivery",
    "x-github-delivery",
];

impl Provider for Gitea {
    /// Not a type of Flux's: its senders POST.
    fn methods(&self) -> Methods {
        Methods::Only(&["POST"])
    }
    fn sender(&self) -> Sender {
        let credential = Credential::BodyMac {
            header: SIGNATURE_HEADERS[0],
            algorithm: Algorithm::Sha256,
            labelled: false,
        };
        Sender::new(credential, PUSH_SAMPLE)
            .event(EVENT_HEADERS[0], "push")
            .delivery_header(DELIVERY_HEADERS[0])
    }
    fn verify(
        &self,
        d: &Delivery,
        secrets: &[Secret],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        match d.headers.first_of(&SIGNATURE_HEADERS) {
            Some(hex_mac) => verify_hex_mac(Algorithm::Sha256, hex_mac, d.body, secrets),
            None => verify_github_signature(d, secrets, options.allow_sha1),
        }
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn supports_refs(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.first_of(&EVENT_HEADERS).map(str::to_owned)
    }
    fn is_ping(&self, event: &str) -> bool {
        event.eq_ignore_ascii_case("ping")
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.first_of(&DELIVERY_HEADERS).map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        github_payload_facts(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(headers: &[(&str, &str)], body: &[u8]) -> Result<(), Rejection> {
        let h = Headers::new(headers.iter().copied());
        Gitea.verify(
            &delivery(&h, body),
            &secrets(&[SECRET]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn every_fork_header_verifies() {
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let mac = hex_hmac(Algorithm::Sha256, SECRET, body);
        for header in SIGNATURE_HEADERS {
            assert_eq!(check(&[(header, &mac)], body), Ok(()), "{header}");
        }
        let github_style = format!("sha256={mac}");
        assert_eq!(
            check(&[("x-hub-signature-256", &github_style)], body),
            Ok(())
        );
    }

    #[test]
    fn refuses_changed_bodies_other_keys_and_labelled_or_sha1_macs() {
        use Rejection::{MalformedSignature, MissingSignature, SignatureMismatch};
        let body = b"{}";
        let mac = hex_hmac(Algorithm::Sha256, SECRET, body);
        let other_key = hex_hmac(Algorithm::Sha256, "nope", body);
        let labelled = format!("sha256={mac}");
        let sha1 = hex_hmac(Algorithm::Sha1, SECRET, body);
        // (case, X-Gitea-Signature, body, rejection). Gitea's header is bare hex: a GitHub-style prefix is
        // malformed there.
        #[rustfmt::skip]
        let cases: [(&str, Option<&str>, &[u8], Rejection); 5] = [
            ("body changed after signing",      Some(&mac),       b"{ }", SignatureMismatch),
            ("signed with another secret",      Some(&other_key), body,   SignatureMismatch),
            ("no signature",                    None,             body,   MissingSignature),
            ("GitHub-style sha256= prefix",     Some(&labelled),  body,   MalformedSignature),
            ("SHA-1 MAC in the SHA-256 header", Some(&sha1),      body,   SignatureMismatch),
        ];
        for (case, signature, body, rejection) in cases {
            let headers: Vec<_> = signature
                .map(|s| ("x-gitea-signature", s))
                .into_iter()
                .collect();
            assert_eq!(check(&headers, body), Err(rejection), "{case}");
        }
    }

    #[test]
    fn events_prefer_gitea_headers() {
        let h = Headers::new([("x-github-event", "push"), ("x-gitea-event", "create")]);
        assert_eq!(Gitea.event(&delivery(&h, b"")).as_deref(), Some("create"));
    }
}
