//! Flux's `generic-hmac`: `X-Signature: sha256=|sha512=<hex>` over the raw body (`sha1=` only when the
//! receiver sets `allowSha1`).

use super::{
    verify_prefixed_hex_signature, Credential, Provider, Sender, VerifyOptions, ANY_JSON_SAMPLE,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::crypto::Algorithm;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GenericHmac;

const SIGNATURE_HEADER: &str = "x-signature";

impl Provider for GenericHmac {
    fn sender(&self) -> Sender {
        let credential = Credential::BodyMac {
            header: SIGNATURE_HEADER,
            algorithm: Algorithm::Sha256,
            labelled: true,
        };
        Sender::new(credential, ANY_JSON_SAMPLE)
    }
    fn verify(
        &self,
        d: &Delivery,
        secrets: &[Secret],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        verify_prefixed_hex_signature(
            d.headers.get(SIGNATURE_HEADER),
            d,
            secrets,
            options.allow_sha1,
        )
    }
    fn supports_sha1(&self) -> bool {
        true
    }
    /// Flux checks the MAC over the body, an empty one too, and reads nothing else of it.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;
    use hookgate_protocol::crypto::Algorithm;

    fn check(sig: Option<String>, body: &[u8], allow_sha1: bool) -> Result<(), Rejection> {
        let h = Headers::new(sig.iter().map(|s| ("X-Signature", s.as_str())));
        GenericHmac.verify(
            &delivery(&h, body),
            &secrets(&["a", SECRET]),
            VerifyOptions {
                allow_sha1,
                ..Default::default()
            },
        )
    }

    #[test]
    fn algorithms() {
        for (label, alg) in [("sha256", Algorithm::Sha256), ("sha512", Algorithm::Sha512)] {
            assert_eq!(
                check(
                    Some(format!("{label}={}", hex_hmac(alg, SECRET, b"x"))),
                    b"x",
                    false
                ),
                Ok(())
            );
        }
        let sha1 = format!("sha1={}", hex_hmac(Algorithm::Sha1, SECRET, b"x"));
        assert_eq!(
            check(Some(sha1.clone()), b"x", false),
            Err(Rejection::UnsupportedAlgorithm)
        );
        assert_eq!(check(Some(sha1), b"x", true), Ok(()));
    }

    #[test]
    fn refuses_changed_bodies_other_keys_and_unknown_labels() {
        use Rejection::{
            MalformedSignature, MissingSignature, SignatureMismatch, UnsupportedAlgorithm,
        };
        let good = format!("sha256={}", hex_hmac(Algorithm::Sha256, SECRET, b"x"));
        let hex = &good[7..];
        let other_key = format!("sha256={}", hex_hmac(Algorithm::Sha256, "b", b"x"));
        // (case, X-Signature, body, verdict)
        #[rustfmt::skip]
        let cases = [
            ("body changed after signing",      Some(good.clone()),            b"y", Err(SignatureMismatch)),
            ("no signature",                    None,                          b"x", Err(MissingSignature)),
            ("hex without its algorithm label", Some(hex.to_string()),         b"x", Err(MalformedSignature)),
            ("labels are case-insensitive",     Some(format!("SHA256={hex}")), b"x", Ok(())),
            ("sha384 label",                    Some(format!("sha384={hex}")), b"x", Err(UnsupportedAlgorithm)),
            ("signed with another secret",      Some(other_key),               b"x", Err(SignatureMismatch)),
        ];
        for (case, signature, body, verdict) in cases {
            assert_eq!(check(signature, body, false), verdict, "{case}");
        }
    }
}
