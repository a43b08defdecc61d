//! Azure DevOps service hooks ("Web Hooks" consumer): HTTP basic authentication, the configured secret
//! being `user:password` as for `basic`. No event header: the payload's `eventType` names the event
//! (`git.push`, `git.pullrequest.created`, ...) and its `id` the event. A `git.push` names the pushed refs
//! in `resource.refUpdates[].name`; one without any is refused as malformed (Argo CD's handler indexed
//! the first without checking and panicked, CVE-2025-59538).

use hookgate_protocol::Secret;
use serde_json::Value;

use super::basic::{basic_placeholder_secret, decode_basic_secret, verify_basic_auth};
use super::{
    json_fields, string_at, Credential, Methods, PayloadFacts, Provider, Sender, VerifyOptions,
};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct AzureDevOps;

const EVENT: &str = "/eventType";
const EVENT_ID: &str = "/id";
const PUSH_EVENT: &str = "git.push";
/// The first ref a push updated. A push updating several refs is represented by its first.
const FIRST_PUSHED_REF: &str = "/resource/refUpdates/0/name";

/// A push to `main`, as the service hook sends it (trimmed).
const PUSH_SAMPLE: &str = r#"{"eventType":"git.push","id":"03c164c2-8912-4d5e-8009-3707d5f83734","publisherId":"tfs","resource":{"refUpdates":[{"name":"refs/heads/main","newObjectId":"3f786850e387550fdab836ed7e6dc881de23001b","oldObjectId":"0000000000000000000000000000000000000000"}],"repository":{"name":"webapp","remoteUrl":"https://dev.azure.com/example/webapp/_git/webapp"}}}"#;

impl Provider for AzureDevOps {
    /// Not a type of Flux's: its senders POST.
    fn methods(&self) -> Methods {
        Methods::Only(&["POST"])
    }
    fn sender(&self) -> Sender {
        Sender::new(Credential::BasicAuth, PUSH_SAMPLE)
    }
    fn verify(&self, d: &Delivery, secrets: &[Secret], _: VerifyOptions) -> Result<(), Rejection> {
        verify_basic_auth(d, secrets)
    }
    fn placeholder_secret(&self, seed: &str) -> String {
        basic_placeholder_secret(seed)
    }
    fn decode_secret(&self, secret: &str) -> Result<Secret, String> {
        decode_basic_secret(secret)
    }
    fn supports_events(&self) -> bool {
        true
    }
    fn supports_refs(&self) -> bool {
        true
    }
    fn event(&self, d: &Delivery) -> Option<String> {
        json_fields(d.body, &[EVENT])
            .ok()
            .and_then(|p| string_at(&p, EVENT))
    }
    fn delivery_id(&self, d: &Delivery) -> Option<String> {
        json_fields(d.body, &[EVENT_ID])
            .ok()
            .and_then(|p| string_at(&p, EVENT_ID))
            .filter(|id| !id.is_empty())
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        let payload = json_fields(d.body, &[EVENT, FIRST_PUSHED_REF])?;
        push_facts(&payload)
    }
}

