//! Standard Webhooks (Svix, GitLab's signing mode, many SaaS): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, id.timestamp.body)>` (several, space separated, during
//! key rotation), or the same with `svix-` prefixes. Keys are `whsec_<base64>`. Timestamps more than five
//! minutes from the host's clock are refused, as the reference libraries do.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hookgate_protocol::Secret;

use super::{
    json_fields, string_at, Credential, Methods, PayloadFacts, Provider, Sender, VerifyOptions,
};
use crate::delivery::Delivery;
use crate::outcome::Rejection;
use hookgate_protocol::crypto::{any_mac_equal, hmac, Algorithm};

#[derive(Debug)]
pub struct StandardWebhooks;

const TOLERANCE_SECS: u64 = 5 * 60;
/// At most this many `v1` signatures are read from one header: a sender presents one per key it is
/// rotating between, and the header must not decide how much work is done before anything is proven.
const MAX_SIGNATURES: usize = 8;

/// `(webhook-, svix-)` header triples, first match wins.
fn header<'a>(d: &'a Delivery, suffix: &str) -> Option<&'a str> {
    d.headers
        .get(&format!("webhook-{suffix}"))
        .or_else(|| d.headers.get(&format!("svix-{suffix}")))
}

/// What a Standard Webhooks signature covers: `id.timestamp.body`.
pub(super) fn signed_content<'a>(id: &'a str, timestamp: &'a str, body: &'a [u8]) -> [&'a [u8]; 5] {
    [id.as_bytes(), b".", timestamp.as_bytes(), b".", body]
}

impl Provider for StandardWebhooks {
    /// Not a type of Flux's: its senders POST.
    fn methods(&self) -> Methods {
        Methods::Only(&["POST"])
    }
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::StandardWebhooks,
            r#"{"data":{"tag":"1.0.0"},"type":"image.pushed"}"#,
        )
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_standard_webhook(d, secrets)
    }
    fn placeholder_secret(&self, seed: &str) -> String {
        placeholder_key(seed)
    }
    fn decode_secret(&self, secret: &str) -> Result<Secret, String> {
        decode_key(secret.strip_prefix(KEY_PREFIX).unwrap_or(secret))
    }
    fn supports_events(&self) -> bool {
        true
    }
    /// The conventional payload `type` field names the event.
    fn event(&self, d: &Delivery) -> Option<String> {
        json_fields(d.body, &["/type"])
            .ok()
            .and_then(|p| string_at(&p, "/type"))
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        header(d, "id").map(str::to_owned)
    }
    fn payload(&self, _: &Delivery) -> Result<PayloadFacts, Rejection> {
        Ok(PayloadFacts::default())
    }
}

/// A `whsec_` key standing in for an unset one, distinct per `seed`.
pub(super) fn placeholder_key(seed: &str) -> String {
    format!(
        "{KEY_PREFIX}{}",
        STANDARD.encode(format!("hookgate-check-{seed}"))
    )
}

/// The prefix of a Standard Webhooks key: `whsec_<base64>`.
pub(super) const KEY_PREFIX: &str = "whsec_";

/// The key bytes a `whsec_` key's base64 (the prefix removed) encodes.
pub(super) fn decode_key(encoded: &str) -> Result<Secret, String> {
    STANDARD
        .decode(encoded)
        .map_err(|_| "not a whsec_<base64> key".to_string())
        .and_then(|key| {
            if key.is_empty() {
                Err("empty key".to_string())
            } else {
                Ok(Secret::new(key))
            }
        })
}

