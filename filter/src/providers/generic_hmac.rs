//! Flux's `generic-hmac`: `X-Signature: sha256=|sha512=<hex>` over the raw body (`sha1=` only when the
//! receiver sets `allowSha1`).

use super::{verify_prefixed_hex_signature, Provider, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GenericHmac;

impl Provider for GenericHmac {
    fn verify(
        &self,
        d: &Delivery,
        secrets: &[Secret],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        verify_prefixed_hex_signature(d.headers.get("x-signature"), d, secrets, options.allow_sha1)
    }
    fn supports_sha1(&self) -> bool {
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
            VerifyOptions { allow_sha1 },
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
    fn negative_cases() {
        let good = format!("sha256={}", hex_hmac(Algorithm::Sha256, SECRET, b"x"));
        assert_eq!(
            check(Some(good.clone()), b"y", false),
            Err(Rejection::SignatureMismatch)
        );
        assert_eq!(check(None, b"x", false), Err(Rejection::MissingSignature));
        assert_eq!(
            check(Some(good[7..].to_string()), b"x", false),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(
            check(Some(format!("SHA256={}", &good[7..])), b"x", false),
            Ok(()),
            "labels are case-insensitive"
        );
        assert_eq!(
            check(Some(format!("sha384={}", &good[7..])), b"x", false),
            Err(Rejection::UnsupportedAlgorithm)
        );
        let wrong = format!("sha256={}", hex_hmac(Algorithm::Sha256, "b", b"x"));
        assert_eq!(
            check(Some(wrong), b"x", false),
            Err(Rejection::SignatureMismatch)
        );
    }
}
