//! The JWT filter's verified payload with its JSON types. Read under its own path (`metadata` /
//! `filter_metadata` / namespace / provider), Envoy turns the payload into proxy-wasm pairs, where a list is
//! pairs of items and empty values: `["a"]` and `{"a": ""}` are the same bytes, as are `[]` and `{}`, and
//! a one-byte string and a boolean. Read whole (`get_property(["metadata"])`), the request's dynamic
//! metadata is a protobuf message, which Envoy hands over serialized (`envoy.config.core.v3.Metadata`):
//! its `filter_metadata` maps each namespace to a `google.protobuf.Struct`, whose `Value`s keep the kind
//! of each claim. This module reads that serialization, and only what it needs of it.

use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 32;

/// The claims `jwt_provider` verified, from the serialized `Metadata` of the request: `None` when it holds
/// none for that provider, or they are not a `Struct` read whole.
pub fn verified_claims(
    metadata: &[u8],
    namespace: &str,
    jwt_provider: &str,
) -> Option<Map<String, Value>> {
    // Metadata.filter_metadata = 1 (map<string, Struct>); typed_filter_metadata and any other field skipped.
    let verified = map_entry(metadata, 1, namespace)??;
    // Struct.fields = 1 (map<string, Value>).
    let payload = map_entry(verified, 1, jwt_provider)??;
    match value(payload, 0)? {
        Value::Object(claims) => Some(claims),
        _ => None,
    }
}

/// The value of `key` in the map field `number` of `message`: `Some(None)` when it has no such key, `None`
/// when the message is malformed or holds the key twice.
fn map_entry<'a>(message: &'a [u8], number: u64, key: &str) -> Option<Option<&'a [u8]>> {
    let mut found = None;
    for field in Fields(message) {
        let (field_number, field) = field?;
        if field_number != number {
            continue;
        }
        let Field::Bytes(entry) = field else {
            return None;
        };
        let (entry_key, entry_value) = entry_parts(entry)?;
        if entry_key == key.as_bytes() {
            if found.is_some() {
                return None;
            }
            found = Some(entry_value);
        }
    }
    Some(found)
}

/// A map entry's key (field 1) and value (field 2), each empty when absent (protobuf's defaults).
fn entry_parts(entry: &[u8]) -> Option<(&[u8], &[u8])> {
    let (mut key, mut value): (&[u8], &[u8]) = (&[], &[]);
    for field in Fields(entry) {
        match field? {
            (1, Field::Bytes(bytes)) => key = bytes,
            (2, Field::Bytes(bytes)) => value = bytes,
            (1 | 2, _) => return None,
            _ => {}
        }
    }
    Some((key, value))
}

/// A `google.protobuf.Value` as JSON. A value of no kind, or of two, is refused: Envoy writes one.
fn value(message: &[u8], depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut kind = None;
    for field in Fields(message) {
        let read = match field? {
            (1, Field::Varint(_)) => Value::Null,
            (2, Field::Fixed64(bits)) => Value::Number(Number::from_f64(f64::from_le_bytes(bits))?),
            (3, Field::Bytes(text)) => Value::String(std::str::from_utf8(text).ok()?.to_string()),
            (4, Field::Varint(flag @ (0 | 1))) => Value::Bool(flag == 1),
            (5, Field::Bytes(fields)) => Value::Object(structure(fields, depth + 1)?),
            (6, Field::Bytes(items)) => Value::Array(list(items, depth + 1)?),
            (1..=6, _) => return None,
            _ => continue,
        };
        if kind.replace(read).is_some() {
            return None;
        }
    }
    kind
}

/// A `google.protobuf.Struct` (its map field 1) as a JSON object; a key given twice is refused.
fn structure(message: &[u8], depth: usize) -> Option<Map<String, Value>> {
    let mut fields = Map::new();
    for field in Fields(message) {
        match field? {
            (1, Field::Bytes(entry)) => {
                let (key, entry_value) = entry_parts(entry)?;
                let key = std::str::from_utf8(key).ok()?.to_string();
                if fields.insert(key, value(entry_value, depth)?).is_some() {
                    return None;
                }
            }
            (1, _) => return None,
            _ => {}
        }
    }
    Some(fields)
}

/// A `google.protobuf.ListValue` (its repeated field 1) as a JSON list.
fn list(message: &[u8], depth: usize) -> Option<Vec<Value>> {
    let mut items = Vec::new();
    for field in Fields(message) {
        match field? {
            (1, Field::Bytes(item)) => items.push(value(item, depth)?),
            (1, _) => return None,
            _ => {}
        }
    }
    Some(items)
}

/// One field of a protobuf message, by wire type.
enum Field<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Bytes(&'a [u8]),
    Fixed32,
}

/// The fields of a serialized message in order, as (field number, field); `None` ends it where it is
/// malformed (a group, a truncated field, a varint longer than ten bytes).
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut result = 0u64;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.0.split_first()?;
            self.0 = rest;
            result |= u64::from(byte & 0x7f).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(result);
            }
        }
        None
    }

    fn take(&mut self, size: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.0.split_at_checked(size)?;
        self.0 = rest;
        Some(taken)
    }

    fn field(&mut self) -> Option<(u64, Field<'a>)> {
        let tag = self.varint()?;
        let field = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(self.take(8)?.try_into().ok()?),
            2 => {
                let size = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(self.take(size)?)
            }
            5 => self.take(4).map(|_| Field::Fixed32)?,
            _ => return None,
        };
        Some((tag >> 3, field))
    }
}

