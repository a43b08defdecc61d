//! CDEvents over the CloudEvents HTTP binding, binary mode: no proof in the request (the secret path is
//! the proof), the event type in `Ce-Type` (read for `events`, as Flux reads it), a JSON body with the
//! CDEvents `context` and `subject`. Flux also validates the event against the CDEvents v0.4 schemas,
//! which hookgate does not carry: it checks only that `context` and `subject` are objects.

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
            // A CDEvent that Flux's CDEvents SDK (spec v0.4) validates.
            r#"{"context":{"version":"0.4.1","id":"sample","source":"/hookgate-send","type":"dev.cdevents.artifact.published.0.2.0","timestamp":"2026-01-01T00:00:00Z"},"subject":{"id":"pkg:oci/webapp@sha256:0b5c2e1d","source":"/hookgate-send","type":"artifact","content":{}}}"#,
        )
        .event(EVENT_HEADER, "dev.cdevents.artifact.published.0.2.0")
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
        // The body itself is the CDEvent, as Flux decodes it (the CloudEvents binary mode): `Ce-Type` only
        // matters to `events`. A structured-mode CloudEvent (the CDEvent in `data`) has no `context`, and
        // Flux's SDK refuses it as an unknown event type.
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

    const CDEVENT: &str = r#"{"context":{"version":"0.4.1","id":"271069a8","source":"/ci/pipelines","type":"dev.cdevents.artifact.published.0.2.0","timestamp":"2024-03-01T10:00:00Z"},"subject":{"id":"pkg:oci/app@sha256:0b5c2e1d?repository_url=europe-docker.pkg.dev/p/r/app","source":"/ci/pipelines","type":"artifact","content":{}}}"#;

    /// A named case: the request's headers and body, and the verdict.
    type Case<'a> = (&'a str, &'a Headers, &'a [u8], Result<(), Rejection>);

    /// Issue 22, item 7: Flux decodes the body as the CDEvent whatever the headers say, and reads `Ce-Type`
    /// only to match the receiver's `events` (the pipeline's check). CDEVENT is an event Flux's CDEvents SDK
    /// v0.5.0 validates; it refuses the structured-mode envelope as an unknown event type (both checked by
    /// running the SDK).
    #[test]
    fn the_body_is_the_cdevent_and_ce_type_is_optional() {
        let binary = Headers::new([
            ("ce-type", "dev.cdevents.artifact.published.0.2.0"),
            ("ce-specversion", "1.0"),
            ("content-type", "application/json"),
        ]);
        let untyped = Headers::new([("content-type", "application/json")]);
        let structured_headers = Headers::new([("content-type", "application/cloudevents+json")]);
        let structured = format!(
            r#"{{"specversion":"1.0","id":"1","source":"/ci","type":"dev.cdevents.artifact.published.0.2.0","datacontenttype":"application/json","data":{CDEVENT}}}"#
        );
        let malformed = Err(Rejection::MalformedPayload);
        let cases: [Case; 6] = [
            ("binary mode", &binary, CDEVENT.as_bytes(), Ok(())),
            (
                "binary mode without Ce-Type",
                &untyped,
                CDEVENT.as_bytes(),
                Ok(()),
            ),
            (
                "structured mode: the envelope is not a CDEvent (Flux's SDK finds no context)",
                &structured_headers,
                structured.as_bytes(),
                malformed,
            ),
            ("no subject", &binary, br#"{"context":{}}"#, malformed),
            ("not JSON", &binary, b"x", malformed),
            ("an empty body", &untyped, b"", malformed),
        ];
        for (case, headers, body, expected) in cases {
            let got = CdEvents.payload(&delivery(headers, body)).map(|_| ());
            assert_eq!(got, expected, "{case}");
        }
    }
}
