//! The filter's CEL: the receiver's `filter`, evaluated at the edge after verification, and the target
//! filters (Flux's `resourceFilter` and `targets[].filter`), compiled here to refuse a bad one at configure
//! time and to learn which payload fields they read, and evaluated by the controller on each object.

use hookgate_cel::{
    from_json, from_json_object, string_map, text, CompileError, EvaluationError, Expression, Reads,
};
use serde_json::Value;

use crate::delivery::Headers;

/// What a receiver's `filter` sees: the provider's event name (empty where it has none), the request
/// headers (lowercased names; see [`visible_headers`]) and the payload (`{}` when it is not JSON).
pub const EDGE_VARIABLES: &[&str] = &["event", "headers", "req"];

/// A receiver's `filter`, compiled.
#[derive(Debug)]
pub struct EdgeFilter(Expression);

impl EdgeFilter {
    pub fn compile(source: &str) -> Result<Self, CompileError> {
        Expression::compile(source, EDGE_VARIABLES).map(Self)
    }

    /// Whether the verified delivery passes.
    pub fn accepts(
        &self,
        event: Option<&str>,
        headers: &Headers,
        payload: &Value,
    ) -> Result<bool, EvaluationError> {
        self.0.evaluate(vec![
            ("event", text(event.unwrap_or_default())),
            ("headers", visible_headers(headers)),
            ("req", from_json(payload)),
        ])
    }
}

/// What an ID-token receiver's `idToken.validations` see: the verified token's claims.
pub const CLAIM_VARIABLES: &[&str] = &["claims"];

/// An ID-token receiver's `idToken.validations`, compiled: Flux's `generic-oidc` validations.
#[derive(Debug, Default)]
pub struct ClaimValidations(Vec<Expression>);

