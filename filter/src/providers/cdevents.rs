//! CDEvents over the CloudEvents HTTP binding: no proof in the request (the secret path is the proof),
//! the event type in `Ce-Type`, a JSON body with the CDEvents `context` and `subject`.

use super::{json_fields, Credential, PayloadFacts, Provider, Sender};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct CdEvents;

const EVENT_HEADER: &str = "ce-type";
const DELIVERY_HEADER: &str = "ce-id";

impl Provider for CdEvents {
    fn sender(&self) -> Sender {
        Sender::new(
            Credential::SecretPath,
            r#"{"context":{"id":"sample","type":"dev.cdevents.artifact.published.0.1.1"},"subject":{"id":"webapp"}}"#,
        )
        .event(EVENT_HEADER, "dev.cdevents.artifact.published.0.1.1")
        .delivery_header(DELIVERY_HEADER)
        .fixed_headers(&[("ce-specversion", "1.0"), ("ce-source", "hookgate-send")])
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        d.headers.get(EVENT_HEADER).map(str::to_owned)
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        d.headers.get(DELIVERY_HEADER).map(str::to_owned)
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        // A CloudEvent without its type is not a CDEvent, whatever the receiver filters on.
        self.event(d).ok_or(Rejection::MissingEvent)?;
        let event = json_fields(d.body, &["/context", "/subject"])?;
        // Every CDEvent has a `context` and a `subject` object.
        if ["context", "subject"]
            .iter()
            .all(|key| event.get(key).is_some_and(serde_json::Value::is_object))
        {
            Ok(PayloadFacts::default())
        } else {
            Err(Rejection::MalformedPayload)
        }
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
        assert!(CdEvents
            .payload(&delivery(&typed, br#"{"context":{},"subject":{}}"#))
            .is_ok());
        assert_eq!(
            CdEvents.payload(&delivery(&typed, br#"{"context":{}}"#)),
            Err(Rejection::MalformedPayload)
        );
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