/// Every service hook event names itself; a push names at least one ref, each by its full name.
fn push_facts(payload: &Value) -> Result<PayloadFacts, Rejection> {
    let event = string_at(payload, EVENT).ok_or(Rejection::MalformedPayload)?;
    if event != PUSH_EVENT {
        return Ok(PayloadFacts::default());
    }
    let git_ref = string_at(payload, FIRST_PUSHED_REF)
        .filter(|r| !r.is_empty())
        .ok_or(Rejection::MalformedPayload)?;
    Ok(PayloadFacts {
        git_ref: Some(git_ref),
        image_tag: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::providers::test_support::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    const CREDENTIALS: &str = "azure:s3cret";

    fn basic(credentials: &str) -> String {
        format!("Basic {}", STANDARD.encode(credentials))
    }

    fn check(authorization: Option<&str>) -> Result<(), Rejection> {
        let h = Headers::new(authorization.map(|a| ("Authorization", a)));
        AzureDevOps.verify(
            &delivery(&h, PUSH_SAMPLE.as_bytes()),
            &secrets(&["azure:old", CREDENTIALS]),
            VerifyOptions::default(),
        )
    }

    #[test]
    fn basic_authentication() {
        use Rejection::{MalformedSignature, MissingToken, TokenMismatch};
        let good = basic(CREDENTIALS);
        let bearer = format!("Bearer {}", STANDARD.encode(CREDENTIALS));
        // (case, Authorization header, verdict) with "azure:old" and "azure:s3cret" configured
        #[rustfmt::skip]
        let cases = [
            ("valid",                     Some(good.as_str()),                Ok(())),
            ("the older secret",          Some(&*basic("azure:old")),         Ok(())),
            ("wrong password",            Some(&*basic("azure:guess")),       Err(TokenMismatch)),
            ("wrong user",                Some(&*basic("other:s3cret")),      Err(TokenMismatch)),
            ("missing header",            None,                               Err(MissingToken)),
            ("credentials not base64",    Some("Basic %%%"),                  Err(MalformedSignature)),
            ("another scheme",            Some(bearer.as_str()),              Err(MalformedSignature)),
        ];
        for (case, authorization, verdict) in cases {
            assert_eq!(check(authorization), verdict, "{case}");
        }
        assert!(AzureDevOps.decode_secret("no-colon").is_err());
    }

    fn facts(body: &str) -> Result<PayloadFacts, Rejection> {
        let h = Headers::default();
        AzureDevOps.payload(&delivery(&h, body.as_bytes()))
    }

    fn pushed(git_ref: &str) -> Result<PayloadFacts, Rejection> {
        Ok(PayloadFacts {
            git_ref: Some(git_ref.to_string()),
            image_tag: None,
        })
    }

    #[test]
    fn event_id_and_pushed_ref() {
        let h = Headers::default();
        let d = delivery(&h, PUSH_SAMPLE.as_bytes());
        assert_eq!(AzureDevOps.event(&d).as_deref(), Some("git.push"));
        assert_eq!(
            AzureDevOps.delivery_id(&d).as_deref(),
            Some("03c164c2-8912-4d5e-8009-3707d5f83734")
        );
        assert_eq!(AzureDevOps.payload(&d), pushed("refs/heads/main"));
    }

    /// CVE-2025-59538: a push without ref updates is a 400, not a panic; nor is any other odd shape.
    #[test]
    fn payload_shapes() {
        use Rejection::MalformedPayload;
        let two = r#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/tags/v1"},{"name":"refs/heads/main"}]}}"#;
        // (case, body, facts)
        #[rustfmt::skip]
        let cases = [
            ("push of a tag",            r#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/tags/v1.0.0"}]}}"#, pushed("refs/tags/v1.0.0")),
            ("push of two refs",         two,                                                                   pushed("refs/tags/v1")),
            ("empty refUpdates",         r#"{"eventType":"git.push","resource":{"refUpdates":[]}}"#,             Err(MalformedPayload)),
            ("refUpdates null",          r#"{"eventType":"git.push","resource":{"refUpdates":null}}"#,           Err(MalformedPayload)),
            ("refUpdates an object",     r#"{"eventType":"git.push","resource":{"refUpdates":{}}}"#,             Err(MalformedPayload)),
            ("no refUpdates",            r#"{"eventType":"git.push","resource":{}}"#,                            Err(MalformedPayload)),
            ("no resource",              r#"{"eventType":"git.push"}"#,                                           Err(MalformedPayload)),
            ("ref update without name",  r#"{"eventType":"git.push","resource":{"refUpdates":[{}]}}"#,           Err(MalformedPayload)),
            ("ref name not a string",    r#"{"eventType":"git.push","resource":{"refUpdates":[{"name":7}]}}"#,   Err(MalformedPayload)),
            ("empty ref name",           r#"{"eventType":"git.push","resource":{"refUpdates":[{"name":""}]}}"#,  Err(MalformedPayload)),
            ("no eventType",             r#"{"resource":{"refUpdates":[{"name":"refs/heads/main"}]}}"#,          Err(MalformedPayload)),
            ("not JSON",                 "git.push",                                                              Err(MalformedPayload)),
            ("a JSON list",              "[]",                                                                    Err(MalformedPayload)),
            ("pull request, no ref",     r#"{"eventType":"git.pullrequest.created","resource":{}}"#,              Ok(PayloadFacts::default())),
        ];
        for (case, body, expected) in cases {
            assert_eq!(facts(body), expected, "{case}");
        }
        assert_eq!(
            Rejection::MalformedPayload.status(),
            400,
            "a clean client error"
        );
    }

    #[test]
    fn no_event_or_id_in_a_body_without_them() {
        let h = Headers::default();
        for body in ["", "{}", r#"{"eventType":1,"id":""}"#, "[1]"] {
            let d = delivery(&h, body.as_bytes());
            assert_eq!(AzureDevOps.event(&d), None, "{body}");
            assert_eq!(AzureDevOps.delivery_id(&d), None, "{body}");
        }
    }
}
