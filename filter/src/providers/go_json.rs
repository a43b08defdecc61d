//! Reads a payload as Go's `encoding/json` decodes it into a struct, which is all Flux checks of registry
//! payloads: a body is accepted exactly when Flux's decoding succeeds, and the struct comes out as Go holds
//! it after decoding.
//!
//! Go's rules, as this module keeps them: field names match case-insensitively (Unicode simple folding,
//! under which `ſ` is `s` and the Kelvin sign is `k`); `null` leaves a field as it was (a slice becomes
//! nil); a value of the wrong JSON type fails; other fields are skipped but must be valid JSON; a string's
//! invalid UTF-8 becomes U+FFFD, byte by byte (one exception: the raw bytes ED A0..BF xx in a string that
//! also holds an escape read as one U+FFFD, three in Go, as serde_json writes an escaped unpaired surrogate
//! so); nesting beyond 10,000 fails; `time.Time` takes `null` or an
//! RFC 3339 string as `time.Parse` reads it, unescaped. `json.Decoder.Decode` reads the first value and
//! ignores what follows it ([`Extent::FirstValue`]); `json.Unmarshal` refuses anything after it
//! ([`Extent::Whole`]).
//!
//! Verdicts are Go's (checked against Go on a corpus: tests/go-decoding). Decoded values are too but for
//! two cases no sender produces: the exception above, and a list given twice, which is decoded afresh where
//! Go decodes the second into the first's elements (`["a"]` then `[null]` is `["a"]` in Go, `[""]` here).
//!
//! The work is one pass of serde_json over the body plus one scan for Go's scanner rules (linear, no
//! recursion beyond the struct's own depth: skipped values are walked iteratively).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The Go type of a struct field, as far as decoding it goes.
#[derive(Debug)]
pub(crate) enum GoType {
    String,
    /// `[]string`
    Strings,
    /// `time.Time`
    Time,
    Struct(&'static [(&'static str, GoType)]),
}

/// How much of the body Go decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extent {
    /// `json.NewDecoder(body).Decode(&v)`: the first value; whatever follows is not read.
    FirstValue,
    /// `json.Unmarshal(body, &v)`: the whole body is one value.
    Whole,
}

/// Go's `maxNestingDepth` in `encoding/json`'s scanner.
const GO_MAX_DEPTH: usize = 10_000;

/// How Go's zero `time.Time` marshals.
const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The struct of `fields` decoded from `body` as Go decodes it, as a JSON object holding every field (zero
/// values where the body has none: `""`, `null` for a slice), or `None` where Go's decoding fails.
pub(crate) fn decode(
    body: &[u8],
    fields: &'static [(&'static str, GoType)],
    extent: Extent,
) -> Option<Value> {
    if !go_scanner_accepts(body) {
        return None;
    }
    let shape = GoType::Struct(fields);
    let mut value = zero(&shape);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    Field {
        ty: &shape,
        slot: &mut value,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    if extent == Extent::Whole {
        deserializer.end().ok()?;
    }
    Some(value)
}

/// The value Go's zero `ty` marshals to.
fn zero(ty: &GoType) -> Value {
    match ty {
        GoType::String => Value::String(String::new()),
        GoType::Strings => Value::Null,
        GoType::Time => Value::String(GO_ZERO_TIME.into()),
        GoType::Struct(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, ty)| (name.to_string(), zero(ty)))
                .collect::<Map<_, _>>(),
        ),
    }
}

/// What Go's scanner refuses in the first value and serde_json's reading of raw strings lets through:
/// control characters in strings and nesting deeper than Go's limit. Everything else serde_json refuses
/// as Go does.
fn go_scanner_accepts(body: &[u8]) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ if byte < 0x20 => return false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > GO_MAX_DEPTH {
                    return false;
                }
            }
            b'}' | b']' if depth <= 1 => return true,
            b'}' | b']' => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' | b',' | b':' => {}
            // A scalar at the top: the first value ends with it (serde_json judges it).
            _ if depth == 0 => return true,
            _ => {}
        }
    }
    true
}

