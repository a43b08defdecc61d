//! Values as cel-go computes with them: heterogeneous numeric equality and ordering, checked integer
//! arithmetic, map lookups across numeric key types. Every step is charged to the evaluation's
//! [`Meter`], and nothing here recurses or panics.

use std::cmp::Ordering;
use std::sync::Arc;

use cel_interpreter::objects::{Key, Map};

use super::{Value, BUDGET, BYTES_PER_STEP};

/// Why an evaluation step has no value. An error is a value in cel-go (`&&`, `||` and the comprehension
/// conditions absorb it); running out of budget ends the evaluation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Fault {
    Error(String),
    OverBudget,
}

pub(crate) type Outcome = Result<Value, Fault>;

pub(crate) fn error<T>(message: impl Into<String>) -> Result<T, Fault> {
    Err(Fault::Error(message.into()))
}

/// cel-go's "no such overload": `function` does not apply to values of these kinds.
pub(crate) fn no_overload<T>(function: &str, args: &[&Value]) -> Result<T, Fault> {
    let kinds: Vec<&str> = args.iter().map(|v| kind(v)).collect();
    error(format!(
        "no such overload: {function} applied to ({})",
        kinds.join(", ")
    ))
}

/// The work left to one evaluation, in steps (see [`BUDGET`]).
pub(crate) struct Meter {
    left: u64,
}

impl Meter {
    pub(crate) fn new() -> Self {
        Self { left: BUDGET }
    }

    /// Spends `steps`, or ends the evaluation when they are more than what is left.
    pub(crate) fn charge(&mut self, steps: u64) -> Result<(), Fault> {
        match self.left.checked_sub(steps) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => {
                self.left = 0;
                Err(Fault::OverBudget)
            }
        }
    }

    /// Spends the steps of scanning `bytes` bytes (one step at least).
    pub(crate) fn scan(&mut self, bytes: usize) -> Result<(), Fault> {
        self.charge(1 + (bytes / BYTES_PER_STEP) as u64)
    }
}

/// The kind of a value, as cel-go names its type (never the value itself).
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::List(_) => "list",
        Value::Map(_) => "map",
        Value::Int(_) => "int",
        Value::UInt(_) => "uint",
        Value::Float(_) => "double",
        Value::String(_) => "string",
        Value::Bytes(_) => "bytes",
        Value::Bool(_) => "bool",
        Value::Null => "null_type",
        Value::Function(..) => "function",
    }
}

/// cel-go's heterogeneous `==`: numbers compare by value across int, uint and double (NaN equals
/// nothing); values of other different kinds are unequal; lists and maps compare element by element.
/// Iterative: a payload nests deeper than an evaluation may recurse.
pub(crate) fn equal(a: &Value, b: &Value, meter: &mut Meter) -> Result<bool, Fault> {
    let mut pending = vec![(a, b)];
    while let Some((a, b)) = pending.pop() {
        meter.charge(1)?;
        match (a, b) {
            (Value::List(x), Value::List(y)) => {
                if x.len() != y.len() {
                    return Ok(false);
                }
                // Charged before the pairs are pushed: a difference found first (the last pair) must
                // not leave the others' copying free.
                meter.charge(x.len() as u64)?;
                pending.extend(x.iter().zip(y.iter()));
            }
            (Value::Map(x), Value::Map(y)) => {
                if x.map.len() != y.map.len() {
                    return Ok(false);
                }
                for (key, value) in x.map.iter() {
                    meter.charge(1)?;
                    match find(y, &key_value(key), meter)? {
                        Some(other) => pending.push((value, other)),
                        None => return Ok(false),
                    }
                }
            }
            _ => {
                if !scalar_equal(a, b, meter)? {
                    return Ok(false);
                }
            }
        }
    }
    Ok(true)
}

fn scalar_equal(a: &Value, b: &Value, meter: &mut Meter) -> Result<bool, Fault> {
    Ok(match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => {
            meter.scan(x.len().min(y.len()))?;
            x == y
        }
        (Value::Bytes(x), Value::Bytes(y)) => {
            meter.scan(x.len().min(y.len()))?;
            x == y
        }
        _ => numeric_order(a, b) == Some(Some(Ordering::Equal)),
    })
}

