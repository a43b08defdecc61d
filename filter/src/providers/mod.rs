//! Webhook providers: one module each, behind [`Provider`]. Adding a provider means writing its module and
//! adding one row to [`PROVIDERS`].

use serde_json::Value;

use crate::crypto::{any_hmac_matches, token_matches_any, Algorithm};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

mod acr;
mod basic;
mod bearer;
mod bitbucket;
mod cdevents;
mod dockerhub;
mod generic;
mod generic_hmac;
mod gitea;
mod github;
mod gitlab;
mod harbor;
mod nexus;
mod quay;
mod sparse_json;
mod standard_webhooks;

/// Every provider type the configuration accepts, by its `type` name.
pub static PROVIDERS: &[(&str, &dyn Provider)] = &[
    ("github", &github::GitHub),
    ("gitea", &gitea::Gitea),
    ("gitlab", &gitlab::GitLab),
    ("bitbucket", &bitbucket::Bitbucket),
    ("generic", &generic::Generic),
    ("generic-hmac", &generic_hmac::GenericHmac),
    ("standard-webhooks", &standard_webhooks::StandardWebhooks),
    ("harbor", &harbor::Harbor),
    ("nexus", &nexus::Nexus),
    ("dockerhub", &dockerhub::DockerHub),
    ("quay", &quay::Quay),
    ("acr", &acr::Acr),
    ("cdevents", &cdevents::CdEvents),
    ("bearer", &bearer::Bearer),
    ("basic", &basic::Basic),
];

pub fn lookup(name: &str) -> Option<&'static dyn Provider> {
    PROVIDERS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, provider)| *provider)
}

pub fn names() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().map(|(n, _)| *n)
}

/// How a provider proves that a delivery is genuine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proof {
    /// A MAC or token in the request, checked by [`Provider::verify`].
    InRequest,
    /// Nothing in the request: knowing the secret URL path is the proof, so the path must be derived from
    /// the secret (an explicit path is refused by the configuration).
    SecretPath,
}

/// Per-receiver switches that change verification.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions {
    /// Accept legacy HMAC-SHA1 signatures where the provider can send them.
    pub allow_sha1: bool,
}

/// Facts read from a verified payload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PayloadFacts {
    pub git_ref: Option<String>,
    pub image_tag: Option<String>,
}

pub trait Provider: Sync {
    fn proof(&self) -> Proof {
        Proof::InRequest
    }

    /// Checks the delivery's proof of origin against every configured secret.
    ///
    /// The default serves [`Proof::SecretPath`] types: reaching this point means the request's path was
    /// derived from one of the receiver's secrets. A type that proves in the request and forgets to
    /// implement this fails closed.
    fn verify(
        &self,
        _delivery: &Delivery,
        _secrets: &[Vec<u8>],
        _options: VerifyOptions,
    ) -> Result<(), Rejection> {
        match self.proof() {
            Proof::SecretPath => Ok(()),
            Proof::InRequest => Err(Rejection::MissingSignature),
        }
    }

    /// Turns a configured secret into key bytes; an error is reported at configure time.
    fn decode_secret(&self, secret: &str) -> Result<Vec<u8>, String> {
        Ok(secret.as_bytes().to_vec())
    }

    /// A secret that [`Provider::decode_secret`] accepts, standing in for one whose variable is unset
    /// when a configuration is only checked (`hookgate check`). Distinct for distinct `seed`s (the
    /// variable's name), so that the paths derived from two unset variables stay apart.
    fn placeholder_secret(&self, seed: &str) -> String {
        format!("hookgate-check-{seed}")
    }

    /// Whether a receiver of this type may filter on `events`.
    fn supports_events(&self) -> bool {
        false
    }
    /// Whether `allowSha1` means anything for this type.
    fn supports_sha1(&self) -> bool {
        false
    }
    /// Whether payloads of this type carry Git refs, so a ref filter can apply.
    fn supports_refs(&self) -> bool {
        false
    }
    /// HTTP methods the provider sends deliveries with.
    fn methods(&self) -> &'static [&'static str] {
        &["POST"]
    }

    /// The delivery's event name, if the provider names one.
    fn event(&self, _delivery: &Delivery) -> Option<String> {
        None
    }
    /// Ping-style events are answered at the edge after verification and never forwarded.
    fn is_ping(&self, _event: &str) -> bool {
        false
    }
    fn delivery_id(&self, _delivery: &Delivery) -> Option<String> {
        None
    }
    /// Reads ref and image tag; refuses a payload this type must be able to parse.
    fn payload(&self, _delivery: &Delivery) -> Result<PayloadFacts, Rejection> {
        Ok(PayloadFacts::default())
    }
}