/// Whether JSON key `key` names Go field `name` (ASCII): Go's exact-then-folded match, which for an
/// ASCII name is a case-insensitive match where `ſ` (U+017F) stands for `s` and `K` (U+212A) for `k`.
fn names_field(key: &[u8], name: &str) -> bool {
    let Ok(key) = std::str::from_utf8(key) else {
        // Go reads invalid UTF-8 as U+FFFD, which no ASCII name holds.
        return false;
    };
    let mut expected = name.bytes();
    for c in key.chars() {
        let Some(want) = expected.next() else {
            return false;
        };
        let folded = match c {
            '\u{017F}' => b's',
            '\u{212A}' => b'k',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        };
        if folded != want.to_ascii_lowercase() {
            return false;
        }
    }
    expected.next().is_none()
}

/// `bytes` as Go's decoder makes a string of them: each byte of an invalid UTF-8 sequence is U+FFFD.
/// Where the JSON text had escapes (`escaped`), serde_json wrote an unpaired `\uD800`-style surrogate as
/// its three WTF-8 bytes, which Go reads as one U+FFFD.
fn go_string(mut bytes: &[u8], escaped: bool) -> String {
    let mut text = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(valid) => {
                text.push_str(valid);
                return text;
            }
            Err(error) => {
                let (valid, rest) = bytes.split_at(error.valid_up_to());
                text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                text.push(char::REPLACEMENT_CHARACTER);
                let invalid = match rest {
                    [0xED, 0xA0..=0xBF, 0x80..=0xBF, ..] if escaped => 3,
                    _ => 1,
                };
                bytes = rest.get(invalid..).unwrap_or_default();
            }
        }
    }
}

/// Decodes the value at the current position into `slot`, a Go value of type `ty`.
struct Field<'t, 's> {
    ty: &'t GoType,
    slot: &'s mut Value,
}

impl<'de> DeserializeSeed<'de> for Field<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.ty {
            GoType::Struct(_) => deserializer.deserialize_any(self),
            // Strings are read raw, so that invalid UTF-8 and unpaired surrogates decode as in Go.
            _ => deserializer.deserialize_option(self),
        }
    }
}

impl Field<'_, '_> {
    /// A JSON string of raw bytes `bytes`; `unescaped` when the JSON text held no escape.
    fn string<E: serde::de::Error>(self, bytes: &[u8], unescaped: bool) -> Result<(), E> {
        match self.ty {
            GoType::String => {
                *self.slot = Value::String(go_string(bytes, !unescaped));
                Ok(())
            }
            // `time.Time` parses the JSON text between the quotes, escapes included, which RFC 3339
            // never holds.
            GoType::Time if unescaped && go_rfc3339(bytes) => {
                *self.slot = Value::String(go_string(bytes, false));
                Ok(())
            }
            GoType::Time => Err(E::custom("not an RFC 3339 time")),
            _ => Err(E::custom("a string for a structured field")),
        }
    }
}

impl<'de> Visitor<'de> for Field<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a JSON value for a Go {:?}", self.ty)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        // `null` leaves a value as it was, but empties a slice.
        if matches!(self.ty, GoType::Strings) {
            *self.slot = Value::Null;
        }
        Ok(())
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        match self.ty {
            GoType::Strings => deserializer.deserialize_seq(self),
            _ => deserializer.deserialize_bytes(self),
        }
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, bytes: &'de [u8]) -> Result<(), E> {
        self.string(bytes, true)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<(), E> {
        self.string(bytes, false)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if !matches!(self.ty, GoType::Strings) {
            return Err(serde::de::Error::custom(
                "a list for a field that is not one",
            ));
        }
        let mut items = Vec::new();
        loop {
            let mut item = zero(&GoType::String);
            let seed = Field {
                ty: &GoType::String,
                slot: &mut item,
            };
            match seq.next_element_seed(seed)? {
                Some(()) => items.push(item),
                None => break,
            }
        }
        *self.slot = Value::Array(items);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let GoType::Struct(fields) = self.ty else {
            return Err(serde::de::Error::custom(
                "an object for a field that is not one",
            ));
        };
        while let Some(key) = map.next_key::<RawKey>()? {
            let field = fields.iter().find(|(name, _)| names_field(&key.0, name));
            let slot = field.and_then(|(name, ty)| Some((ty, self.slot.get_mut(*name)?)));
            match slot {
                Some((ty, slot)) => map.next_value_seed(Field { ty, slot })?,
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// An object key as raw bytes (Go matches invalid UTF-8 as U+FFFD; serde_json's `str` refuses it).
struct RawKey(Vec<u8>);

impl<'de> serde::Deserialize<'de> for RawKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = RawKey;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<RawKey, E> {
                Ok(RawKey(bytes.to_vec()))
            }
        }
        deserializer.deserialize_bytes(Bytes)
    }
}

