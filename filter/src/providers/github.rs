//! GitHub: `X-Hub-Signature-256: sha256=<hex>` over the raw body (`X-Hub-Signature` with `sha256=`,
//! `sha512=` or, only when the receiver opts in, `sha1=` is accepted when the SHA-256 header is absent).
//! JSON or form-encoded bodies (the JSON is then the `payload` field; the MAC still covers the raw body).

use std::borrow::Cow;

use super::{
    json_fields, string_at, top_level_ref, verify_prefixed_hex_signature, Credential, PayloadFacts,
    Provider, Sender, VerifyOptions,
};
use crate::delivery::{Delivery, Headers};
use crate::outcome::Rejection;
use hookgate_protocol::crypto::Algorithm;
use hookgate_protocol::Secret;

#[derive(Debug)]
pub struct GitHub;

const SIGNATURE_HEADER: &str = "x-hub-signature-256";
const EVENT_HEADER: &str = "x-github-event";
const DELIVERY_HEADER: &str = "x-github-delivery";

/// A push to `main`, as GitHub and Gitea send it.
pub(super) const PUSH_SAMPLE: &str = r#"{"after":"3f786850e387550fdab836ed7e6dc881de23001b","before":"0000000000000000000000000000000000000000","commits":[],"ref":"refs/heads/main","repository":{"full_name":"example/webapp"}}"#;

impl Provider for GitHub {
    fn sender(&self) -> Sender {
        let credential = Credential::BodyMac {
            header: SIGNATURE_HEADER,
            algorithm: Algorithm::Sha256,
            labelled: true,
        };
        Sender::new(credential, PUSH_SAMPLE)
            .event(EVENT_HEADER, "push")
            .delivery_header(DELIVERY_HEADER)
    }
    fn verify(
        &self,
        d: &Delivery,
        secrets: &[Secret],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        verify_github_signature(d, secrets, options.allow_sha1)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn supports_sha1(&self) -> bool {
        true
    }
    fn supports_refs(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get(EVENT_HEADER).map(str::to_owned)
    }
    fn is_ping(&self, event: &str) -> bool {
        event.eq_ignore_ascii_case("ping")
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.get(DELIVERY_HEADER).map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        github_payload_facts(d)
    }
    fn takes_empty_body(&self, headers: &Headers) -> bool {
        go_github_reads_body(headers)
    }
}

/// Whether go-github's `ValidatePayload`, which Flux's `github` and `bitbucket` receivers call, reads the
/// body of a request with `headers`: it takes a JSON or form-encoded body by its Content-Type (media type,
/// parameters aside), the empty one too, and refuses any other. (Go's parser also refuses malformed
/// parameters, which this does not look at.)
pub(crate) fn go_github_reads_body(headers: &Headers) -> bool {
    let Some(content_type) = headers.get("content-type") else {
        return false;
    };
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    ["application/json", "application/x-www-form-urlencoded"]
        .iter()
        .any(|known| media_type.eq_ignore_ascii_case(known))
}

/// Signature check shared with Gitea, which sends GitHub's headers too.
pub(crate) fn verify_github_signature(
    d: &Delivery,
    secrets: &[Secret],
    allow_sha1: bool,
) -> Result<(), Rejection> {
    let header = d.headers.first_of(&[SIGNATURE_HEADER, "x-hub-signature"]);
    verify_prefixed_hex_signature(header, d, secrets, allow_sha1)
}

/// Ref of a push and image tag of a `package` / `registry_package` event.
pub(crate) fn github_payload_facts(d: &Delivery) -> Result<PayloadFacts, Rejection> {
    let json = payload_json(d.headers, d.body)?;
    const TAGS: [&str; 2] = [
        "/package/package_version/container_metadata/tag/name",
        "/registry_package/package_version/container_metadata/tag/name",
    ];
    let payload = json_fields(&json, &["/ref", TAGS[0], TAGS[1]])?;
    let mut facts = top_level_ref(&payload);
    facts.image_tag = TAGS
        .iter()
        .find_map(|p| string_at(&payload, p))
        .filter(|t| !t.is_empty());
    Ok(facts)
}

/// The JSON document of a delivery: the body itself, or its `payload` form field.
fn payload_json<'a>(headers: &Headers, body: &'a [u8]) -> Result<Cow<'a, [u8]>, Rejection> {
    let content_type = headers.get("content-type").unwrap_or("application/json");
    if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        form_field(body, "payload")
            .map(Cow::Owned)
            .ok_or(Rejection::MalformedPayload)
    } else {
        Ok(Cow::Borrowed(body))
    }
}

