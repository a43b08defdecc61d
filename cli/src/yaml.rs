//! YAML read into JSON values with a budget: YAML aliases let a few kilobytes stand for billions of values
//! (each alias of an alias multiplies), which serde_yaml expands as it is read. Reading stops with an error
//! as soon as the values read, or the bytes of their strings, pass the budget, so the work and the memory
//! stay proportional to the budget whatever the input.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Values (scalars, lists, maps) one input may expand to: far above any set of Kubernetes objects a
/// person keeps in files, far below what takes a workstation long to build.
pub const MAX_VALUES: usize = 1_000_000;
/// Bytes of strings (keys included) one input may expand to.
pub const MAX_STRING_BYTES: usize = 64 * 1024 * 1024;

/// What is left of the budget of one input (shared by its documents).
pub struct Budget {
    values: Cell<usize>,
    bytes: Cell<usize>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            values: Cell::new(MAX_VALUES),
            bytes: Cell::new(MAX_STRING_BYTES),
        }
    }
}

impl Budget {
    fn spend<E: serde::de::Error>(&self, values: usize, bytes: usize) -> Result<(), E> {
        match (
            self.values.get().checked_sub(values),
            self.bytes.get().checked_sub(bytes),
        ) {
            (Some(v), Some(b)) => {
                self.values.set(v);
                self.bytes.set(b);
                Ok(())
            }
            _ => Err(E::custom(format!(
                "expands to more than {MAX_VALUES} values or {} MiB of text (YAML aliases?): refused",
                MAX_STRING_BYTES / (1024 * 1024)
            ))),
        }
    }
}

/// Reads one document as a JSON value, spending `budget`.
pub fn value<'de, D: Deserializer<'de>>(document: D, budget: &Budget) -> Result<Value, D::Error> {
    Bounded(budget).deserialize(document)
}

#[derive(Clone, Copy)]
struct Bounded<'a>(&'a Budget);

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.spend(1, 0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.spend(1, 0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.spend(1, 0)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.spend(1, 0)?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.spend(1, v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.0.spend(1, 0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(1, 0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(1, 0)?;
        let mut fields = Map::new();
        while let Some(key) = map.next_key_seed(self)? {
            // JSON keys are strings: a YAML key of another kind is written as JSON would show it.
            let key = match key {
                Value::String(key) => key,
                other => other.to_string(),
            };
            let value = map.next_value_seed(self)?;
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, _data: A) -> Result<Value, A::Error> {
        Err(A::Error::custom("YAML tags are not read"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<Value>, String> {
        let budget = Budget::default();
        serde_yaml::Deserializer::from_str(text)
            .map(|document| value(document, &budget).map_err(|e| e.to_string()))
            .collect()
    }

    /// Ten levels of ten aliases each: 10^10 values from well under a kilobyte, or wider lists under
    /// fewer levels (70 KB standing for 30 billion strings).
    fn bomb(width: usize, levels: usize) -> String {
        let first = vec![format!("\"{}\"", "x".repeat(20)); width].join(",");
        let mut text = format!("a0: &a0 [{first}]\n");
        for level in 1..levels {
            let aliases = vec![format!("*a{}", level - 1); 10].join(",");
            text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
        }
        text
    }

    #[test]
    fn objects_read_as_json() {
        let documents =
            read("kind: Secret\nstringData: {token: t}\ndata: [1, 2.5, true, null]\n---\n1: x\n")
                .unwrap();
        assert_eq!(
            documents,
            [
                serde_json::json!({"kind": "Secret", "stringData": {"token": "t"},
                                   "data": [1, 2.5, true, null]}),
                serde_json::json!({"1": "x"})
            ]
        );
    }

    /// Refused at the budget: without one, reading either input takes minutes and gigabytes (the bound
    /// below only tells a hang from an answer).
    #[test]
    fn an_alias_bomb_is_refused_at_the_budget() {
        for (case, text) in [("narrow and deep", bomb(10, 10)), ("wide", bomb(3000, 8))] {
            let start = std::time::Instant::now();
            // Through what `import` and `check` read files with.
            let error = match crate::import::objects_in(&text, "bomb.yaml") {
                Ok(objects) => panic!("{case}: read {} objects", objects.len()),
                Err(error) => format!("{error:#}"),
            };
            assert!(
                error.contains("expands to more than") || error.contains("repetition limit"),
                "{case}: {error}"
            );
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "{case}: {:?}",
                start.elapsed()
            );
        }
    }
}
