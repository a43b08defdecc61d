//! The functions an expression may call (see [`crate::FUNCTIONS`]), as cel-go and its `ext.Strings` and
//! optional-types libraries define them, each charging its work to the evaluation's [`Meter`].

use std::sync::Arc;

use super::tree::Function;
use super::values::{checked_int, checked_uint, error, kind, no_overload, Meter};
use super::{Value, MAX_BUILT};

/// The steps of building one part of `split` (an allocation, ~3 times an element compared).
const PART_STEPS: u64 = 3;

/// How much more a byte of a searched-for string costs than a byte scanned.
const NEEDLE_WEIGHT: usize = 8;

/// Calls `function` (not an operator) on evaluated `args`, the target first.
pub(crate) fn call(
    function: Function,
    args: &[Value],
    meter: &mut Meter,
) -> Result<Value, super::values::Fault> {
    let [first, rest @ ..] = args else {
        return error("missing argument or target");
    };
    match (function, first, rest) {
        (Function::Size, value, []) => size(value, meter),
        (Function::String, value, []) => string(value),
        (Function::Int, value, []) => int(value, meter),
        (Function::Uint, value, []) => uint(value, meter),
        (Function::Double, value, []) => double(value, meter),
        (Function::First | Function::Last, Value::List(list), []) => {
            let element = if function == Function::First {
                list.first()
            } else {
                list.last()
            };
            // cel-go's `first()` is an optional that `value()`, always next, unwraps: an empty list's
            // `value()` fails, here at once.
            element.cloned().map_or_else(
                || error(format!("{}() of an empty list", function.name())),
                Ok,
            )
        }
        (Function::Value, value, []) => Ok(value.clone()),
        (_, Value::String(text), [Value::String(other)]) => {
            text_function(function, text, other, meter)
        }
        (_, target, [Value::String(_)]) if function != Function::Split => {
            error(format!("expected string, got {}", kind(target)))
        }
        (_, Value::String(_), [other]) => error(format!("expected string, got {}", kind(other))),
        _ => {
            let args: Vec<&Value> = args.iter().collect();
            no_overload(function.name(), &args)
        }
    }
}

/// `size()`: a string's code points (cel-go counts runes), a list's elements, a map's entries.
fn size(value: &Value, meter: &mut Meter) -> Result<Value, super::values::Fault> {
    let size = match value {
        Value::String(text) => {
            meter.scan(text.len())?;
            text.chars().count()
        }
        Value::Bytes(bytes) => bytes.len(),
        Value::List(list) => list.len(),
        Value::Map(map) => map.map.len(),
        other => return no_overload("size", &[other]),
    };
    Ok(Value::Int(i64::try_from(size).unwrap_or(i64::MAX)))
}

fn text_function(
    function: Function,
    text: &Arc<String>,
    other: &str,
    meter: &mut Meter,
) -> Result<Value, super::values::Fault> {
    // Rust's Two-Way searcher (`contains`, `split`) preprocesses the needle whole, ~8 times slower a
    // byte than a scan.
    meter.scan(
        text.len()
            .saturating_add(other.len().saturating_mul(NEEDLE_WEIGHT)),
    )?;
    let (text, other) = (text.as_str(), other);
    Ok(Value::Bool(match function {
        Function::Contains => text.contains(other),
        Function::StartsWith => text.starts_with(other),
        Function::EndsWith => text.ends_with(other),
        Function::Split => return split(text, other, meter),
        _ => {
            let (a, b) = (
                Value::String(Arc::new(String::new())),
                Value::String(Arc::new(String::new())),
            );
            return no_overload(function.name(), &[&a, &b]);
        }
    }))
}

