//! The sending side of a provider: how a genuine sender of each type delivers. Each provider describes its
//! own sender ([`super::Provider::sender`]); [`sign`] turns that description into headers, for
//! `hookgate send`, the fuzzer and the tests that check signing against verification.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hookgate_protocol::crypto::{hmac, Algorithm};
use hookgate_protocol::Secret;

use super::Provider;

/// How a sender proves that a delivery is genuine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// Nothing in the request: knowing the secret URL path is the proof.
    SecretPath,
    /// `header: hex(HMAC(key, body))`, the hex prefixed with `sha256=` (the algorithm's label) when
    /// `labelled`.
    BodyMac {
        header: &'static str,
        algorithm: Algorithm,
        labelled: bool,
    },
    /// The secret itself in `header`, after `<scheme> ` when there is a scheme.
    Token {
        header: &'static str,
        scheme: Option<&'static str>,
    },
    /// `Authorization: Basic base64(user:password)`, the secret being `user:password`.
    BasicAuth,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256>`
    /// over `id.timestamp.body`, under the key the `whsec_` secret encodes.
    StandardWebhooks,
    /// GitLab: a `whsec_` secret is a signing token, proven as [`Credential::StandardWebhooks`]; any other
    /// secret is a token sent as itself in `header`.
    TokenOrSigningKey { header: &'static str },
    /// `Authorization: Bearer <ID token>`, the token signed by an OIDC issuer and verified by Envoy's JWT
    /// filter ([`crate::id_token`]); the receiver holds no secret. `hookgate send` takes the token as the
    /// secret.
    IdToken,
}

impl Credential {
    /// Whether the proof made with `secret` covers the body, so a body changed in transit is refused.
    pub fn signs_body(&self, secret: &str) -> bool {
        match self {
            Self::BodyMac { .. } | Self::StandardWebhooks => true,
            Self::TokenOrSigningKey { .. } => is_signing_key(secret),
            Self::SecretPath | Self::Token { .. } | Self::BasicAuth | Self::IdToken => false,
        }
    }
}

/// Whether a secret of a [`Credential::TokenOrSigningKey`] type is a signing key: it has the Standard
/// Webhooks key prefix, as the signing tokens GitLab issues do.
pub fn is_signing_key(secret: &str) -> bool {
    secret.starts_with(super::standard_webhooks::KEY_PREFIX)
}

/// What a genuine sender of a type sends besides the body.
#[derive(Clone, Copy, Debug)]
pub struct Sender {
    pub credential: Credential,
    /// The header naming the event, and the event sent when none is asked for.
    pub event: Option<(&'static str, &'static str)>,
    /// The header carrying the delivery's id.
    pub delivery_header: Option<&'static str>,
    /// Headers sent with the same value every time.
    pub fixed_headers: &'static [(&'static str, &'static str)],
    /// A payload the type accepts: what `hookgate send` sends without `--payload`.
    pub sample_payload: &'static str,
}

/// The sample payload of types that accept any body.
pub(crate) const ANY_JSON_SAMPLE: &str = r#"{"event":"sample"}"#;

impl Sender {
    /// A sender proving itself by `credential`, with neither event nor delivery id.
    pub const fn new(credential: Credential, sample_payload: &'static str) -> Self {
        Self {
            credential,
            event: None,
            delivery_header: None,
            fixed_headers: &[],
            sample_payload,
        }
    }
    pub const fn event(self, header: &'static str, default: &'static str) -> Self {
        Self {
            event: Some((header, default)),
            ..self
        }
    }
    pub const fn delivery_header(self, header: &'static str) -> Self {
        Self {
            delivery_header: Some(header),
            ..self
        }
    }
    pub const fn fixed_headers(self, headers: &'static [(&'static str, &'static str)]) -> Self {
        Self {
            fixed_headers: headers,
            ..self
        }
    }
}

/// What changes from one delivery to the next.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing<'a> {
    /// The event to name; the sender's default when `None`.
    pub event: Option<&'a str>,
    pub delivery_id: &'a str,
    /// Seconds since the Unix epoch, for timestamped proofs.
    pub now: u64,
    pub body: &'a [u8],
}

/// The headers a genuine sender of `provider` holding `secret` sends with `outgoing`, the proof last.
/// An error (a secret the type cannot use) never shows the secret.
pub fn sign(
    provider: &dyn Provider,
    secret: &str,
    outgoing: &Outgoing,
) -> Result<Vec<(String, String)>, String> {
    let sender = provider.sender();
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    let mut add = |name: &str, value: String| headers.push((name.to_string(), value));
    if let Some((header, default)) = sender.event {
        add(header, outgoing.event.unwrap_or(default).to_string());
    }
    if let Some(header) = sender.delivery_header {
        add(header, outgoing.delivery_id.to_string());
    }
    for (name, value) in sender.fixed_headers {
        add(name, value.to_string());
    }
    match sender.credential {
        Credential::SecretPath => {}
        Credential::BodyMac {
            header,
            algorithm,
            labelled,
        } => {
            let key = provider.decode_secret(secret)?;
            let mac = hex::encode(hmac(algorithm, key.expose(), &[outgoing.body]));
            add(
                header,
                if labelled {
                    format!("{}={mac}", algorithm.prefix())
                } else {
                    mac
                },
            );
        }
        Credential::Token { header, scheme } => add(
            header,
            match scheme {
                Some(scheme) => format!("{scheme} {secret}"),
                None => secret.to_string(),
            },
        ),
        Credential::IdToken => add("authorization", format!("Bearer {secret}")),
        Credential::BasicAuth => add(
            "authorization",
            format!("Basic {}", STANDARD.encode(secret)),
        ),
        Credential::StandardWebhooks => {
            standard_webhook_headers(&provider.decode_secret(secret)?, outgoing, add)
        }
        Credential::TokenOrSigningKey { header } => {
            if is_signing_key(secret) {
                let encoded = &secret[super::standard_webhooks::KEY_PREFIX.len()..];
                let key = super::standard_webhooks::decode_key(encoded)?;
                standard_webhook_headers(&key, outgoing, add);
            } else {
                add(header, secret.to_string());
            }
        }
    }
    Ok(headers)
}

/// `webhook-id`, `webhook-timestamp` and `webhook-signature` of `outgoing` signed with `key`.
fn standard_webhook_headers(key: &Secret, outgoing: &Outgoing, mut add: impl FnMut(&str, String)) {
    let id = format!("msg_{}", outgoing.delivery_id);
    let timestamp = outgoing.now.to_string();
    let mac = hmac(
        Algorithm::Sha256,
        key.expose(),
        &super::standard_webhooks::signed_content(&id, &timestamp, outgoing.body),
    );
    add("webhook-id", id);
    add("webhook-timestamp", timestamp);
    add("webhook-signature", format!("v1,{}", STANDARD.encode(mac)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Delivery, Headers};
    use crate::outcome::Rejection;
    use crate::providers::test_support::{delivery, NOW};
    use crate::providers::{Proof, VerifyOptions, PROVIDERS};

    fn signed(provider: &dyn Provider, secret: &str, body: &[u8]) -> Headers {
        let outgoing = Outgoing {
            event: None,
            delivery_id: "d-1",
            now: NOW,
            body,
        };
        Headers::new(sign(provider, secret, &outgoing).expect("the placeholder secret is usable"))
    }

    /// `d` as the pipeline hands it on for a type proving with an ID token: with the claims it checked
    /// (`id_token`). Without them, such a type refuses.
    fn with_verified_claims<'a>(
        provider: &dyn Provider,
        keys: &[Secret],
        d: Delivery<'a>,
        claims: &'a serde_json::Map<String, serde_json::Value>,
    ) -> Delivery<'a> {
        if provider.proof() != Proof::VerifiedToken {
            return d;
        }
        assert_eq!(
            provider.verify(&d, keys, VerifyOptions::default()),
            Err(Rejection::TokenNotVerified)
        );
        Delivery {
            claims: Some(claims),
            ..d
        }
    }

    /// What a sender of each type sends is what the type's verification and payload parser accept, and a
    /// body changed in transit is refused exactly by the types whose proof covers the body.
    #[test]
    fn every_sender_is_accepted_by_its_own_type() {
        for (name, provider) in PROVIDERS {
            let secret = provider.placeholder_secret(name);
            let keys = vec![provider.decode_secret(&secret).unwrap()];
            let sender = provider.sender();
            let body = sender.sample_payload.as_bytes();
            let headers = signed(*provider, &secret, body);
            let verified_claims = serde_json::Map::new();
            let with_claims = |d| with_verified_claims(*provider, &keys, d, &verified_claims);
            let d = with_claims(delivery(&headers, body));
            assert_eq!(
                provider.verify(&d, &keys, VerifyOptions::default()),
                Ok(()),
                "{name}"
            );
            assert!(provider.payload(&d).is_ok(), "{name}: sample payload");
            if let Some((_, default)) = sender.event {
                assert_eq!(provider.event(&d).as_deref(), Some(default), "{name}");
            }
            if sender.delivery_header.is_some() {
                assert_eq!(provider.delivery_id(&d).as_deref(), Some("d-1"), "{name}");
            }
            let tampered = with_claims(delivery(&headers, b"{\"changed\":true}"));
            let expected = if sender.credential.signs_body(&secret) {
                Err(Rejection::SignatureMismatch)
            } else {
                Ok(())
            };
            assert_eq!(
                provider.verify(&tampered, &keys, VerifyOptions::default()),
                expected,
                "{name}: changed body"
            );
        }
    }

    /// A GitLab sender proves itself by its secret's kind: a token as itself, a signing token by signing.
    #[test]
    fn a_gitlab_sender_signs_only_with_a_signing_token() {
        let gitlab = crate::providers::lookup("gitlab").unwrap();
        let body = gitlab.sender().sample_payload.as_bytes();
        for (secret, proof_header, absent_header) in [
            ("gitlab-token", "x-gitlab-token", "webhook-signature"),
            (
                "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
                "webhook-signature",
                "x-gitlab-token",
            ),
        ] {
            let headers = signed(gitlab, secret, body);
            assert!(headers.get(proof_header).is_some(), "{secret}");
            assert!(headers.get(absent_header).is_none(), "{secret}");
            let keys = vec![gitlab.decode_secret(secret).unwrap()];
            let d = delivery(&headers, body);
            assert_eq!(
                gitlab.verify(&d, &keys, VerifyOptions::default()),
                Ok(()),
                "{secret}"
            );
            assert_eq!(gitlab.event(&d).as_deref(), Some("Push Hook"), "{secret}");
        }
    }

    #[test]
    fn the_requested_event_replaces_the_default() {
        let github = crate::providers::lookup("github").unwrap();
        let headers = Headers::new(
            sign(
                github,
                "s",
                &Outgoing {
                    event: Some("ping"),
                    delivery_id: "d",
                    now: NOW,
                    body: b"{}",
                },
            )
            .unwrap(),
        );
        assert_eq!(
            github.event(&delivery(&headers, b"{}")).as_deref(),
            Some("ping")
        );
    }

    #[test]
    fn a_secret_the_type_cannot_use_is_an_error_that_does_not_show_it() {
        let sw = crate::providers::lookup("standard-webhooks").unwrap();
        let outgoing = Outgoing {
            event: None,
            delivery_id: "d",
            now: NOW,
            body: b"{}",
        };
        let error = sign(sw, "whsec_not base64!", &outgoing).unwrap_err();
        assert!(!error.contains("not base64!"), "{error}");
    }

    #[test]
    fn only_secret_path_senders_prove_nothing_in_the_request() {
        for (name, provider) in PROVIDERS {
            assert_eq!(
                provider.sender().credential == Credential::SecretPath,
                provider.proof() == Proof::SecretPath,
                "{name}"
            );
        }
    }
}
