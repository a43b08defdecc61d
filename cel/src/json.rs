//! JSON in and out of filters: the payload as the interpreter reads it, and the payload cut down to the
//! fields an expression reads.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map as JsonMap, Value as Json};

use super::{Key, Map, Value};

/// `json` as the interpreter reads it, as Flux's `req`: an integer is an `int` when it fits one, else a
/// `uint`, else a `double`.
pub fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(from_json).collect())),
        Json::Object(fields) => from_json_object(fields),
    }
}

/// A JSON object as the interpreter reads it, as [`from_json`] does.
pub fn from_json_object(fields: &JsonMap<String, Json>) -> Value {
    let map: HashMap<Key, Value> = fields
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// The parts of `payload` at `paths` (object keys from the top), in an object of the same shape: what the
/// expressions that read those paths see as they would in the whole payload, and nothing else. A path
/// that is absent stays absent (so `has()` answers the same); a path through a value that is not an
/// object ends there.
pub fn prune(payload: &Json, paths: &[Vec<String>]) -> Json {
    let mut pruned = Json::Object(JsonMap::new());
    let mut paths: Vec<&Vec<String>> = paths.iter().collect();
    // Shorter first: a path under one already copied is copied with it.
    paths.sort_by_key(|p| p.len());
    let mut copied: Vec<&Vec<String>> = Vec::new();
    for path in paths {
        if copied.iter().any(|c| path.starts_with(c)) {
            continue;
        }
        if let Some(value) = path
            .iter()
            .try_fold(payload, |at, key| at.get(key.as_str()))
        {
            insert(&mut pruned, path, value.clone());
            copied.push(path);
        }
    }
    pruned
}

fn insert(into: &mut Json, path: &[String], value: Json) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = into;
    for key in parents {
        let Json::Object(fields) = at else { return };
        at = fields
            .entry(key.clone())
            .or_insert_with(|| Json::Object(JsonMap::new()));
    }
    if let Json::Object(fields) = at {
        fields.insert(last.clone(), value);
    }
}