/// Verifies the Standard Webhooks headers against every key, at most one MAC per key.
pub(super) fn verify_standard_webhook(d: &Delivery, keys: &[Secret]) -> Result<(), Rejection> {
    let id = header(d, "id").ok_or(Rejection::MissingSignature)?;
    let timestamp = header(d, "timestamp").ok_or(Rejection::MissingSignature)?;
    let signatures = header(d, "signature").ok_or(Rejection::MissingSignature)?;
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Rejection::MalformedSignature)?;
    if ts.abs_diff(d.now) > TOLERANCE_SECS {
        return Err(Rejection::StaleTimestamp);
    }
    // Entries that cannot be read are skipped, as the reference libraries do; other schemes (v1a,
    // asymmetric) are not ours to check.
    let mut unreadable = false;
    let mut presented = Vec::new();
    for entry in signatures.split_ascii_whitespace() {
        match entry.split_once(',') {
            Some(("v1", encoded)) => match STANDARD.decode(encoded) {
                Ok(mac) => presented.push(mac),
                Err(_) => unreadable = true,
            },
            Some(_) => {}
            None => unreadable = true,
        }
        if presented.len() == MAX_SIGNATURES {
            break;
        }
    }
    if presented.is_empty() {
        return Err(if unreadable {
            Rejection::MalformedSignature
        } else {
            Rejection::UnsupportedAlgorithm
        });
    }
    // One MAC per key, however many signatures the header holds.
    let signed = signed_content(id, timestamp, d.body);
    let computed: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| hmac(Algorithm::Sha256, key.expose(), &signed))
        .collect();
    if any_mac_equal(&computed, &presented) {
        Ok(())
    } else {
        Err(Rejection::SignatureMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;

    // Known-answer vector of the Standard Webhooks reference libraries.
    const KEY: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    /// A delivery field by field, and the key it is verified with.
    #[derive(Clone, Copy)]
    struct Signed<'a> {
        prefix: &'a str,
        id: &'a str,
        ts: &'a str,
        sig: &'a str,
        body: &'a [u8],
        now: u64,
        key: &'a str,
    }

    /// The reference vector, delivered ten seconds after it was signed.
    const REFERENCE: Signed = Signed {
        prefix: "webhook",
        id: ID,
        ts: TS,
        sig: SIG,
        body: BODY,
        now: NOW,
        key: KEY,
    };

    impl Signed<'_> {
        fn verify(&self) -> Result<(), Rejection> {
            let prefix = self.prefix;
            let h = Headers::new([
                (format!("{prefix}-id"), self.id),
                (format!("{prefix}-timestamp"), self.ts),
                (format!("{prefix}-signature"), self.sig),
            ]);
            let keys = vec![StandardWebhooks.decode_secret(self.key).unwrap()];
            let d = Delivery {
                headers: &h,
                body: self.body,
                now: self.now,
                claims: None,
            };
            StandardWebhooks.verify(&d, &keys, VerifyOptions::default())
        }
    }

    fn check(
        prefix: &str,
        id: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
        now: u64,
    ) -> Result<(), Rejection> {
        Signed {
            prefix,
            id,
            ts,
            sig,
            body,
            now,
            key: KEY,
        }
        .verify()
    }

    const NOW: u64 = 1_649_367_553 + 10;

    #[test]
    fn official_known_answer_vector_with_both_prefixes() {
        assert_eq!(check("webhook", ID, TS, SIG, BODY, NOW), Ok(()));
        assert_eq!(check("svix", ID, TS, SIG, BODY, NOW), Ok(()));
    }

    #[test]
    fn several_signatures_any_may_match() {
        let sigs = format!("v1,Zm9vYmFy v1a,abc {SIG}");
        assert_eq!(check("webhook", ID, TS, &sigs, BODY, NOW), Ok(()));
    }

    #[test]
    fn unreadable_entries_are_skipped_not_fatal() {
        for (name, sigs) in [
            ("malformed after", format!("{SIG} v1,!!!")),
            ("malformed before", format!("v1,!!! {SIG}")),
            ("no comma before", format!("tZ1I4 {SIG}")),
        ] {
            assert_eq!(check("webhook", ID, TS, &sigs, BODY, NOW), Ok(()), "{name}");
        }
    }

    /// The work done before a proof verifies is one MAC per key, whatever the header holds: a header of
    /// 15,000 empty `v1,` entries over a large body once cost 15,000 MACs of that body.
    #[test]
    fn one_mac_per_key_however_many_signatures() {
        let body = vec![b'x'; 1 << 20];
        let flood = "v1, ".repeat(15_000);
        for (name, sigs, expected) in [
            (
                "one signature",
                SIG.to_string(),
                Err(Rejection::SignatureMismatch),
            ),
            (
                "15,000 empty entries",
                flood.clone(),
                Err(Rejection::SignatureMismatch),
            ),
            (
                "a valid one after the bound",
                format!("{flood}{SIG}"),
                Err(Rejection::SignatureMismatch),
            ),
        ] {
            let before = hookgate_protocol::crypto::macs_computed();
            assert_eq!(
                check("webhook", ID, TS, &sigs, &body, NOW),
                expected,
                "{name}"
            );
            assert_eq!(
                hookgate_protocol::crypto::macs_computed() - before,
                1,
                "{name}"
            );
        }
        // Nothing readable: no MAC at all.
        let before = hookgate_protocol::crypto::macs_computed();
        let unreadable = "v1,!!! ".repeat(1000);
        assert_eq!(
            check("webhook", ID, TS, &unreadable, &body, NOW),
            Err(Rejection::MalformedSignature)
        );
        assert_eq!(hookgate_protocol::crypto::macs_computed(), before);
    }

    #[test]
    fn refuses_changed_content_stale_or_malformed_headers_and_other_keys() {
        use Rejection::{
            MalformedSignature, MissingSignature, SignatureMismatch, StaleTimestamp,
            UnsupportedAlgorithm,
        };
        assert_eq!(
            REFERENCE.verify(),
            Ok(()),
            "each case changes one field of this"
        );
        let v2 = "v2,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        let other_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let signed_at = 1_649_367_553;
        // (case, the reference delivery changed, rejection)
        #[rustfmt::skip]
        let cases = [
            ("body changed after signing",     Signed { body: b"{}", ..REFERENCE },          SignatureMismatch),
            ("id changed after signing",       Signed { id: "msg_other", ..REFERENCE },      SignatureMismatch),
            ("delivered 301 s after signing",  Signed { now: signed_at + 301, ..REFERENCE }, StaleTimestamp),
            ("delivered 301 s before signing", Signed { now: signed_at - 301, ..REFERENCE }, StaleTimestamp),
            ("timestamp not a number",         Signed { ts: "soon", ..REFERENCE },           MalformedSignature),
            ("signature without a version",    Signed { sig: "tZ1I4", ..REFERENCE },         MalformedSignature),
            ("v1 signature not base64",        Signed { sig: "v1,!!!", ..REFERENCE },        MalformedSignature),
            ("only a v2 signature",            Signed { sig: v2, ..REFERENCE },              UnsupportedAlgorithm),
            ("headers with another prefix",    Signed { prefix: "other", ..REFERENCE },      MissingSignature),
            ("verified with another key",      Signed { key: other_key, ..REFERENCE },       SignatureMismatch),
        ];
        for (case, delivery, rejection) in cases {
            assert_eq!(delivery.verify(), Err(rejection), "{case}");
        }
    }

    #[test]
    fn key_decoding() {
        assert!(StandardWebhooks.decode_secret("whsec_not base64!").is_err());
        assert!(StandardWebhooks.decode_secret("whsec_").is_err());
        assert_eq!(
            StandardWebhooks
                .decode_secret("whsec_aGk=")
                .unwrap()
                .expose(),
            b"hi"
        );
    }
}
