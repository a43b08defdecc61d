//! The functions hookgate adds to the interpreter's: cel-go's `split`, `first`, `last` and `value` (so that
//! Flux's documented filters run unchanged), and the bounded forms of what the interpreter does unbounded.

use std::sync::Arc;

use super::{Arguments, Context, ExecutionError, This, Value, MAX_BUILT};

/// `_+_`, rewritten to refuse building a value over [`MAX_BUILT`]. Starts with `@`: no expression can
/// name it.
pub(crate) const ADD: &str = "@add";
/// Wraps every comprehension's range: the interpreter panics on one that is neither a list nor a map.
pub(crate) const ITERABLE: &str = "@iterable";

/// The interpreter's functions an expression may call (see [`crate::FUNCTIONS`]), and hookgate's.
pub(crate) fn register(context: &mut Context) {
    use cel_interpreter::functions as builtin;
    context.add_function("size", builtin::size);
    context.add_function("string", builtin::string);
    context.add_function("int", builtin::int);
    context.add_function("uint", builtin::uint);
    context.add_function("double", builtin::double);
    context.add_function("contains", builtin::contains);
    context.add_function("startsWith", builtin::starts_with);
    context.add_function("endsWith", builtin::ends_with);
    context.add_function("split", split);
    context.add_function("first", first);
    context.add_function("last", last);
    context.add_function("value", value);
    context.add_function(ADD, add);
    context.add_function(ITERABLE, iterable);
}

fn failure(function: &str, message: impl Into<String>) -> ExecutionError {
    ExecutionError::FunctionError {
        function: function.into(),
        message: message.into(),
    }
}

/// cel-go's `"a/b".split("/")`, refusing more than [`MAX_BUILT`] parts.
fn split(This(text): This<Arc<String>>, separator: Arc<String>) -> Result<Value, ExecutionError> {
    let mut parts = Vec::new();
    for part in text.split(separator.as_str()) {
        if parts.len() == MAX_BUILT {
            return Err(failure(
                "@split",
                format!("split() gives more than {MAX_BUILT} parts"),
            ));
        }
        parts.push(Value::String(Arc::new(part.to_string())));
    }
    Ok(Value::List(Arc::new(parts)))
}

/// cel-go's `list.first()` returns an optional, which `.value()` unwraps (an error when empty): here the
/// element itself, or that error at once.
fn first(This(list): This<Arc<Vec<Value>>>) -> Result<Value, ExecutionError> {
    list.first()
        .cloned()
        .ok_or_else(|| failure("@first", "first() of an empty list"))
}

/// As [`first`], the last element.
fn last(This(list): This<Arc<Vec<Value>>>) -> Result<Value, ExecutionError> {
    list.last()
        .cloned()
        .ok_or_else(|| failure("@last", "last() of an empty list"))
}

/// cel-go's optional `.value()`: [`first`] and [`last`] already unwrapped it.
fn value(This(target): This<Value>) -> Result<Value, ExecutionError> {
    Ok(target)
}

fn add(Arguments(args): Arguments) -> Result<Value, ExecutionError> {
    let (Some(left), Some(right)) = (args.first(), args.get(1)) else {
        return Err(ExecutionError::invalid_argument_count(2, args.len()));
    };
    let built = match (left, right) {
        (Value::String(a), Value::String(b)) => a.len() + b.len(),
        (Value::Bytes(a), Value::Bytes(b)) => a.len() + b.len(),
        (Value::List(a), Value::List(b)) => a.len() + b.len(),
        _ => 0,
    };
    if built > MAX_BUILT {
        return Err(failure(
            "@add",
            format!("+ builds a value over {MAX_BUILT} bytes or elements"),
        ));
    }
    left.clone() + right.clone()
}

fn iterable(Arguments(args): Arguments) -> Result<Value, ExecutionError> {
    match args.first() {
        Some(range @ (Value::List(_) | Value::Map(_))) => Ok(range.clone()),
        Some(other) => Err(failure(
            "@iterable",
            format!(
                "a comprehension needs a list or a map, not a {}",
                other.type_of()
            ),
        )),
        None => Err(ExecutionError::invalid_argument_count(1, 0)),
    }
}
