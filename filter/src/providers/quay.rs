//! Quay: no proof in the request (the secret path is the proof); the payload must have Quay's shape
//! `{docker_url, updated_tags[]}`.

use serde_json::Value;

use super::{json_fields, string_at, Credential, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Quay;

impl Provider for Quay {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"docker_url":"quay.io/example/webapp","updated_tags":["1.0.0"]}"#,
        )
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        let payload = json_fields(d.body, &["/docker_url", "/updated_tags"])?;
        if string_at(&payload, "/docker_url").is_none()
            || !payload.get("updated_tags").is_some_and(Value::is_array)
        {
            return Err(Rejection::MalformedPayload);
        }
        Ok(PayloadFacts {
            git_ref: None,
            image_tag: string_at(&payload, "/updated_tags/0"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::delivery;

    #[test]
    fn shape_is_checked() {
        let h = Headers::default();
        let good = br#"{"docker_url":"quay.io/org/app","updated_tags":["v1","latest"]}"#;
        assert_eq!(
            Quay.payload(&delivery(&h, good))
                .unwrap()
                .image_tag
                .as_deref(),
            Some("v1")
        );
        assert_eq!(
            Quay.payload(&delivery(&h, br#"{"docker_url":"quay.io/org/app"}"#)),
            Err(Rejection::MalformedPayload)
        );
        assert_eq!(
            Quay.payload(&delivery(&h, br#"{"updated_tags":[]}"#)),
            Err(Rejection::MalformedPayload)
        );
    }
}