/// The percent-decoded value of `name` in an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<Vec<u8>> {
    body.split(|&b| b == b'&').find_map(|pair| {
        let mut kv = pair.splitn(2, |&b| b == b'=');
        let key = percent_decode(kv.next()?)?;
        (key == name.as_bytes()).then(|| percent_decode(kv.next().unwrap_or_default()))?
    })
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = (*bytes.next()? as char).to_digit(16)?;
                let lo = (*bytes.next()? as char).to_digit(16)?;
                out.push((hi * 16 + lo) as u8);
            }
            _ => out.push(b),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::*;
    use hookgate_protocol::crypto::Algorithm;

    fn signed(
        headers: &[(&str, &str)],
        body: &[u8],
        options: VerifyOptions,
    ) -> Result<(), Rejection> {
        let h = Headers::new(headers.iter().copied());
        GitHub.verify(&delivery(&h, body), &secrets(&[SECRET]), options)
    }

    #[test]
    fn official_known_answer_vector() {
        // From GitHub's "Validating webhook deliveries" documentation.
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            hex_hmac(Algorithm::Sha256, SECRET, b"Hello, World!"),
            sig[7..]
        );
        assert_eq!(
            signed(
                &[("X-Hub-Signature-256", sig)],
                b"Hello, World!",
                VerifyOptions::default()
            ),
            Ok(())
        );
    }

    #[test]
    fn sha512_in_legacy_header_and_sha1_only_when_opted_in() {
        let body = b"{}";
        let sha512 = format!("sha512={}", hex_hmac(Algorithm::Sha512, SECRET, body));
        assert_eq!(
            signed(
                &[("x-hub-signature", &sha512)],
                body,
                VerifyOptions::default()
            ),
            Ok(())
        );
        let sha1 = format!("sha1={}", hex_hmac(Algorithm::Sha1, SECRET, body));
        assert_eq!(
            signed(
                &[("x-hub-signature", &sha1)],
                body,
                VerifyOptions::default()
            ),
            Err(Rejection::UnsupportedAlgorithm)
        );
        assert_eq!(
            signed(
                &[("x-hub-signature", &sha1)],
                body,
                VerifyOptions {
                    allow_sha1: true,
                    ..Default::default()
                }
            ),
            Ok(())
        );
    }

    #[test]
    fn refuses_changed_bodies_other_keys_and_malformed_signatures() {
        use Rejection::{
            MalformedSignature, MissingSignature, SignatureMismatch, UnsupportedAlgorithm,
        };
        let body = b"{\"ref\":\"refs/heads/main\"}";
        let good = format!("sha256={}", hex_hmac(Algorithm::Sha256, SECRET, body));
        let other_key = format!("sha256={}", hex_hmac(Algorithm::Sha256, "wrong", body));
        let md5 = good.replace("sha256=", "md5=");
        let relabelled = good.replace("sha256=", "sha512=");
        // (case, X-Hub-Signature-256, body, rejection)
        #[rustfmt::skip]
        let cases: [(&str, Option<&str>, &[u8], Rejection); 7] = [
            ("body changed after signing",       Some(&good),        b"{\"ref\":\"refs/heads/evil\"}", SignatureMismatch),
            ("signed with another secret",       Some(&other_key),   body,                           SignatureMismatch),
            ("no signature",                     None,               body,                           MissingSignature),
            ("hex without its algorithm label",  Some(&good[7..]),   body,                           MalformedSignature),
            ("md5 label",                        Some(&md5),         body,                           UnsupportedAlgorithm),
            ("label with a MAC that is not hex", Some("sha256=xyz"), body,                           MalformedSignature),
            ("SHA-256 MAC labelled sha512",      Some(&relabelled),  body,                           SignatureMismatch),
        ];
        for (case, signature, body, rejection) in cases {
            let headers: Vec<_> = signature
                .map(|s| ("x-hub-signature-256", s))
                .into_iter()
                .collect();
            assert_eq!(
                signed(&headers, body, VerifyOptions::default()),
                Err(rejection),
                "{case}"
            );
        }
    }

    #[test]
    fn reads_ref_from_json_and_form_bodies_and_package_tags() {
        let h = Headers::new([("content-type", "application/json")]);
        let facts = GitHub
            .payload(&delivery(&h, b"{\"ref\":\"refs/heads/main\"}"))
            .unwrap();
        assert_eq!(facts.git_ref.as_deref(), Some("refs/heads/main"));

        let form = Headers::new([("content-type", "application/x-www-form-urlencoded")]);
        let body = b"payload=%7B%22ref%22%3A%22refs%2Ftags%2Fv1.0%22%7D";
        let facts = GitHub.payload(&delivery(&form, body)).unwrap();
        assert_eq!(facts.git_ref.as_deref(), Some("refs/tags/v1.0"));
        assert_eq!(
            GitHub.payload(&delivery(&form, b"other=1")),
            Err(Rejection::MalformedPayload)
        );
        assert_eq!(
            GitHub.payload(&delivery(&form, b"payload=%zz")),
            Err(Rejection::MalformedPayload)
        );
        assert_eq!(
            GitHub.payload(&delivery(&h, b"[1]")),
            Err(Rejection::MalformedPayload)
        );

        let package = br#"{"action":"published","package":{"package_version":{"container_metadata":{"tag":{"name":"1.4.2"}}}}}"#;
        let facts = GitHub.payload(&delivery(&h, package)).unwrap();
        assert_eq!(facts.image_tag.as_deref(), Some("1.4.2"));
        assert_eq!(facts.git_ref, None);
    }

    #[test]
    fn event_and_delivery_headers() {
        let h = Headers::new([
            ("X-GitHub-Event", "ping"),
            ("X-GitHub-Delivery", "72d3162e"),
        ]);
        let d = delivery(&h, b"");
        assert!(GitHub.is_ping(&GitHub.event(&d).unwrap()));
        assert_eq!(GitHub.delivery_id(&d).as_deref(), Some("72d3162e"));
    }
}
