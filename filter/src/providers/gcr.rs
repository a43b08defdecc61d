//! Flux's `gcr`: Google Container Registry and Artifact Registry notifications pushed by a Pub/Sub push
//! subscription with a Google-signed ID token. Issuer Google; the receiver names the audience and the
//! service account's `email`, which must be verified (accepting any Google token was CVE-2026-40109).
//!
//! The registry's event `{action, digest, tag}` is JSON in the base64 `message.data` of the Pub/Sub
//! envelope. As Flux's receiver, the envelope is decoded (its first JSON value), then `data` with the
//! errors of Go's base64 decoder ignored (what was decoded before one counts), then the event (the whole
//! decoded text); a failure of either JSON decoding refuses the push, and the action is not checked.
//! Filters see the event as Flux gives it to them: the three fields, empty where the event has none.
//! Decoding is linear, and the event is smaller than the body.

use serde_json::Value;

use super::go_json::{self, Extent, GoType};
use super::{string_at, Credential, PayloadFacts, Provider, Sender, TokenDefaults};
use crate::delivery::Delivery;
use crate::outcome::Rejection;

#[derive(Debug)]
pub struct Gcr;

/// The Pub/Sub envelope as Flux decodes it.
const ENVELOPE: &[(&str, GoType)] = &[(
    "message",
    GoType::Struct(&[
        ("data", GoType::String),
        ("messageId", GoType::String),
        ("publishTime", GoType::Time),
        ("subscription", GoType::String),
    ]),
)];

/// The registry's event as Flux decodes it, and gives it to filters.
const EVENT: &[(&str, GoType)] = &[
    ("action", GoType::String),
    ("digest", GoType::String),
    ("tag", GoType::String),
];

impl Provider for Gcr {
    fn sender(&self) -> Sender {
        // data: {"action":"INSERT","digest":"europe-docker.pkg.dev/p/r/app@sha256:00","tag":"europe-docker.pkg.dev/p/r/app:1.0.0"}
        Sender::new(
            Credential::IdToken,
            r#"{"message":{"data":"eyJhY3Rpb24iOiJJTlNFUlQiLCJkaWdlc3QiOiJldXJvcGUtZG9ja2VyLnBrZy5kZXYvcC9yL2FwcEBzaGEyNTY6MDAiLCJ0YWciOiJldXJvcGUtZG9ja2VyLnBrZy5kZXYvcC9yL2FwcDoxLjAuMCJ9","messageId":"1","publishTime":"2026-01-01T00:00:00Z"},"subscription":"projects/p/subscriptions/s"}"#,
        )
    }
    fn token_defaults(&self) -> Option<TokenDefaults> {
        Some(TokenDefaults {
            issuers: &["https://accounts.google.com", "accounts.google.com"],
            audience: None,
            requires_email: true,
        })
    }
    fn payload(&self, d: &Delivery) -> Result<PayloadFacts, Rejection> {
        let event = registry_event(d.body)?;
        Ok(PayloadFacts {
            git_ref: None,
            image_tag: string_at(&event, "/tag").filter(|tag| !tag.is_empty()),
        })
    }
    fn filter_payload(&self, d: &Delivery) -> Result<Value, Rejection> {
        registry_event(d.body)
    }
}

/// The registry's event in a Pub/Sub push `body`, decoded as Flux decodes it.
fn registry_event(body: &[u8]) -> Result<Value, Rejection> {
    let envelope =
        go_json::decode(body, ENVELOPE, Extent::FirstValue).ok_or(Rejection::MalformedPayload)?;
    let data = envelope
        .pointer("/message/data")
        .and_then(Value::as_str)
        .unwrap_or_default();
    go_json::decode(&go_base64(data.as_bytes()), EVENT, Extent::Whole)
        .ok_or(Rejection::MalformedPayload)
}