impl ClaimValidations {
    /// Compiles `sources`; an error comes with the index of the expression that does not compile.
    pub fn compile(sources: &[String]) -> Result<Self, (usize, CompileError)> {
        sources
            .iter()
            .enumerate()
            .map(|(i, source)| Expression::compile(source, CLAIM_VARIABLES).map_err(|e| (i, e)))
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a validation reads the claim `name` by its name (`claims.name`, `claims['name']`,
    /// `has(claims.name)`, or a field under it). A validation that reads `claims` whole is not counted
    /// (see [`ClaimValidations::read_whole`]).
    pub fn read_claim(&self, name: &str) -> bool {
        self.0
            .iter()
            .any(|validation| match validation.reads("claims") {
                Reads::Fields(paths) => paths
                    .iter()
                    .any(|path| path.first().is_some_and(|f| f == name)),
                Reads::Nothing | Reads::Whole => false,
            })
    }

    /// Whether a validation reads `claims` whole or at a computed key: which claims it reads cannot be
    /// told.
    pub fn read_whole(&self) -> bool {
        self.0
            .iter()
            .any(|validation| matches!(validation.reads("claims"), Reads::Whole))
    }

    /// Whether every validation is true for the verified `claims` (read as CEL once for all of them).
    pub fn accept(&self, claims: &serde_json::Map<String, Value>) -> Result<bool, EvaluationError> {
        if self.0.is_empty() {
            return Ok(true);
        }
        let claims = from_json_object(claims);
        for validation in &self.0 {
            if !validation.evaluate(vec![("claims", claims.clone())])? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The headers a filter sees: not the pseudo-headers (`:path` holds a Flux receiver's secret path), nor
/// those that carry credentials (`authorization`, `proxy-authorization`, `cookie`, any `*token*`).
fn visible_headers(headers: &Headers) -> hookgate_cel::Value {
    let values: Vec<(&str, String)> = headers
        .iter()
        .filter(|(name, _)| {
            !name.starts_with(':')
                && !["authorization", "proxy-authorization", "cookie"].contains(name)
                && !name.contains("token")
        })
        .map(|(name, value)| (name, String::from_utf8_lossy(value).into_owned()))
        .collect();
    string_map(values.iter().map(|(name, value)| (*name, value.as_str())))
}

/// The payload as a filter reads it: the body's JSON, or `{}` when the body is not JSON (as Flux). A body
/// that begins as JSON (`{` or `[`) which serde_json refuses is refused rather than read as `{}`, where
/// `!has(req.skip)` would be true of a body that has `skip`: nested deeper than the parser follows (128
/// levels; Go's follows 10,000), or what Go's decoder reads and serde_json does not (an unpaired surrogate
/// escape, bytes that are not UTF-8, a number past f64, bytes after the value). One with more than
/// [`MAX_PAYLOAD_VALUES`] values is refused before it is parsed.
pub fn payload(body: &[u8]) -> Result<Value, Unreadable> {
    let begins_as_json = matches!(
        body.iter().find(|b| !b" \t\n\r".contains(b)),
        Some(b'{' | b'[')
    );
    // Counted before serde builds a tree: that is the work bounded.
    if begins_as_json && json_values(body) > MAX_PAYLOAD_VALUES {
        return Err(Unreadable::TooManyValues);
    }
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        Err(_) if begins_as_json => Err(Unreadable::Malformed),
        Err(_) => Ok(Value::Object(Default::default())),
    }
}

/// Why the filters do not read a body that begins as JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// JSON serde_json refuses (see [`payload`]).
    Malformed,
    /// More than [`MAX_PAYLOAD_VALUES`] values.
    TooManyValues,
}

/// The most JSON values (objects, lists and scalars; keys are not counted, each has a value) the filters
/// read of one payload. Serde's tree and its CEL copy grow with the values (a 3 MiB `[{},{},...]` of a
/// million values took 152 MiB and 0.5 s, a 32 MiB one 1.45 GiB); at this bound they took 12 to 39 MiB and
/// 0.06 to 0.4 s (`[0,...]`, `[{},...]`, `{"k1":0,...}`, native, on a loaded machine). A GitHub push commit
/// is about 18 values and one per file path, so a push of a thousand commits touching 100 files each
/// (about 120,000 values) is inside; real payloads spend 15 bytes or more a value, so a default 3 MiB
/// `bodyLimit` rarely holds more.
pub const MAX_PAYLOAD_VALUES: usize = 200_000;

/// The number of values in `json`, exact where it is valid JSON (other bytes are refused by the parser
/// after), in one pass that builds nothing: every value but a key's begins a token (`{`, `[`, a string, a
/// number or a literal), and every key is a string token followed by `:`.
fn json_values(json: &[u8]) -> usize {
    let (mut tokens, mut keys) = (0usize, 0usize);
    let (mut in_string, mut escaped, mut in_scalar) = (false, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        let continues_scalar = in_scalar;
        in_scalar = false;
        match byte {
            b'"' => (tokens, in_string) = (tokens + 1, true),
            b'{' | b'[' => tokens += 1,
            b':' => keys += 1,
            b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r' => {}
            // A number or a literal: its first byte begins a token, the others continue it.
            _ => (tokens, in_scalar) = (tokens + usize::from(!continues_scalar), true),
        }
    }
    tokens.saturating_sub(keys)
}

/// Compiles a target filter (`resourceFilter`, `targets[].filter`) as the controller will, and returns the
/// payload fields it reads: the attested request carries those, and no other part of the payload.
pub fn target_filter_reads(source: &str) -> Result<Vec<Vec<String>>, CompileError> {
    let expression = Expression::compile(source, hookgate_cel::TARGET_VARIABLES)?;
    match expression.reads("req") {
        Reads::Nothing => Ok(Vec::new()),
        Reads::Fields(paths) => Ok(paths),
        Reads::Whole => Err(CompileError(
            "reads `req` whole or at a computed key: a target filter reads fields of the payload \
             (req.a.b), the only parts forwarded to the controller"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_too_deep_to_read_is_refused_not_read_as_empty() {
        use Unreadable::Malformed;
        let deep = |levels: usize| format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        let cases = [
            (
                "JSON",
                br#"{"skip":true}"#.to_vec(),
                Ok(serde_json::json!({"skip": true})),
            ),
            ("not JSON", b"skip=true".to_vec(), Ok(serde_json::json!({}))),
            (
                "nested 100 deep",
                format!(r#"{{"a":{},"skip":true}}"#, deep(100)).into_bytes(),
                Ok(serde_json::from_str(&format!(r#"{{"a":{},"skip":true}}"#, deep(100))).unwrap()),
            ),
            (
                "nested 200 deep",
                format!(r#"{{"a":{},"skip":true}}"#, deep(200)).into_bytes(),
                Err(Malformed),
            ),
            // Go's decoder reads `skip` in these; serde_json refuses them.
            (
                "a lone surrogate escape",
                br#"{"skip":true,"x":"\ud800"}"#.to_vec(),
                Err(Malformed),
            ),
            (
                "a raw byte that is not UTF-8",
                b"{\"skip\":true,\"x\":\"\xff\"}".to_vec(),
                Err(Malformed),
            ),
            (
                "bytes after the value",
                br#"{"skip":true} x"#.to_vec(),
                Err(Malformed),
            ),
            (
                "a number past f64",
                br#"{"skip":true,"n":1e400}"#.to_vec(),
                Err(Malformed),
            ),
            (
                "after blanks",
                b" \r\n\t{\"skip\":true} x".to_vec(),
                Err(Malformed),
            ),
        ];
        for (case, body, expected) in cases {
            assert_eq!(payload(&body), expected, "{case}");
        }
    }

    #[test]
    fn json_values_are_counted_without_parsing() {
        let cases = [
            ("an empty object", r#"{}"#, 1),
            (
                "a list of scalars",
                r#"[1, -2.5e3, true, false, null, "s"]"#,
                7,
            ),
            ("keys are not values", r#"{"a": 1, "b": {"c": [true]}}"#, 5),
            (
                "structure inside strings",
                r#"{"k:{[,": "]}\"\\", "x": "\u005b"}"#,
                3,
            ),
            ("blanks everywhere", " [ 1 ,\n{ \"a\" :\t10 } ]\r\n", 4),
        ];
        for (case, json, values) in cases {
            assert_eq!(json_values(json.as_bytes()), values, "{case}");
            // The count is exact: one per value serde reads.
            let parsed: Value = serde_json::from_str(json).unwrap();
            assert_eq!(serde_values(&parsed), values, "{case}: serde");
        }
    }

    fn serde_values(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(serde_values).sum(),
            Value::Object(fields) => fields.values().map(serde_values).sum(),
            _ => 0,
        }
    }

    #[test]
    fn a_payload_with_too_many_values_is_refused() {
        // A list of `objects` empty objects: one value more than it has objects.
        let objects = |objects: usize| format!("[{}{{}}]", "{},".repeat(objects - 1)).into_bytes();
        let cases = [
            ("at the bound", objects(MAX_PAYLOAD_VALUES - 1), true),
            ("one value past it", objects(MAX_PAYLOAD_VALUES), false),
            (
                "past it, in an object after blanks",
                format!(
                    " {{\"a\":{}}}",
                    String::from_utf8(objects(MAX_PAYLOAD_VALUES)).unwrap()
                )
                .into_bytes(),
                false,
            ),
        ];
        for (case, body, read) in cases {
            let expected = match read {
                true => Ok(serde_json::from_slice(&body).unwrap()),
                false => Err(Unreadable::TooManyValues),
            };
            // Not assert_eq: a failure would print 200,000 values.
            assert!(payload(&body) == expected, "{case}");
        }
    }
}
