//! Quay: no proof in the request (the secret path is the proof); the payload must decode as Flux decodes
//! it, into `{docker_url, updated_tags[]}` (no field required). The image tag is the first updated tag.

use super::{registry_payload, Credential, GoType, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Quay;

/// The struct Flux decodes a Quay payload into.
const FLUX_PAYLOAD: &[(&str, GoType)] = &[
    ("docker_url", GoType::String),
    ("updated_tags", GoType::Strings),
];

impl Provider for Quay {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"docker_url":"quay.io/example/webapp","updated_tags":["1.0.0"]}"#,
        )
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        registry_payload(d.body, FLUX_PAYLOAD, "/updated_tags/0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_support::{assert_tag_cases, TagCase};

    /// Issue 22, item 7: what Flux's `json.NewDecoder(body).Decode(&payload)` accepts, and nothing else.
    #[test]
    fn payloads_are_decoded_as_flux_decodes_them() {
        let malformed = Err(Rejection::MalformedPayload);
        let cases: &[TagCase] = &[
            (
                "Quay's push",
                br#"{"docker_url":"quay.io/org/app","updated_tags":["v1","latest"],"repository":"org/app"}"#,
                Ok(Some("v1")),
            ),
            ("no updated_tags", br#"{"docker_url":"quay.io/org/app"}"#, Ok(None)),
            ("no docker_url", br#"{"updated_tags":["v1"]}"#, Ok(Some("v1"))),
            ("no tags", br#"{"updated_tags":[]}"#, Ok(None)),
            ("null tags", br#"{"updated_tags":null}"#, Ok(None)),
            ("a null tag", br#"{"updated_tags":[null,"v2"]}"#, Ok(None)),
            ("null", b"null", Ok(None)),
            (
                "field names in another case",
                br#"{"Updated_Tags":["v3"]}"#,
                Ok(Some("v3")),
            ),
            ("text after the object", br#"{"updated_tags":["v4"]}]]"#, Ok(Some("v4"))),
            ("updated_tags a string", br#"{"updated_tags":"v1"}"#, malformed),
            ("a number tag", br#"{"updated_tags":["v1",2]}"#, malformed),
            ("docker_url a number", br#"{"docker_url":1}"#, malformed),
            ("an empty body", b"", malformed),
            ("a string", br#""quay""#, malformed),
        ];
        assert_tag_cases(&Quay, cases);
    }
}
