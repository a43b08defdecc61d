//! Docker Hub: no proof in the request (the secret path is the proof); the payload must have Docker Hub's
//! shape `{push_data:{tag}, repository:{repo_url}}`.

use super::{registry_payload, Credential, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct DockerHub;

impl Provider for DockerHub {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"push_data":{"tag":"1.0.0"},"repository":{"repo_url":"https://hub.docker.com/r/example/webapp"}}"#,
        )
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        registry_payload(d.body, &["/repository/repo_url"], "/push_data/tag")
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
        let good = br#"{"push_data":{"tag":"latest"},"repository":{"repo_url":"https://hub.docker.com/r/org/app"}}"#;
        assert_eq!(
            DockerHub
                .payload(&delivery(&h, good))
                .unwrap()
                .image_tag
                .as_deref(),
            Some("latest")
        );
        assert_eq!(
            DockerHub.payload(&delivery(&h, br#"{"push_data":{"tag":"x"}}"#)),
            Err(Rejection::MalformedPayload)
        );
        assert_eq!(
            DockerHub.payload(&delivery(&h, b"")),
            Err(Rejection::MalformedPayload)
        );
    }
}