impl<'a> Iterator for Fields<'a> {
    /// `None` inside: the message is malformed from here on.
    type Item = Option<(u64, Field<'a>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let field = self.field();
        if field.is_none() {
            // Nothing more is read of a malformed message.
            self.0 = &[];
        }
        Some(field)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    fn tag(out: &mut Vec<u8>, number: u64, wire_type: u64) {
        varint(out, number << 3 | wire_type);
    }

    fn varint(out: &mut Vec<u8>, mut n: u64) {
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }

    fn bytes_field(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
        tag(out, number, 2);
        varint(out, bytes.len() as u64);
        out.extend(bytes);
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        bytes_field(&mut out, 1, key.as_bytes());
        bytes_field(&mut out, 2, value);
        out
    }

    /// `value` as a serialized `google.protobuf.Value`.
    pub fn encode_value(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        match value {
            Value::Null => {
                tag(&mut out, 1, 0);
                varint(&mut out, 0);
            }
            Value::Number(n) => {
                tag(&mut out, 2, 1);
                out.extend(n.as_f64().unwrap().to_le_bytes());
            }
            Value::String(s) => bytes_field(&mut out, 3, s.as_bytes()),
            Value::Bool(b) => {
                tag(&mut out, 4, 0);
                varint(&mut out, u64::from(*b));
            }
            Value::Object(fields) => bytes_field(&mut out, 5, &encode_struct(fields)),
            Value::Array(items) => {
                let mut list = Vec::new();
                for item in items {
                    bytes_field(&mut list, 1, &encode_value(item));
                }
                bytes_field(&mut out, 6, &list);
            }
        }
        out
    }

    fn encode_struct(fields: &Map<String, Value>) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, value) in fields {
            bytes_field(&mut out, 1, &entry(key, &encode_value(value)));
        }
        out
    }

    /// The serialized `Metadata` of a request whose `namespace` holds `payloads` by provider name.
    pub fn encode_metadata(namespace: &str, payloads: &[(&str, &Value)]) -> Vec<u8> {
        let mut verified = Vec::new();
        for (provider, payload) in payloads {
            bytes_field(&mut verified, 1, &entry(provider, &encode_value(payload)));
        }
        let mut out = Vec::new();
        // Another filter's namespace first: it is skipped.
        bytes_field(&mut out, 1, &entry("envoy.lb", &encode_struct(&Map::new())));
        bytes_field(&mut out, 1, &entry(namespace, &verified));
        out
    }

    #[test]
    fn a_payload_is_read_with_the_kind_of_every_claim() {
        let payload = json!({"s": "x", "b": true, "one": "\u{1}", "n": 42.0, "f": 1.5, "z": null,
                             "list": ["a", {"k": [1.0, false]}], "object": {"a": ""},
                             "empty_list": [], "empty_object": {}});
        let metadata = encode_metadata("ns", &[("other", &json!({"a": 1.0})), ("p", &payload)]);
        assert_eq!(
            verified_claims(&metadata, "ns", "p"),
            payload.as_object().cloned()
        );
        assert_eq!(verified_claims(&metadata, "ns", "missing"), None);
        assert_eq!(verified_claims(&metadata, "other-ns", "p"), None);
    }

    #[test]
    fn malformed_metadata_is_refused() {
        let good = encode_metadata("ns", &[("p", &json!({"a": "b"}))]);
        let nested = (0..=MAX_DEPTH).fold(json!("x"), |v, _| json!([v]));
        let two_kinds = {
            let mut v = encode_value(&json!("a"));
            v.extend(encode_value(&json!(true)));
            v
        };
        let with_value = |value: Vec<u8>| {
            let mut fields = Vec::new();
            bytes_field(&mut fields, 1, &entry("a", &value));
            let mut payload = Vec::new();
            bytes_field(&mut payload, 5, &fields);
            let mut verified = Vec::new();
            bytes_field(&mut verified, 1, &entry("p", &payload));
            let mut out = Vec::new();
            bytes_field(&mut out, 1, &entry("ns", &verified));
            out
        };
        let twice = {
            let mut out = good.clone();
            out.extend(encode_metadata("ns", &[("p", &json!({"a": "b"}))]));
            out
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated",                      good[..good.len() - 1].to_vec()),
            ("a length past the end",          vec![0x0a, 0xff, 0x01]),
            ("a varint of eleven bytes",       vec![0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            ("a group",                        vec![0x0b]),
            ("nested too deep",                encode_metadata("ns", &[("p", &json!({"a": nested}))])),
            ("a value of two kinds",           with_value(two_kinds)),
            ("a value of no kind",             with_value(Vec::new())),
            ("a boolean of 2",                 with_value(vec![0x20, 0x02])),
            ("a string that is not UTF-8",     with_value(vec![0x1a, 0x01, 0xff])),
            ("a NaN",                          with_value([vec![0x11], f64::NAN.to_le_bytes().to_vec()].concat())),
            ("the namespace twice",            twice),
            ("a payload that is not a Struct", encode_metadata("ns", &[("p", &json!(["a"]))])),
        ];
        for (name, metadata) in cases {
            assert_eq!(verified_claims(&metadata, "ns", "p"), None, "{name}");
        }
    }
}