/// Verifies `<algorithm>=<hex MAC>` (GitHub, Bitbucket and Flux's generic-hmac format) over the raw body.
pub(crate) fn verify_prefixed_hex_signature(
    header: Option<&str>,
    delivery: &Delivery,
    secrets: &[Vec<u8>],
    allow_sha1: bool,
) -> Result<(), Rejection> {
    let header = header.ok_or(Rejection::MissingSignature)?.trim();
    let (prefix, hex_mac) = header
        .split_once('=')
        .ok_or(Rejection::MalformedSignature)?;
    let algorithm = Algorithm::from_prefix(prefix).ok_or(Rejection::UnsupportedAlgorithm)?;
    if algorithm == Algorithm::Sha1 && !allow_sha1 {
        return Err(Rejection::UnsupportedAlgorithm);
    }
    verify_hex_mac(algorithm, hex_mac, delivery.body, secrets)
}

/// Verifies a bare hex MAC over the raw body (Gitea, Nexus).
pub(crate) fn verify_hex_mac(
    algorithm: Algorithm,
    hex_mac: &str,
    body: &[u8],
    secrets: &[Vec<u8>],
) -> Result<(), Rejection> {
    let mac = hex::decode(hex_mac.trim()).map_err(|_| Rejection::MalformedSignature)?;
    if any_hmac_matches(algorithm, secrets, &[body], &mac) {
        Ok(())
    } else {
        Err(Rejection::SignatureMismatch)
    }
}

/// Verifies a static token sent in a header, in constant time.
pub(crate) fn verify_token(presented: Option<&str>, secrets: &[Vec<u8>]) -> Result<(), Rejection> {
    let presented = presented.ok_or(Rejection::MissingToken)?;
    if token_matches_any(presented.as_bytes(), secrets) {
        Ok(())
    } else {
        Err(Rejection::TokenMismatch)
    }
}

/// The credentials of `Authorization: <scheme> <credentials>`, scheme case-insensitive (RFC 9110 §11.1).
pub(crate) fn authorization_credentials<'a>(
    d: &Delivery<'a>,
    scheme: &str,
) -> Result<&'a str, Rejection> {
    let header = d
        .headers
        .get("authorization")
        .ok_or(Rejection::MissingToken)?;
    let (given, credentials) = header
        .trim()
        .split_once(' ')
        .ok_or(Rejection::MalformedSignature)?;
    let credentials = credentials.trim();
    if !given.eq_ignore_ascii_case(scheme) || credentials.is_empty() {
        return Err(Rejection::MalformedSignature);
    }
    Ok(credentials)
}

/// The body as a JSON object holding only the values at `pointers`, or a malformed-payload rejection.
pub(crate) fn json_fields(body: &[u8], pointers: &[&str]) -> Result<Value, Rejection> {
    sparse_json::sparse_object(body, pointers).ok_or(Rejection::MalformedPayload)
}

/// The string at JSON `pointer`, if there is one.
pub(crate) fn string_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// The facts of a push payload whose top-level `ref` is the full Git ref (GitHub, Gitea, GitLab).
pub(crate) fn top_level_ref(payload: &Value) -> PayloadFacts {
    PayloadFacts {
        git_ref: string_at(payload, "/ref").filter(|r| !r.is_empty()),
        image_tag: None,
    }
}

/// Facts of a registry payload that must carry every string at `required`; the image tag is at `tag`.
pub(crate) fn registry_payload(
    body: &[u8],
    required: &[&str],
    tag: &str,
) -> Result<PayloadFacts, Rejection> {
    let pointers: Vec<&str> = required.iter().copied().chain([tag]).collect();
    let payload = json_fields(body, &pointers)?;
    if required.iter().any(|p| string_at(&payload, p).is_none()) {
        return Err(Rejection::MalformedPayload);
    }
    Ok(PayloadFacts {
        git_ref: None,
        image_tag: string_at(&payload, tag),
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::crypto::{hmac, Algorithm};
    use crate::delivery::{Delivery, Headers};

    pub const SECRET: &str = "It's a Secret to Everybody";
    pub const NOW: u64 = 1_700_000_000;

    pub fn hex_hmac(algorithm: Algorithm, secret: &str, body: &[u8]) -> String {
        hex::encode(hmac(algorithm, secret.as_bytes(), &[body]))
    }

    pub fn secrets(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    /// Builds a delivery borrowing from `headers` and `body`.
    pub fn delivery<'a>(headers: &'a Headers, body: &'a [u8]) -> Delivery<'a> {
        Delivery {
            headers,
            body,
            now: NOW,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_name_is_unique_and_found() {
        for (name, _) in PROVIDERS {
            assert!(lookup(name).is_some());
            assert_eq!(PROVIDERS.iter().filter(|(n, _)| n == name).count(), 1);
        }
        assert!(lookup("GitHub").is_none());
    }

    #[test]
    fn a_type_without_its_own_verification_fails_closed() {
        struct Forgetful;
        impl Provider for Forgetful {}
        let headers = crate::delivery::Headers::default();
        let d = test_support::delivery(&headers, b"{}");
        assert_eq!(
            Forgetful.verify(&d, &[], VerifyOptions::default()),
            Err(Rejection::MissingSignature)
        );
    }

    #[test]
    fn secret_path_providers_need_no_request_proof() {
        let secret_path: Vec<&str> = PROVIDERS
            .iter()
            .filter(|(_, p)| p.proof() == Proof::SecretPath)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            secret_path,
            ["generic", "dockerhub", "quay", "acr", "cdevents"]
        );
    }
}