/// The order of two numbers of any numeric kinds, as cel-go's `compareDoubleInt` and its siblings:
/// `None` when either is not a number, `Some(None)` when one is NaN.
fn numeric_order(a: &Value, b: &Value) -> Option<Option<Ordering>> {
    Some(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
        (Value::UInt(x), Value::UInt(y)) => Some(x.cmp(y)),
        (Value::Float(x), Value::Float(y)) => x.partial_cmp(y),
        (Value::Int(x), Value::UInt(y)) => Some(int_uint(*x, *y)),
        (Value::UInt(x), Value::Int(y)) => Some(int_uint(*y, *x).reverse()),
        (Value::Float(x), Value::Int(y)) => double_int(*x, *y),
        (Value::Int(x), Value::Float(y)) => double_int(*y, *x).map(Ordering::reverse),
        (Value::Float(x), Value::UInt(y)) => double_uint(*x, *y),
        (Value::UInt(x), Value::Float(y)) => double_uint(*y, *x).map(Ordering::reverse),
        _ => return None,
    })
}

fn int_uint(i: i64, u: u64) -> Ordering {
    match u64::try_from(i) {
        Ok(i) => i.cmp(&u),
        Err(_) => Ordering::Less,
    }
}

/// As cel-go: a double beyond the int range orders past every int; within it, the int is compared as
/// a double.
fn double_int(d: f64, i: i64) -> Option<Ordering> {
    if d < i64::MIN as f64 {
        return Some(Ordering::Less);
    }
    if d > i64::MAX as f64 {
        return Some(Ordering::Greater);
    }
    d.partial_cmp(&(i as f64))
}

fn double_uint(d: f64, u: u64) -> Option<Ordering> {
    if d < 0.0 {
        return Some(Ordering::Less);
    }
    if d > u64::MAX as f64 {
        return Some(Ordering::Greater);
    }
    d.partial_cmp(&(u as f64))
}

/// cel-go's `<` and its siblings: numbers across kinds, strings and bytes (bytewise), booleans.
pub(crate) fn compare(
    function: &str,
    a: &Value,
    b: &Value,
    meter: &mut Meter,
) -> Result<Ordering, Fault> {
    if let Some(order) = numeric_order(a, b) {
        return order.map_or_else(|| error("NaN values cannot be ordered"), Ok);
    }
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            meter.scan(x.len().min(y.len()))?;
            Ok(x.cmp(y))
        }
        (Value::Bytes(x), Value::Bytes(y)) => {
            meter.scan(x.len().min(y.len()))?;
            Ok(x.cmp(y))
        }
        (Value::Bool(x), Value::Bool(y)) => Ok(x.cmp(y)),
        _ => no_overload(function, &[a, b]),
    }
}

/// `key` as a value, to look it up in another map.
pub(crate) fn key_value(key: &Key) -> Value {
    match key {
        Key::Int(i) => Value::Int(*i),
        Key::Uint(u) => Value::UInt(*u),
        Key::Bool(b) => Value::Bool(*b),
        Key::String(s) => Value::String(s.clone()),
    }
}

/// The value at `key` in `map`, as cel-go finds it: a number matches a key of another numeric kind with
/// the same value (`{1: 'a'}[1.0]`); a key of another kind is absent.
pub(crate) fn find<'m>(
    map: &'m Map,
    key: &Value,
    meter: &mut Meter,
) -> Result<Option<&'m Value>, Fault> {
    let get = |key: Key| map.map.get(&key);
    Ok(match key {
        Value::String(s) => {
            meter.scan(s.len())?;
            get(Key::String(s.clone()))
        }
        Value::Bool(b) => get(Key::Bool(*b)),
        Value::Int(i) => get(Key::Int(*i)).or_else(|| get(Key::Uint(u64::try_from(*i).ok()?))),
        Value::UInt(u) => get(Key::Uint(*u)).or_else(|| get(Key::Int(i64::try_from(*u).ok()?))),
        Value::Float(d) => match double_to_int(*d) {
            Some(i) => find(map, &Value::Int(i), meter)?,
            None => double_to_uint(*d).and_then(|u| get(Key::Uint(u))),
        },
        _ => None,
    })
}