/// `data` decoded as Go's `base64.StdEncoding.DecodeString` decodes it, keeping what it wrote before an
/// error, as Flux does by ignoring the error: quanta of four symbols, `\r` and `\n` skipped anywhere;
/// padding (`==` after two symbols, `=` after three) ends the input, and its quantum is written even when
/// text follows; a quantum cut by an invalid symbol or by the end of the input is not written.
fn go_base64(data: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(data.len() / 4 * 3);
    // Whole quanta of valid symbols, all of any real data but its last, four symbols at a time.
    let mut start = 0;
    while let Some(quantum) = data.get(start..start + 4).and_then(quantum_of) {
        write_quantum(&mut decoded, quantum, 4);
        start += 4;
    }
    // The rest symbol by symbol: newlines, padding, the end, an error.
    let (mut quantum, mut filled) = ([0u8; 4], 0usize);
    let rest = data.get(start..).unwrap_or_default();
    let mut symbols = rest.iter().filter(|b| !matches!(b, b'\r' | b'\n'));
    while let Some(&symbol) = symbols.next() {
        if let Some(value) = base64_value(symbol) {
            quantum[filled] = value;
            filled += 1;
            if filled == 4 {
                write_quantum(&mut decoded, quantum, 4);
                (quantum, filled) = ([0; 4], 0);
            }
            continue;
        }
        // An invalid symbol, padding too early, or `=` after two symbols without its second `=`.
        if symbol != b'=' || filled < 2 || (filled == 2 && symbols.next() != Some(&b'=')) {
            return decoded;
        }
        write_quantum(&mut decoded, quantum, filled);
        return decoded;
    }
    decoded
}

/// The values of four base64 symbols, if all four are in the alphabet.
fn quantum_of(symbols: &[u8]) -> Option<[u8; 4]> {
    let mut quantum = [0u8; 4];
    for (value, &symbol) in quantum.iter_mut().zip(symbols) {
        *value = base64_value(symbol)?;
    }
    Some(quantum)
}

/// The `filled - 1` bytes that `filled` base64 symbols of `quantum` encode.
fn write_quantum(decoded: &mut Vec<u8>, quantum: [u8; 4], filled: usize) {
    let bits = quantum
        .iter()
        .fold(0u32, |bits, &value| (bits << 6) | u32::from(value));
    decoded.extend_from_slice(&bits.to_be_bytes()[1..filled]);
}

