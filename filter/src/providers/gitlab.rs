//! GitLab: the secret itself in `X-Gitlab-Token` (no MAC), compared in constant time; or, from a hook with
//! a signing token, a Standard Webhooks signature (`webhook-id`, `webhook-timestamp`, `webhook-signature`)
//! over `id.timestamp.body`, checked as for `standard-webhooks`.
//!
//! A receiver's secret is a signing token when it has the `whsec_` prefix (GitLab issues them as
//! `whsec_<base64>`), a token otherwise. A delivery carrying a signature is decided by the signing
//! tokens when there are any; one without is decided by the tokens, unless the receiver requires the
//! signature (then only signing tokens may be configured).

use super::sender::is_signing_key;
use super::standard_webhooks::{decode_key, placeholder_key, verify_standard_webhook, KEY_PREFIX};
use super::{
    json_fields, top_level_ref, verify_token, Credential, PayloadFacts, Provider, Sender,
    VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GitLab;

const TOKEN_HEADER: &str = "x-gitlab-token";
const EVENT_HEADER: &str = "x-gitlab-event";
const SIGNATURE_HEADER: &str = "webhook-signature";
const DELIVERY_HEADERS: [&str; 2] = ["x-gitlab-event-uuid", "idempotency-key"];

impl Provider for GitLab {
    fn sender(&self) -> Sender {
        let credential = Credential::TokenOrSigningKey {
            header: TOKEN_HEADER,
        };
        Sender::new(
            credential,
            r#"{"checkout_sha":"3f786850e387550fdab836ed7e6dc881de23001b","object_kind":"push","ref":"refs/heads/main"}"#,
        )
        .event(EVENT_HEADER, "Push Hook")
        .delivery_header(DELIVERY_HEADERS[0])
    }
    fn verify(
        &self,
        d: &Delivery,
        secrets: &[Secret],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        let (signing_keys, tokens) = signing_keys_and_tokens(secrets);
        let signed = d.headers.get(SIGNATURE_HEADER).is_some();
        if !signing_keys.is_empty() && (signed || tokens.is_empty() || options.require_signature) {
            return verify_standard_webhook(d, &signing_keys);
        }
        if options.require_signature {
            // The configuration refuses this (no signing token); fail closed all the same.
            return Err(Rejection::MissingSignature);
        }
        verify_token(d.headers.get(TOKEN_HEADER), &tokens)
    }
    /// A signing token in the key format GitLab issues; a token is anything else, as GitLab takes it.
    fn decode_secret(&self, secret: &str) -> Result<Secret, String> {
        if let Some(encoded) = secret.strip_prefix(KEY_PREFIX) {
            decode_key(encoded).map_err(|e| format!("a whsec_ signing token: {e}"))?;
        }
        // Kept as written: verification tells a signing token from a token by its prefix.
        Ok(Secret::from(secret))
    }
    /// A signing token, so that a checked configuration may require the signature.
    fn placeholder_secret(&self, seed: &str) -> String {
        placeholder_key(seed)
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
    /// The ref, if the body is JSON that has one: Flux reads nothing of the body, so one that is not JSON
    /// passes with no ref (a receiver with `refs` then ignores it, as any delivery without a ref).
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        Ok(json_fields(d.body, &["/ref"])
            .map(|payload| top_level_ref(&payload))
            .unwrap_or_default())
    }
    /// Flux checks the token header and reads nothing of the body.
    fn takes_empty_body(&self, _: &Headers) -> bool {
        true
    }
}

/// The key bytes of each signing token, and the tokens, of a receiver's secrets (as `decode_secret`
/// kept them). Decoding the signing tokens' base64 here is cheap next to the MAC they key.
fn signing_keys_and_tokens(secrets: &[Secret]) -> (Vec<Secret>, Vec<Secret>) {
    let mut signing_keys = Vec::new();
    let mut tokens = Vec::new();
    for secret in secrets {
        let text = std::str::from_utf8(secret.expose()).unwrap_or_default();
        if is_signing_key(text) {
            // Checked at configure time; an undecodable one would verify nothing.
            if let Ok(key) = decode_key(&text[KEY_PREFIX.len()..]) {
                signing_keys.push(key);
            }
        } else {
            tokens.push(Secret::new(secret.expose()));
        }
    }
    (signing_keys, tokens)
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

    // The Standard Webhooks reference vector, as GitLab would send it from a hook with that signing token.
    const SIGNING_TOKEN: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: &str = "1649367553";
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
    const SIGNED_AT: u64 = 1_649_367_553;
    const TOKEN: &str = "gitlab-token";

    /// A delivery of the reference vector: its signature headers (each `None` left out), a token, when.
    #[derive(Clone, Copy)]
    struct Sent<'a> {
        id: Option<&'a str>,
        ts: Option<&'a str>,
        sig: Option<&'a str>,
        token: Option<&'a str>,
        body: &'a [u8],
        now: u64,
    }

    const SIGNED: Sent = Sent {
        id: Some(ID),
        ts: Some(TS),
        sig: Some(SIG),
        token: None,
        body: BODY,
        now: SIGNED_AT + 10,
    };
    const TOKEN_ONLY: Sent = Sent {
        id: None,
        ts: None,
        sig: None,
        token: Some(TOKEN),
        ..SIGNED
    };

    impl Sent<'_> {
        fn verify(&self, configured: &[&str], require_signature: bool) -> Result<(), Rejection> {
            let headers = [
                ("webhook-id", self.id),
                ("webhook-timestamp", self.ts),
                ("webhook-signature", self.sig),
                ("x-gitlab-token", self.token),
                ("x-gitlab-event", Some("Push Hook")),
            ];
            let h = Headers::new(headers.iter().filter_map(|(n, v)| v.map(|v| (*n, v))));
            let keys: Vec<Secret> = configured
                .iter()
                .map(|s| GitLab.decode_secret(s).unwrap())
                .collect();
            let d = Delivery {
                headers: &h,
                body: self.body,
                now: self.now,
                claims: None,
            };
            let options = VerifyOptions {
                require_signature,
                ..Default::default()
            };
            GitLab.verify(&d, &keys, options)
        }
    }

    #[test]
    fn signing_token_or_token_per_secret() {
        use Rejection::{
            MalformedSignature, MissingSignature, SignatureMismatch, StaleTimestamp, TokenMismatch,
        };
        let both: &[&str] = &[TOKEN, SIGNING_TOKEN];
        let signing: &[&str] = &[SIGNING_TOKEN];
        let tokens: &[&str] = &[TOKEN];
        let other_key: &[&str] = &[TOKEN, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"];
        // (case, delivery, configured secrets, requireSignature, verdict)
        #[rustfmt::skip]
        let cases = [
            ("signature, signing token configured",      SIGNED,                                 signing,   false, Ok(())),
            ("signature, token and signing token",       SIGNED,                                 both,      false, Ok(())),
            ("signature, signature required",            SIGNED,                                 signing,   true,  Ok(())),
            ("signature and token, signature required",  Sent { token: Some(TOKEN), ..SIGNED },  signing,   true,  Ok(())),
            ("token, token and signing token",           TOKEN_ONLY,                             both,      false, Ok(())),
            ("token, tokens only",                       TOKEN_ONLY,                             tokens,    false, Ok(())),
            ("signature and token, tokens only",         Sent { token: Some(TOKEN), ..SIGNED },  tokens,    false, Ok(())),
            ("signature under another signing token",    Sent { token: Some(TOKEN), ..SIGNED },  other_key, false, Err(SignatureMismatch)),
            ("body changed after signing",               Sent { body: b"{}", ..SIGNED },         both,      false, Err(SignatureMismatch)),
            ("delivered 301 s after signing",            Sent { now: SIGNED_AT + 301, ..SIGNED }, both,     false, Err(StaleTimestamp)),
            ("signature not base64",                     Sent { sig: Some("v1,!!!"), ..SIGNED }, both,      false, Err(MalformedSignature)),
            ("timestamp missing",                        Sent { ts: None, ..SIGNED },            both,      false, Err(MissingSignature)),
            ("token only, signing tokens only",          TOKEN_ONLY,                             signing,   false, Err(MissingSignature)),
            ("token only, signature required",           TOKEN_ONLY,                             signing,   true,  Err(MissingSignature)),
            ("nothing at all",                           Sent { token: None, ..TOKEN_ONLY },     signing,   false, Err(MissingSignature)),
            ("the signing token sent as a token",        Sent { token: Some(SIGNING_TOKEN), ..TOKEN_ONLY }, both, false, Err(TokenMismatch)),
            ("wrong token",                              Sent { token: Some("guess"), ..TOKEN_ONLY }, both, false, Err(TokenMismatch)),
        ];
        for (case, sent, configured, require, verdict) in cases {
            assert_eq!(sent.verify(configured, require), verdict, "{case}");
        }
    }

    /// At most one MAC per signing token, and none for a token, however many signatures are sent.
    #[test]
    fn one_mac_per_signing_token() {
        let flood = format!("{} {SIG}", "v1,AAAA ".repeat(5000));
        for (configured, signature, macs) in [
            (&[TOKEN, SIGNING_TOKEN][..], Some(flood.as_str()), 1),
            (&[SIGNING_TOKEN, SIGNING_TOKEN][..], Some(SIG), 2),
            (&[TOKEN][..], Some(SIG), 0),
            (&[TOKEN, SIGNING_TOKEN][..], None, 0),
        ] {
            let sent = Sent {
                sig: signature,
                token: Some(TOKEN),
                ..SIGNED
            };
            let before = hookgate_protocol::crypto::macs_computed();
            let _ = sent.verify(configured, false);
            assert_eq!(
                hookgate_protocol::crypto::macs_computed() - before,
                macs,
                "{configured:?}"
            );
        }
    }

    #[test]
    fn signing_tokens_are_checked_when_configured() {
        assert!(GitLab.decode_secret("whsec_%%").is_err());
        assert!(GitLab.decode_secret("whsec_").is_err());
        assert!(GitLab.decode_secret("any token at all").is_ok());
        let placeholder = GitLab.placeholder_secret("x");
        assert!(is_signing_key(&placeholder) && GitLab.decode_secret(&placeholder).is_ok());
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
            Ok(PayloadFacts::default()),
            "Flux reads nothing of the body"
        );
    }
}
