//! Reads only the parts of a JSON payload a provider needs.
//!
//! Push payloads run to megabytes (every commit, every file). Building a full `serde_json::Value` of them
//! costs more than verifying them, so the document is walked once and everything outside the wanted JSON
//! pointers is skipped with `IgnoredAny` (validated, never allocated).

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The body as a JSON object holding only the values at `pointers` (RFC 6901, array indices allowed), or
/// `None` when the body is not a JSON object. Other values stay absent, as if the sender had not sent them.
pub(crate) fn sparse_object(body: &[u8], pointers: &[&str]) -> Option<Value> {
    let paths: Vec<Vec<&str>> = pointers
        .iter()
        .map(|p| p.split('/').skip(1).collect())
        .collect();
    let refs: Vec<&[&str]> = paths.iter().map(Vec::as_slice).collect();
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = Sparse {
        paths: &refs,
        root: true,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// Deserializes the value at the current position, keeping the parts on `paths` (relative to it).
struct Sparse<'a> {
    paths: &'a [&'a [&'a str]],
    root: bool,
}

impl Sparse<'_> {
    /// Paths continuing below `segment`, or `None` when one of them ends here (keep the whole value).
    fn below(&self, segment: &str) -> Option<Vec<&[&str]>> {
        let mut rest = Vec::new();
        for path in self.paths {
            if let Some((first, tail)) = path.split_first() {
                if *first == segment {
                    if tail.is_empty() {
                        return None;
                    }
                    rest.push(tail);
                }
            }
        }
        Some(rest)
    }
}

impl<'de> DeserializeSeed<'de> for Sparse<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

macro_rules! scalar {
    ($name:ident, $t:ty) => {
        fn $name<E: serde::de::Error>(self, v: $t) -> Result<Value, E> {
            if self.root {
                return Err(E::custom("not a JSON object"));
            }
            Ok(Value::from(v))
        }
    };
}

impl<'de> Visitor<'de> for Sparse<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    scalar!(visit_bool, bool);
    scalar!(visit_i64, i64);
    scalar!(visit_u64, u64);
    scalar!(visit_f64, f64);
    scalar!(visit_str, &str);

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        if self.root {
            return Err(E::custom("not a JSON object"));
        }
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.below(&key) {
                None => {
                    kept.insert(key.into_owned(), map.next_value::<Value>()?);
                }
                Some(rest) if rest.is_empty() => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(rest) => {
                    let value = map.next_value_seed(Sparse {
                        paths: &rest,
                        root: false,
                    })?;
                    kept.insert(key.into_owned(), value);
                }
            }
        }
        Ok(Value::Object(kept))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        if self.root {
            return Err(serde::de::Error::custom("not a JSON object"));
        }
        let mut kept = Vec::new();
        let mut index = 0usize;
        loop {
            let segment = index.to_string();
            let element = match self.below(&segment) {
                None => seq.next_element::<Value>()?,
                Some(rest) if rest.is_empty() => {
                    seq.next_element::<IgnoredAny>()?.map(|_| Value::Null)
                }
                Some(rest) => seq.next_element_seed(Sparse {
                    paths: &rest,
                    root: false,
                })?,
            };
            match element {
                Some(value) => kept.push(value),
                None => return Ok(Value::Array(kept)),
            }
            index += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::sparse_object;
    use serde_json::json;

    #[test]
    fn keeps_only_wanted_values() {
        let body = br#"{"ref":"refs/heads/main","commits":[{"id":"1"},{"id":"2"}],
            "push":{"changes":[{"new":{"name":"a","type":"branch"}},{"new":{"name":"b"}}]},"n":1}"#;
        let v = sparse_object(body, &["/ref", "/push/changes/0/new"]).unwrap();
        assert_eq!(
            v,
            json!({"ref":"refs/heads/main","push":{"changes":[{"new":{"name":"a","type":"branch"}},null]}})
        );
        assert_eq!(
            v.pointer("/push/changes/0/new/name")
                .and_then(|n| n.as_str()),
            Some("a")
        );
    }

    #[test]
    fn refuses_non_objects_and_invalid_json() {
        for body in [
            &b"[1]"[..],
            b"\"x\"",
            b"1",
            b"null",
            b"{",
            b"{} x",
            b"",
            b"{\"a\":}",
        ] {
            assert_eq!(
                sparse_object(body, &["/a"]),
                None,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // Skipped parts are still validated.
        assert_eq!(sparse_object(br#"{"a":1,"skipped":[1,2,}"#, &["/a"]), None);
    }

    #[test]
    fn deep_nesting_never_overflows_the_stack() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        // Skipped parts are walked iteratively; kept parts hit serde_json's recursion limit.
        assert_eq!(
            sparse_object(deep.as_bytes(), &["/b"]),
            Some(serde_json::json!({}))
        );
        assert_eq!(sparse_object(deep.as_bytes(), &["/a/0/0"]), None);
    }
}