/// `d` as an int when it is one exactly (cel-go's `doubleToInt64Lossless`).
pub(crate) fn double_to_int(d: f64) -> Option<i64> {
    let i = checked_int(d)?;
    (i as f64 == d).then_some(i)
}

fn double_to_uint(d: f64) -> Option<u64> {
    let u = checked_uint(d)?;
    (u as f64 == d).then_some(u)
}

/// cel-go's `int(double)`: truncated toward zero, or nothing beyond the int range.
pub(crate) fn checked_int(d: f64) -> Option<i64> {
    (d.is_finite() && d > i64::MIN as f64 && d < i64::MAX as f64).then_some(d as i64)
}

/// cel-go's `uint(double)`.
pub(crate) fn checked_uint(d: f64) -> Option<u64> {
    (d.is_finite() && d >= 0.0 && d < u64::MAX as f64).then_some(d as u64)
}

/// `+`, `-`, `*`, `/`, `%` on two values of the same numeric kind (cel-go has no mixed arithmetic):
/// integers checked, doubles IEEE.
pub(crate) fn arithmetic(function: &str, a: &Value, b: &Value) -> Result<Value, Fault> {
    let overflow = |kind: &str| error(format!("{kind} overflow"));
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => {
            if *y == 0 && matches!(function, "/" | "%") {
                return error(by_zero(function));
            }
            int_op(function, *x, *y).map_or_else(|| overflow("integer"), |v| Ok(Value::Int(v)))
        }
        (Value::UInt(x), Value::UInt(y)) => {
            if *y == 0 && matches!(function, "/" | "%") {
                return error(by_zero(function));
            }
            uint_op(function, *x, *y)
                .map_or_else(|| overflow("unsigned integer"), |v| Ok(Value::UInt(v)))
        }
        (Value::Float(x), Value::Float(y)) => match function {
            "+" => Ok(Value::Float(x + y)),
            "-" => Ok(Value::Float(x - y)),
            "*" => Ok(Value::Float(x * y)),
            "/" => Ok(Value::Float(x / y)),
            _ => no_overload(function, &[a, b]),
        },
        _ => no_overload(function, &[a, b]),
    }
}

fn by_zero(function: &str) -> &'static str {
    if function == "%" {
        "modulus by zero"
    } else {
        "division by zero"
    }
}

fn int_op(function: &str, x: i64, y: i64) -> Option<i64> {
    match function {
        "+" => x.checked_add(y),
        "-" => x.checked_sub(y),
        "*" => x.checked_mul(y),
        "/" => x.checked_div(y),
        _ => x.checked_rem(y),
    }
}

fn uint_op(function: &str, x: u64, y: u64) -> Option<u64> {
    match function {
        "+" => x.checked_add(y),
        "-" => x.checked_sub(y),
        "*" => x.checked_mul(y),
        "/" => x.checked_div(y),
        _ => x.checked_rem(y),
    }
}

/// `a + b` on strings and lists, refusing to build more than `limit` bytes or elements.
pub(crate) fn concatenate(
    a: &Value,
    b: &Value,
    limit: usize,
    meter: &mut Meter,
) -> Result<Value, Fault> {
    let over = || error(format!("+ builds a value over {limit} bytes or elements"));
    match (a, b) {
        (Value::String(x), Value::String(y)) => {
            let size = x.len().saturating_add(y.len());
            if size > limit {
                return over();
            }
            meter.scan(size)?;
            Ok(Value::String(Arc::new(format!("{x}{y}"))))
        }
        (Value::List(x), Value::List(y)) => {
            let size = x.len().saturating_add(y.len());
            if size > limit {
                return over();
            }
            meter.charge(size as u64)?;
            Ok(Value::List(Arc::new(
                x.iter().chain(y.iter()).cloned().collect(),
            )))
        }
        _ => arithmetic("+", a, b),
    }
}
