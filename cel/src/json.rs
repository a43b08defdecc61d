//! JSON in and out of filters: the payload as Flux's filters read it, and the payload cut down to the
//! fields an expression reads.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map as JsonMap, Value as Json};

use super::{Key, Map, Value};

/// `json` as Flux's filters read it: Flux decodes the payload with Go's `encoding/json` into `any`, so
/// every number is a double (an integer past 2^53 loses precision there too).
pub fn from_json(json: &Json) -> Value {
    match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        Json::String(s) => Value::String(Arc::new(s.clone())),
        Json::Array(items) => Value::List(Arc::new(items.iter().map(from_json).collect())),
        Json::Object(fields) => from_json_object(fields),
    }
}

/// A JSON object as Flux's filters read it, as [`from_json`] does.
pub fn from_json_object(fields: &JsonMap<String, Json>) -> Value {
    let map: HashMap<Key, Value> = fields
        .iter()
        .map(|(k, v)| (Key::String(Arc::new(k.clone())), from_json(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// The parts of `payload` at `paths` (object keys from the top), in an object of the same shape, on
/// which every expression that reads only those paths answers as on the whole payload. For each path,
/// the deepest part of it that exists is copied: the value at its end, whole; a value it only passes
/// through that is not an object (`null`, a scalar, a list), emptied to its kind, since every read through
/// it answers alike whatever it holds (`has(req.a.b)` is false on `{"a": 5}`, `req.a.b` an error on
/// `{"a": [...]}`); or the chain of objects down to it, without their other keys, when the object lacks
/// the path's next key. A payload that is not an object is emptied to its kind likewise (`has(req.a)` is an
/// error on `[...]`, false on `{}`).
pub fn prune(payload: &Json, paths: &[Vec<String>]) -> Json {
    let mut pruned = emptied(payload);
    for path in paths {
        copy_path(payload, &mut pruned, path);
    }
    pruned
}

/// Copies into `pruned` the deepest part of `path` that exists in `payload` (see [`prune`]).
fn copy_path(payload: &Json, pruned: &mut Json, path: &[String]) {
    let (mut source, mut target) = (payload, pruned);
    for key in path {
        // Both are objects here, or the walk stops: a value that is not one was copied whole.
        let (Json::Object(fields), Json::Object(into)) = (source, target) else {
            return;
        };
        let Some(value) = fields.get(key) else { return };
        target = into.entry(key.clone()).or_insert_with(|| emptied(value));
        source = value;
    }
    // The whole value at the path is read (a superset of what other paths copied into it).
    *target = source.clone();
}

/// A value of `value`'s kind holding nothing of it (see [`prune`]).
fn emptied(value: &Json) -> Json {
    match value {
        Json::Object(_) => Json::Object(JsonMap::new()),
        Json::Array(_) => Json::Array(Vec::new()),
        Json::String(_) => Json::String(String::new()),
        Json::Number(_) => Json::from(0),
        Json::Bool(_) => Json::Bool(false),
        Json::Null => Json::Null,
    }
}
