//! A verified delivery that came without a body, forwarded by a call of the filter's own.
//!
//! The filter forwards a delivery by replacing the request's headers and body with the attested request,
//! and Envoy gives a Wasm filter no body to replace in a request that has none (proxy-wasm ABI 0.2.1),
//! whatever its method. For such a delivery the filter sends the same attested request to the controller's
//! cluster itself (`dispatch_http_call`) and answers the sender with the controller's reply.

use std::time::Duration;

use crate::delivery::Headers;
use crate::forward::Forward;

/// How long the filter waits for the controller's reply: Envoy's default route timeout, which bounds a
/// forwarded request otherwise.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The largest reply of the controller the filter relays. Its replies are a summary of the targets
/// reconciled: far smaller.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;

/// Whether the forward of a delivery whose body had `body_len` bytes is sent by a call: there is no body
/// to replace.
pub fn by_call(body_len: usize) -> bool {
    body_len == 0
}

/// The request the filter sends the controller for `forward`: the attested request's headers with the
/// controller's `authority`, and the tracing headers of `original` that a rewritten request keeps.
pub fn call_headers(
    forward: &Forward,
    authority: &str,
    original: &Headers,
) -> Vec<(String, String)> {
    let mut headers = vec![(":authority".to_string(), authority.to_string())];
    headers.extend(
        forward
            .kept_headers(original)
            .filter(|(name, _)| !name.starts_with(':'))
            .chain(forward.attested_headers())
            .filter_map(|(name, value)| Some((name, String::from_utf8(value).ok()?))),
    );
    headers
}

/// How many times a call that no replica of the controller took is sent again: as many as the route's
/// retry gives a delivery with a body (`numRetries` in manifests/base/gateway/route/
/// backendtrafficpolicy.yaml). The host sends a call without a route, so without the route's retry.
pub const CALL_RETRIES: u32 = 2;

/// The start of Envoy's own answer (503) when the controller's cluster gave no response headers because
/// the connection was refused or reset: `... reset reason: <why>` follows.
const NOT_DELIVERED: &[u8] = b"upstream connect error or disconnect/reset before headers";

/// The longest such answer read: Envoy's reason is short; a longer body is someone else's.
const NOT_DELIVERED_MAX_BYTES: usize = 512;

/// A forward sent by a call, kept to be sent again while [`not_delivered`] (the same attested request,
/// as the route's retry sends the same bytes again: a replica that refused the connection never saw it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How many more times it may be sent.
    pub retries: u32,
}

impl Call {
    /// The call to send again after a `response` no replica gave, if any retry is left.
    pub fn again(
        self,
        response: &CallResponse,
        read_body: impl FnOnce(usize) -> Vec<u8>,
    ) -> Option<Self> {
        (self.retries > 0 && not_delivered(response, read_body)).then(|| Self {
            retries: self.retries - 1,
            ..self
        })
    }
}

/// Whether `response` is Envoy's own 503 for a call no replica of the controller took (connection refused,
/// or reset before the response's headers): what the route's retry (`connect-failure`, `reset`) repeats.
/// Not a timeout (no response at all: the controller may still be working on it), nor any answer of the
/// controller's, 503 included.
pub fn not_delivered(response: &CallResponse, read_body: impl FnOnce(usize) -> Vec<u8>) -> bool {
    status_of(&response.headers) == Some(503)
        && (NOT_DELIVERED.len()..=NOT_DELIVERED_MAX_BYTES).contains(&response.body_size)
        && read_body(response.body_size).starts_with(NOT_DELIVERED)
}

/// What the host reports of the call's response: `None` when the call failed (no connection, reset,
/// timeout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallResponse {
    /// The response's `(name, value)` headers.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body_size: usize,
}

/// The answer the sender gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relayed {
    pub status: u32,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Relayed {
    /// The filter's own answer when the controller's cannot be relayed: `status` with a short reason.
    pub fn failure(status: u32, reason: &str) -> Self {
        Self {
            status,
            content_type: "application/json".into(),
            body: format!("{{\"error\":{}}}", serde_json::Value::from(reason)).into_bytes(),
        }
    }

    /// The call could not be sent, or got no response.
    pub fn unreachable() -> Self {
        Self::failure(503, "controller unreachable")
    }
}

/// The `:status` of a response with `headers`, if it has a readable one.
pub fn status_of(headers: &[(String, Vec<u8>)]) -> Option<u16> {
    let (_, status) = headers.iter().find(|(name, _)| name == ":status")?;
    std::str::from_utf8(status).ok()?.trim().parse().ok()
}

