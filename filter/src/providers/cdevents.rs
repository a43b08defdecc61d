//! CDEvents over the CloudEvents HTTP binding: no proof in the request (the secret path is the proof),
//! the event type in `Ce-Type`, a JSON body.

use super::{json_object, PayloadFacts, Proof, Provider, VerifyOptions};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

pub struct CdEvents;

impl Provider for CdEvents {
    fn proof(&self) -> Proof {
        Proof::SecretPath
    }
    fn verify(&self, _: &Delivery, _: &[Vec<u8>], _: VerifyOptions) -> Result<(), Rejection> {
        Ok(())
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get("ce-type").map(str::to_owned)
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.get("ce-id").map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        // A CloudEvent without its type is not a CDEvent, whatever the receiver filters on.
        self.event(d).ok_or(Rejection::MissingEvent)?;
        json_object(d.body)?;
        Ok(PayloadFacts::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::delivery;

    #[test]
    fn requires_type_and_json() {
        let typed = Headers::new([("Ce-Type", "dev.cdevents.artifact.published.0.1.1")]);
        assert!(CdEvents.payload(&delivery(&typed, b"{}")).is_ok());
        assert_eq!(
            CdEvents.payload(&delivery(&typed, b"x")),
            Err(Rejection::MalformedPayload)
        );
        assert_eq!(
            CdEvents.payload(&delivery(&Headers::default(), b"{}")),
            Err(Rejection::MissingEvent)
        );
    }
}
