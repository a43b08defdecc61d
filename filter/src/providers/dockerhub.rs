//! Docker Hub: no proof in the request (the secret path is the proof); the payload must decode as Flux
//! decodes it, into `{push_data:{tag}, repository:{repo_url}}` (no field required).

use super::{registry_payload, Credential, GoType, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct DockerHub;

/// The struct Flux decodes a Docker Hub payload into.
const FLUX_PAYLOAD: &[(&str, GoType)] = &[
    ("push_data", GoType::Struct(&[("tag", GoType::String)])),
    (
        "repository",
        GoType::Struct(&[("repo_url", GoType::String)]),
    ),
];

impl Provider for DockerHub {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"push_data":{"tag":"1.0.0"},"repository":{"repo_url":"https://hub.docker.com/r/example/webapp"}}"#,
        )
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        registry_payload(d.body, FLUX_PAYLOAD, "/push_data/tag")
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
                "Docker Hub's push",
                br#"{"push_data":{"tag":"latest","pusher":"org"},"repository":{"repo_url":"https://hub.docker.com/r/org/app"}}"#,
                Ok(Some("latest")),
            ),
            ("no repository", br#"{"push_data":{"tag":"v1"}}"#, Ok(Some("v1"))),
            ("no push_data", br#"{"repository":{"repo_url":"u"}}"#, Ok(None)),
            ("an empty object", b"{}", Ok(None)),
            ("null: the struct stays empty", b"null", Ok(None)),
            ("a null tag", br#"{"push_data":{"tag":null}}"#, Ok(None)),
            (
                "field names in another case, as Go matches them",
                br#"{"Push_Data":{"TAG":"v2"}}"#,
                Ok(Some("v2")),
            ),
            (
                "text after the object: Flux decodes one value",
                br#"{"push_data":{"tag":"v3"}} and more"#,
                Ok(Some("v3")),
            ),
            ("a number tag", br#"{"push_data":{"tag":1}}"#, malformed),
            ("push_data a string", br#"{"push_data":"v1"}"#, malformed),
            ("repository a list", br#"{"repository":[]}"#, malformed),
            ("repo_url an object", br#"{"repository":{"repo_url":{}}}"#, malformed),
            ("an empty body", b"", malformed),
            ("a list", b"[]", malformed),
            ("not JSON", b"tag=v1", malformed),
            ("cut short", br#"{"push_data":{"tag":"v1"}"#, malformed),
        ];
        assert_tag_cases(&DockerHub, cases);
    }
}
