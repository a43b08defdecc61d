//! Azure Container Registry: no proof in the request (the secret path is the proof); the payload must
//! decode as Flux decodes it, into `{action, target:{repository, tag}}` (no field required).

use super::{registry_payload, string_at, Credential, GoType, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Acr;

/// The struct Flux decodes an ACR payload into.
const FLUX_PAYLOAD: &[(&str, GoType)] = &[
    ("action", GoType::String),
    (
        "target",
        GoType::Struct(&[("repository", GoType::String), ("tag", GoType::String)]),
    ),
];

impl Provider for Acr {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"action":"push","id":"sample","target":{"repository":"webapp","tag":"1.0.0"}}"#,
        )
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        super::json_fields(d.body, &["/id"])
            .ok()
            .and_then(|p| string_at(&p, "/id"))
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        registry_payload(d.body, FLUX_PAYLOAD, "/target/tag")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::{assert_tag_cases, delivery, TagCase};

    /// Issue 22, item 7: what Flux's `json.NewDecoder(body).Decode(&payload)` accepts, and nothing else.
    #[test]
    fn payloads_are_decoded_as_flux_decodes_them() {
        let malformed = Err(Rejection::MalformedPayload);
        let cases: &[TagCase] = &[
            (
                "ACR's push",
                br#"{"id":"a1","action":"push","target":{"repository":"app","tag":"v9","digest":"sha256:00"}}"#,
                Ok(Some("v9")),
            ),
            ("an empty target", br#"{"action":"push","target":{}}"#, Ok(None)),
            ("no action", br#"{"target":{"tag":"v1"}}"#, Ok(Some("v1"))),
            ("an empty object", b"{}", Ok(None)),
            ("null", b"null", Ok(None)),
            ("field names in another case", br#"{"Target":{"Tag":"v2"}}"#, Ok(Some("v2"))),
            ("text after the object", br#"{"target":{"tag":"v3"}}{}"#, Ok(Some("v3"))),
            ("action a number", br#"{"action":1}"#, malformed),
            ("target a list", br#"{"target":[]}"#, malformed),
            ("tag a boolean", br#"{"target":{"tag":true}}"#, malformed),
            ("an empty body", b"", malformed),
            ("not JSON", b"<xml/>", malformed),
        ];
        assert_tag_cases(&Acr, cases);
    }

    #[test]
    fn delivery_id_is_the_event_id() {
        let h = Headers::default();
        let body = br#"{"id":"a1","action":"push","target":{"repository":"app","tag":"v9"}}"#;
        assert_eq!(Acr.delivery_id(&delivery(&h, body)).as_deref(), Some("a1"));
    }
}