/// `ext.Strings`'s `"a/b".split("/")`, Go's `strings.Split` (an empty separator splits into code
/// points), refusing more than [`MAX_BUILT`] parts.
fn split(text: &str, separator: &str, meter: &mut Meter) -> Result<Value, super::values::Fault> {
    let mut parts = Vec::new();
    let mut push = |part: &str| {
        if parts.len() == MAX_BUILT {
            return error(format!("split() gives more than {MAX_BUILT} parts"));
        }
        // Each part is an allocation (its bytes were charged as the text was scanned).
        meter.charge(PART_STEPS)?;
        parts.push(Value::String(Arc::new(part.to_string())));
        Ok(())
    };
    if separator.is_empty() {
        let mut at = 0;
        for c in text.chars() {
            push(text.get(at..at + c.len_utf8()).unwrap_or_default())?;
            at += c.len_utf8();
        }
    } else {
        for part in text.split(separator) {
            push(part)?;
        }
    }
    Ok(Value::List(Arc::new(parts)))
}

/// `string(x)`, as cel-go converts: a double as Go's `%g`.
fn string(value: &Value) -> Result<Value, super::values::Fault> {
    let text = match value {
        Value::String(_) => return Ok(value.clone()),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(d) => go_g(*d),
        Value::Bool(b) => b.to_string(),
        other => return no_overload("string", &[other]),
    };
    Ok(Value::String(Arc::new(text)))
}

/// Go's `fmt.Sprintf("%g", d)` (cel-go's `string(double)`): the shortest digits that read back as `d`,
/// in exponent form (`1e+06`) when the exponent is below -4 or at least 6.
fn go_g(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf" } else { "-Inf" }.into();
    }
    // Rust's `{:e}` is the shortest round-trip digits: `1.5e-7`, `1e21`.
    let scientific = format!("{d:e}");
    let Some((mantissa, exponent)) = scientific.split_once('e') else {
        return scientific;
    };
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs());
    }
    format!("{d}")
}

fn int(value: &Value, meter: &mut Meter) -> Result<Value, super::values::Fault> {
    let overflow = || error("integer overflow");
    match value {
        Value::Int(_) => Ok(value.clone()),
        Value::UInt(u) => i64::try_from(*u).map_or_else(|_| overflow(), |i| Ok(Value::Int(i))),
        Value::Float(d) => checked_int(*d).map_or_else(overflow, |i| Ok(Value::Int(i))),
        Value::String(text) => {
            meter.scan(text.len())?;
            text.parse::<i64>().map_or_else(
                |_| error("cannot convert the string to an int"),
                |i| Ok(Value::Int(i)),
            )
        }
        other => no_overload("int", &[other]),
    }
}

fn uint(value: &Value, meter: &mut Meter) -> Result<Value, super::values::Fault> {
    let overflow = || error("unsigned integer overflow");
    match value {
        Value::UInt(_) => Ok(value.clone()),
        Value::Int(i) => u64::try_from(*i).map_or_else(|_| overflow(), |u| Ok(Value::UInt(u))),
        Value::Float(d) => checked_uint(*d).map_or_else(overflow, |u| Ok(Value::UInt(u))),
        // Go's ParseUint takes no sign.
        Value::String(text) if !text.starts_with('+') => {
            meter.scan(text.len())?;
            text.parse::<u64>().map_or_else(
                |_| error("cannot convert the string to a uint"),
                |u| Ok(Value::UInt(u)),
            )
        }
        Value::String(_) => error("cannot convert the string to a uint"),
        other => no_overload("uint", &[other]),
    }
}

fn double(value: &Value, meter: &mut Meter) -> Result<Value, super::values::Fault> {
    match value {
        Value::Float(_) => Ok(value.clone()),
        Value::Int(i) => Ok(Value::Float(*i as f64)),
        Value::UInt(u) => Ok(Value::Float(*u as f64)),
        Value::String(text) => {
            meter.scan(text.len())?;
            text.parse::<f64>().map_or_else(
                |_| error("cannot convert the string to a double"),
                |d| Ok(Value::Float(d)),
            )
        }
        other => no_overload("double", &[other]),
    }
}
