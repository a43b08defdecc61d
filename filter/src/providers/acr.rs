//! Azure Container Registry: no proof in the request (the secret path is the proof); the payload must have
//! ACR's shape `{action, target:{repository, tag}}`.

use super::{registry_payload, string_at, Credential, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Acr;

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
        registry_payload(d.body, &["/action", "/target/repository"], "/target/tag")
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
        let good = br#"{"id":"a1","action":"push","target":{"repository":"app","tag":"v9"}}"#;
        assert_eq!(
            Acr.payload(&delivery(&h, good))
                .unwrap()
                .image_tag
                .as_deref(),
            Some("v9")
        );
        assert_eq!(Acr.delivery_id(&delivery(&h, good)).as_deref(), Some("a1"));
        assert_eq!(
            Acr.payload(&delivery(&h, br#"{"action":"push","target":{}}"#)),
            Err(Rejection::MalformedPayload)
        );
    }
}