/// The value of a symbol of the standard base64 alphabet.
fn base64_value(symbol: u8) -> Option<u8> {
    match symbol {
        b'A'..=b'Z' => Some(symbol - b'A'),
        b'a'..=b'z' => Some(symbol - b'a' + 26),
        b'0'..=b'9' => Some(symbol - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::Headers;
    use crate::outcome::Rejection;
    use crate::providers::test_support::delivery;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde_json::{json, Value};

    const DIGEST: &str =
        "us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5";
    const TAG: &str = "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1";

    /// A Pub/Sub push of `data` (already encoded), as Google sends it.
    fn push(data: &str) -> Vec<u8> {
        json!({"message": {"attributes": {}, "data": data, "messageId": "2070443601311540",
                           "message_id": "2070443601311540", "publishTime": "2021-02-26T19:13:55.749Z",
                           "publish_time": "2021-02-26T19:13:55.749Z"},
               "subscription": "projects/my-project/subscriptions/gar-push"})
        .to_string()
        .into_bytes()
    }

    fn encoded(event: &str) -> String {
        STANDARD.encode(event)
    }

    fn event(action: &str, digest: &str, tag: &str) -> Value {
        json!({"action": action, "digest": digest, "tag": tag})
    }

    /// A named push, and the event filters see in it or the rejection.
    type Case = (&'static str, Vec<u8>, Result<Value, Rejection>);

    /// Pushes as Google sends them and as Flux's decoding takes or refuses them.
    fn cases() -> Vec<Case> {
        let gar = format!(r#"{{"action":"INSERT","digest":"{DIGEST}","tag":"{TAG}"}}"#);
        let malformed = || Err(Rejection::MalformedPayload);
        let cut = encoded(&gar);
        vec![
            (
                "Artifact Registry's push",
                push(&encoded(&gar)),
                Ok(event("INSERT", DIGEST, TAG)),
            ),
            (
                "a deletion: Flux does not check the action",
                push(&encoded(r#"{"action":"DELETE","tag":"t"}"#)),
                Ok(event("DELETE", "", "t")),
            ),
            (
                "missing fields are empty strings, other fields are dropped",
                push(&encoded(r#"{"action":"INSERT","extra":{"a":1}}"#)),
                Ok(event("INSERT", "", "")),
            ),
            (
                "field names in another case, as Go matches them",
                push(&encoded(r#"{"TAG":"t","DiGeSt":"d"}"#)),
                Ok(event("", "d", "t")),
            ),
            (
                "the event is null",
                push(&encoded("null")),
                Ok(event("", "", "")),
            ),
            (
                "newlines in the data are skipped, as Go's decoder skips them",
                push(&format!("{}\r\n{}", &cut[..8], &cut[8..])),
                Ok(event("INSERT", DIGEST, TAG)),
            ),
            (
                "text after the padding: what was decoded counts (Flux ignores the error)",
                push(&format!("{}!!", encoded(r#"{"tag":"t"}"#))),
                Ok(event("", "", "t")),
            ),
            (
                "unpadded data: Go drops the last quantum, the event is cut",
                push(encoded(r#"{"tag":"t"}"#).trim_end_matches('=')),
                malformed(),
            ),
            ("no data", br#"{"message":{}}"#.to_vec(), malformed()),
            ("data not base64", push("not base64!"), malformed()),
            ("the event not JSON", push(&encoded("INSERT")), malformed()),
            ("the event a list", push(&encoded("[]")), malformed()),
            (
                "text after the event: Flux's json.Unmarshal refuses it",
                push(&encoded(r#"{"tag":"t"} x"#)),
                malformed(),
            ),
            ("a number tag", push(&encoded(r#"{"tag":1}"#)), malformed()),
            (
                "message a string",
                br#"{"message":"eyJ0YWciOiJ0In0="}"#.to_vec(),
                malformed(),
            ),
            (
                "publishTime not RFC 3339",
                format!(
                    r#"{{"message":{{"data":"{}","publishTime":"yesterday"}}}}"#,
                    encoded("{}")
                )
                .into_bytes(),
                malformed(),
            ),
            (
                "publishTime as Go's time.Parse also reads it (one-digit hour, comma)",
                format!(
                    r#"{{"message":{{"data":"{}","publishTime":"2021-02-26T9:13:55,7+01:00"}}}}"#,
                    encoded(r#"{"tag":"t"}"#)
                )
                .into_bytes(),
                Ok(event("", "", "t")),
            ),
            (
                "text after the envelope: Flux decodes one value",
                [push(&encoded(r#"{"tag":"t"}"#)), b" trailing".to_vec()].concat(),
                Ok(event("", "", "t")),
            ),
            ("an empty body", Vec::new(), malformed()),
            ("not JSON", b"action=INSERT".to_vec(), malformed()),
        ]
    }

    /// Issue 22, item 3: filters see what Flux's gcr receiver gives them, the `{action, digest, tag}` decoded
    /// from the base64 `message.data`, and a push Flux cannot decode is refused.
    #[test]
    fn filters_see_the_unwrapped_registry_event() {
        let headers = Headers::default();
        for (case, body, expected) in cases() {
            let d = delivery(&headers, &body);
            assert_eq!(Gcr.filter_payload(&d), expected, "{case}");
            let facts = Gcr.payload(&d);
            let tag = expected
                .as_ref()
                .map(|e| Some(e["tag"].as_str().unwrap_or_default()).filter(|t| !t.is_empty()))
                .map_err(|rejection| *rejection);
            assert_eq!(
                facts.map(|f| f.image_tag),
                tag.map(|t| t.map(str::to_owned)),
                "{case}: facts"
            );
        }
    }

    /// Go's decoder, case by case: what it writes before the error Flux ignores.
    #[test]
    fn base64_as_go_decodes_it() {
        for (data, expected) in [
            ("", ""),
            ("QUJD", "ABC"),
            ("QUI=", "AB"),
            ("QQ==", "A"),
            ("Q\nU\r\nJD", "ABC"),
            ("QUJDQQ==\n", "ABCA"),
            ("QUJDQQ", "ABC"),
            ("QUJDQ===", "ABC"),
            ("QUJD!QUJD", "ABC"),
            ("QUI=QUJD", "AB"),
            ("QQ=\n=", "A"),
            ("QQ=", ""),
            ("QQ=x", ""),
            ("=", ""),
            ("QUJD\u{0}", "ABC"),
        ] {
            assert_eq!(go_base64(data.as_bytes()), expected.as_bytes(), "{data:?}");
        }
    }

    /// Every cut and every one-byte change of a push is decided without a panic, the same way by the facts
    /// and by the filters' payload.
    #[test]
    fn cut_and_changed_pushes_are_decided_alike() {
        let body = push(&encoded(r#"{"action":"INSERT","tag":"t"}"#));
        let headers = Headers::default();
        let mut changed_pushes: Vec<Vec<u8>> =
            (0..body.len()).map(|end| body[..end].to_vec()).collect();
        for at in 0..body.len() {
            for byte in [0, b'"', b'\\', b'{', b'}', b'=', b'A', b'\n', 0xff] {
                let mut changed = body.clone();
                changed[at] = byte;
                changed_pushes.push(changed);
            }
        }
        for changed in &changed_pushes {
            let d = delivery(&headers, changed);
            let (facts, payload) = (Gcr.payload(&d), Gcr.filter_payload(&d));
            assert_eq!(
                facts.is_ok(),
                payload.is_ok(),
                "{}",
                String::from_utf8_lossy(changed)
            );
        }
    }
}