/// Whether Go's `time.Parse(time.RFC3339, text)` accepts `text` (its fast path accepts a subset):
/// `YYYY-MM-DDTh[h]:MM:SS[(.|,)digits](Z|±hh:mm)`, the date valid, hour < 24, minute and second < 60,
/// offset hours ≤ 24 and minutes ≤ 60.
fn go_rfc3339(text: &[u8]) -> bool {
    let number = |range: &[u8]| -> Option<u32> {
        range.iter().try_fold(0u32, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (Some(date), Some(rest)) = (text.get(..10), text.get(10..)) else {
        return false;
    };
    let (Some(year), Some(month), Some(day)) = (
        number(&date[..4]),
        number(&date[5..7]),
        number(&date[8..10]),
    ) else {
        return false;
    };
    if date[4] != b'-' || date[7] != b'-' || !(1..=12).contains(&month) {
        return false;
    }
    if day < 1 || day > days_in(month, year) || rest.first() != Some(&b'T') {
        return false;
    }
    // The hour has one digit or two.
    let hour_digits = if rest.get(2) == Some(&b':') { 1 } else { 2 };
    let Some(time) = rest.get(1..1 + hour_digits + 6) else {
        return false;
    };
    let (hour, clock) = time.split_at(hour_digits);
    let in_range = |digits: &[u8], below: u32| number(digits).is_some_and(|n| n < below);
    if !in_range(hour, 24) || clock[0] != b':' || clock[3] != b':' {
        return false;
    }
    if !in_range(&clock[1..3], 60) || !in_range(&clock[4..6], 60) {
        return false;
    }
    let mut zone = &rest[1 + hour_digits + 6..];
    if matches!(zone, [b'.' | b',', next, ..] if next.is_ascii_digit()) {
        let digits = zone[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        zone = &zone[1 + digits..];
    }
    match zone {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            number(&[*h1, *h2]).is_some_and(|h| h <= 24)
                && number(&[*m1, *m2]).is_some_and(|m| m <= 60)
        }
        _ => false,
    }
}

/// Days in `month` of `year` in the proleptic Gregorian calendar, as Go counts them.
fn days_in(month: u32, year: u32) -> u32 {
    match month {
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SHAPE: &[(&str, GoType)] = &[
        ("name", GoType::String),
        ("tags", GoType::Strings),
        ("at", GoType::Time),
        ("inner", GoType::Struct(&[("id", GoType::String)])),
    ];

    fn decoded(body: &[u8], extent: Extent) -> Option<Value> {
        decode(body, SHAPE, extent)
    }

    fn with(changes: Value) -> Value {
        let mut value = json!({"name": "", "tags": null, "at": GO_ZERO_TIME, "inner": {"id": ""}});
        for (key, v) in changes.as_object().unwrap() {
            value[key] = v.clone();
        }
        value
    }

    /// Go's `encoding/json` decoding into a struct, case by case (the expectations are Go 1.26's).
    #[test]
    fn decodes_as_go_decodes_into_a_struct() {
        let deep = |n: usize| format!(r#"{{"skip":{}{}}}"#, "[".repeat(n), "]".repeat(n));
        let (at_limit, past_limit) = (deep(GO_MAX_DEPTH - 1), deep(GO_MAX_DEPTH));
        let cases: Vec<(&str, &[u8], Option<Value>)> = vec![
            ("every field", br#"{"name":"a","tags":["x","y"],"at":"2024-02-29T23:59:59.5Z","inner":{"id":"i"}}"#,
             Some(with(json!({"name":"a","tags":["x","y"],"at":"2024-02-29T23:59:59.5Z","inner":{"id":"i"}})))),
            ("no field", b"{}", Some(with(json!({})))),
            ("null", b" null ", Some(with(json!({})))),
            ("unknown fields skipped", br#"{"other":[1,{"a":null}],"name":"a"}"#, Some(with(json!({"name":"a"})))),
            ("names folded", "{\"NAME\":\"a\",\"Inner\":{\"ID\":\"i\"}}".as_bytes(), Some(with(json!({"name":"a","inner":{"id":"i"}})))),
            ("long s folds to s", "{\"inner\":{\"id\":\"i\"},\"tagſ\":[\"x\"]}".as_bytes(), Some(with(json!({"tags":["x"],"inner":{"id":"i"}})))),
            ("a longer name does not match", br#"{"names":"a"}"#, Some(with(json!({})))),
            ("null keeps a value set before", br#"{"name":"a","name":null}"#, Some(with(json!({"name":"a"})))),
            ("null empties a slice", br#"{"tags":["x"],"tags":null}"#, Some(with(json!({})))),
            ("the last duplicate wins", br#"{"name":"a","Name":"b"}"#, Some(with(json!({"name":"b"})))),
            ("a null list element is empty", br#"{"tags":[null,"y"]}"#, Some(with(json!({"tags":["","y"]})))),
            ("escapes decoded", br#"{"name":"a\u00e9\n"}"#, Some(with(json!({"name":"a\u{e9}\n"})))),
            ("invalid UTF-8 is U+FFFD per byte", b"{\"name\":\"a\xe2\x82\"}", Some(with(json!({"name":"a\u{FFFD}\u{FFFD}"})))),
            ("invalid UTF-8 in a skipped field", b"{\"x\":\"\xff\"}", Some(with(json!({})))),
            ("unpaired surrogates are U+FFFD each", br#"{"name":"\ud800x\udc00\ud83d\ude00"}"#, Some(with(json!({"name":"\u{FFFD}x\u{FFFD}\u{1F600}"})))),
            ("the one difference: raw surrogate bytes beside an escape are one U+FFFD, three in Go", b"{\"name\":\"\xed\xa0\x80\\n\"}", Some(with(json!({"name":"\u{FFFD}\n"})))),
            ("nesting at Go's limit", at_limit.as_bytes(), Some(with(json!({})))),
            ("nesting past Go's limit", past_limit.as_bytes(), None),
            ("a control character in a string", b"{\"x\":\"a\x01\"}", None),
            ("a number for a string", br#"{"name":1}"#, None),
            ("an object for a string", br#"{"name":{}}"#, None),
            ("a string for a struct", br#"{"inner":"i"}"#, None),
            ("a list for a struct", br#"{"inner":[]}"#, None),
            ("a string for a slice", br#"{"tags":"x"}"#, None),
            ("a number in a slice", br#"{"tags":["x",1]}"#, None),
            ("a number for a time", br#"{"at":1}"#, None),
            ("an escaped time", br#"{"at":"\u0032024-02-29T23:59:59Z"}"#, None),
            ("a list at the top", b"[]", None),
            ("a string at the top", br#""a""#, None),
            ("invalid JSON in a skipped field", br#"{"x":[1,],"name":"a"}"#, None),
            ("an empty body", b"", None),
            ("only spaces", b" \n", None),
        ];
        for (case, body, expected) in cases {
            assert_eq!(decoded(body, Extent::FirstValue), expected, "{case}");
            assert_eq!(decoded(body, Extent::Whole), expected, "{case} (whole)");
        }
    }

    #[test]
    fn only_the_decoder_ignores_what_follows_the_first_value() {
        for body in [
            &br#"{"name":"a"} x"#[..],
            br#"{"name":"a"}{"#,
            b"{\"name\":\"a\"}]]\x01",
        ] {
            let text = String::from_utf8_lossy(body);
            assert_eq!(
                decoded(body, Extent::FirstValue),
                Some(with(json!({"name":"a"}))),
                "{text}"
            );
            assert_eq!(decoded(body, Extent::Whole), None, "{text}");
        }
        assert!(decoded(b"{\"name\":\"a\"}\n", Extent::Whole).is_some());
    }

    #[test]
    fn rfc3339_as_go_time_parse_reads_it() {
        for (text, accepted) in [
            ("2021-02-26T19:13:55.749Z", true),
            ("2021-02-26T19:13:55Z", true),
            ("2021-02-26T19:13:55.123456789012+05:30", true),
            ("2021-02-26T9:13:55Z", true),
            ("2021-02-26T19:13:55,5Z", true),
            ("2021-02-26T19:13:55+24:60", true),
            ("2024-02-29T00:00:00Z", true),
            ("0000-02-29T00:00:00Z", true),
            ("2023-02-29T00:00:00Z", false),
            ("2021-04-31T00:00:00Z", false),
            ("2021-13-01T00:00:00Z", false),
            ("2021-00-01T00:00:00Z", false),
            ("2021-02-26T24:00:00Z", false),
            ("2021-02-26T19:60:00Z", false),
            ("2021-02-26T19:13:60Z", false),
            ("2021-02-26T19:13:55+25:00", false),
            ("2021-02-26T19:13:55+05:61", false),
            ("2021-02-26T19:13:55", false),
            ("2021-02-26T19:13:55.Z", false),
            ("2021-02-26t19:13:55Z", false),
            ("2021-02-26T19:13:55z", false),
            ("2021-02-26T19:13:55Z ", false),
            ("2021-2-26T19:13:55Z", false),
            ("2021-02-26T19:3:55Z", false),
            ("+021-02-26T19:13:55Z", false),
            ("2021-02-26T19:13:55+0530", false),
            ("yesterday", false),
            ("", false),
        ] {
            assert_eq!(go_rfc3339(text.as_bytes()), accepted, "{text}");
        }
    }

    #[test]
    fn go_strings_replace_each_invalid_byte() {
        assert_eq!(go_string(b"ok", false), "ok");
        assert_eq!(go_string(b"\xff\xfe", false), "\u{FFFD}\u{FFFD}");
        assert_eq!(
            go_string(b"a\xe2\x82\xacb\xe2\x82", false),
            "a\u{20AC}b\u{FFFD}\u{FFFD}"
        );
        assert_eq!(
            go_string(b"\xed\xa0\x80", false),
            "\u{FFFD}\u{FFFD}\u{FFFD}"
        );
        assert_eq!(go_string(b"\xed\xa0\x80", true), "\u{FFFD}");
    }

    /// Every cut and every one-byte change of a payload is decided without a panic; a cut object is refused.
    #[test]
    fn cut_and_changed_payloads_are_decided_without_panic() {
        let body = br#"{"name":"a\u00e9","tags":["x",null],"at":"2021-02-26T9:13:55,5+01:00","inner":{"id":"\ud800"},"x":[{}]} "#;
        let complete = body.len() - 1;
        assert!(decoded(&body[..complete], Extent::Whole).is_some());
        for end in 0..complete {
            assert_eq!(
                decoded(&body[..end], Extent::FirstValue),
                None,
                "cut at {end}"
            );
        }
        for at in 0..body.len() {
            for byte in [
                0, b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'n', b'1', 0x80, 0xed, 0xff,
            ] {
                let mut changed = body.to_vec();
                changed[at] = byte;
                for extent in [Extent::FirstValue, Extent::Whole] {
                    let _ = decoded(&changed, extent);
                }
                let _ = go_rfc3339(&changed[45..changed.len().min(71)]);
            }
        }
    }
}