/// The sender's answer to the call's `response`: the controller's status, Content-Type and body; 503 if
/// there was no response, 502 if it cannot be relayed (no final status, or a body over
/// [`MAX_REPLY_BYTES`]). `read_body` reads the body, of the size given, only if it is relayed.
pub fn reply(response: Option<CallResponse>, read_body: impl FnOnce(usize) -> Vec<u8>) -> Relayed {
    let Some(response) = response else {
        return Relayed::unreachable();
    };
    let Some(status) = status_of(&response.headers).filter(|s| (200..=599).contains(s)) else {
        return Relayed::failure(502, "controller reply unreadable");
    };
    if response.body_size > MAX_REPLY_BYTES {
        return Relayed::failure(502, "controller reply too large");
    }
    let content_type = response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .and_then(|(_, value)| String::from_utf8(value.clone()).ok())
        .unwrap_or_else(|| "application/json".into());
    let body = match response.body_size {
        0 => Vec::new(),
        size => read_body(size),
    };
    Relayed {
        status: status.into(),
        content_type,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookgate_protocol::attestation::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
    use hookgate_protocol::Secret;

    fn forward() -> Forward {
        let request = crate::forward::request("ci", "generic-oidc");
        Forward::signed(request, "/hook/v1/reconcile", &Secret::new("k"), 1).unwrap()
    }

    #[test]
    fn only_a_bodyless_delivery_is_forwarded_by_a_call() {
        assert!(by_call(0));
        assert!(!by_call(1));
    }

    #[test]
    fn the_call_carries_the_attested_request_and_nothing_of_the_sender() {
        let forward = forward();
        let original = Headers::new([
            (":method", "GET"),
            (":path", "/hook/abc"),
            (":authority", "hooks.example.com"),
            (":scheme", "https"),
            ("x-request-id", "r-1"),
            ("authorization", "Bearer secret-token"),
            ("content-length", "0"),
        ]);
        let headers = call_headers(&forward, "controller.hookgate:8080", &original);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                ":authority",
                "x-request-id",
                ":method",
                ":path",
                "content-type",
                "content-length",
                TIMESTAMP_HEADER,
                SIGNATURE_HEADER
            ]
        );
        let value = |n: &str| headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(value(":authority"), "controller.hookgate:8080");
        assert_eq!(value(":method"), "POST");
        assert_eq!(value(":path"), "/hook/v1/reconcile");
        assert_eq!(value("content-length"), forward.body.len().to_string());
    }

    #[test]
    fn the_controllers_reply_is_relayed_or_the_failure_said() {
        let response = |status: &str, content_type: Option<&str>, body_size: usize| {
            let mut headers = vec![(":status".to_string(), status.as_bytes().to_vec())];
            headers
                .extend(content_type.map(|c| ("content-type".to_string(), c.as_bytes().to_vec())));
            Some(CallResponse { headers, body_size })
        };
        let summary = br#"{"annotated":1,"failed":0}"#;
        let relayed = |status: u32, content_type: &str, body: &[u8]| Relayed {
            status,
            content_type: content_type.into(),
            body: body.to_vec(),
        };
        let json = "application/json";
        #[rustfmt::skip]
        let cases = [
            ("the controller's 200",    response("200", Some(json), summary.len()), relayed(200, json, summary)),
            ("the controller's 500",    response("500", Some(json), summary.len()), relayed(500, json, summary)),
            ("Envoy's 503 in text",     response("503", Some("text/plain"), summary.len()), relayed(503, "text/plain", summary)),
            ("no Content-Type",         response("200", None, summary.len()), relayed(200, json, summary)),
            ("no body",                 response("204", None, 0), relayed(204, json, b"")),
            ("no response at all",      None, Relayed::failure(503, "controller unreachable")),
            ("no status",               Some(CallResponse { headers: vec![], body_size: 0 }), Relayed::failure(502, "controller reply unreadable")),
            ("an informational status", response("100", None, 0), Relayed::failure(502, "controller reply unreadable")),
            ("a status not a number",   response("ok", None, 0), Relayed::failure(502, "controller reply unreadable")),
            ("a body over the bound",   response("200", Some(json), MAX_REPLY_BYTES + 1), Relayed::failure(502, "controller reply too large")),
        ];
        for (case, response, expected) in cases {
            let mut read = None;
            let got = reply(response, |size| {
                read = Some(size);
                summary[..size.min(summary.len())].to_vec()
            });
            assert_eq!(got, expected, "{case}");
            assert!(
                read.is_none_or(|size| size <= MAX_REPLY_BYTES),
                "{case}: a body over the bound is never read"
            );
        }
        assert_eq!(
            Relayed::unreachable().body,
            br#"{"error":"controller unreachable"}"#
        );
    }

    #[test]
    fn only_envoys_answer_for_a_call_no_replica_took_is_sent_again() {
        let response = |status: &str, body: &[u8]| {
            let headers = vec![(":status".to_string(), status.as_bytes().to_vec())];
            (
                CallResponse {
                    headers,
                    body_size: body.len(),
                },
                body.to_vec(),
            )
        };
        let refused = b"upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";
        let reset = b"upstream connect error or disconnect/reset before headers. reset reason: connection termination";
        let overloaded =
            br#"{"error":"too many requests inside the window","reason":"overloaded"}"#;
        let long = [refused.as_slice(), &[b' '; 512]].concat();
        #[rustfmt::skip]
        let cases = [
            ("connection refused",         response("503", refused), true),
            ("reset before the headers",   response("503", reset), true),
            ("the controller's 503",       response("503", overloaded), false),
            ("the controller's 200",       response("200", b"{}"), false),
            ("Envoy's 504 (timeout)",      response("504", b"upstream request timeout"), false),
            ("the reason under another status", response("502", refused), false),
            ("a longer body",              response("503", &long), false),
        ];
        for (case, (response, body), expected) in cases {
            let call = Call {
                cluster: "c".into(),
                headers: vec![],
                body: b"attested".to_vec(),
                retries: 1,
            };
            let again = call.clone().again(&response, |size| body[..size].to_vec());
            assert_eq!(again.is_some(), expected, "{case}");
            if let Some(again) = again {
                assert_eq!((again.retries, &again.body), (0, &call.body), "{case}");
                let spent = Call { retries: 0, ..call };
                assert_eq!(
                    spent.again(&response, |size| body[..size].to_vec()),
                    None,
                    "{case}: no retry left"
                );
            }
        }
    }
}
