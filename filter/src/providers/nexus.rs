//! Sonatype Nexus 3: `X-Nexus-Webhook-Signature: <hex HMAC-SHA1(secret, raw body)>`. SHA-1 is the only
//! algorithm Nexus offers, so it is accepted here without `allowSha1`. The event is `X-Nexus-Webhook-Id`.

use super::{verify_hex_mac, Credential, Provider, Sender, VerifyOptions, ANY_JSON_SAMPLE};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::crypto::Algorithm;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct Nexus;

const SIGNATURE_HEADER: &str = "x-nexus-webhook-signature";
const EVENT_HEADER: &str = "x-nexus-webhook-id";

impl Provider for Nexus {
    fn sender(&self) -> Sender {
        let credential = Credential::BodyMac {
            header: SIGNATURE_HEADER,
            algorithm: Algorithm::Sha1,
            labelled: false,
        };
        Sender::new(credential, ANY_JSON_SAMPLE).event(EVENT_HEADER, "rm:repository:component")
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        let signature = d
            .headers
            .get(SIGNATURE_HEADER)
            .ok_or(Rejection::MissingSignature)?;
        verify_hex_mac(Algorithm::Sha1, signature, d.body, secrets)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get(EVENT_HEADER).map(str::to_owned)
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.get("x-nexus-webhook-delivery").map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;

    fn check(sig: Option<&str>, body: &[u8]) -> Result<(), Rejection> {
        let h = Headers::new(sig.map(|s| ("X-Nexus-Webhook-Signature", s)));
        Nexus.verify(
            &delivery(&h, body),
            &secrets(&[SECRET]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn sha1_hex() {
        let mac = hex_hmac(Algorithm::Sha1, SECRET, b"{}");
        assert_eq!(check(Some(&mac), b"{}"), Ok(()));
        assert_eq!(check(Some(&mac), b"{ }"), Err(Rejection::SignatureMismatch));
        assert_eq!(
            check(Some(&hex_hmac(Algorithm::Sha256, SECRET, b"{}")), b"{}"),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(Some(&hex_hmac(Algorithm::Sha1, "other", b"{}")), b"{}"),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(
            check(Some("sha1=00"), b"{}"),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(check(None, b"{}"), Err(Rejection::MissingSignature));
    }
}
