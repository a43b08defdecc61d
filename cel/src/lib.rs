//! hookgate's CEL filters, shared by the edge filter (which compiles them at configure time and evaluates
//! the receiver's `filter`) and the controller (which evaluates the target filters on each candidate
//! object).
//!
//! What runs is what Flux runs: cel-go (v0.27, notification-controller v1.9.3's) with Flux's environment:
//! variables of type `google.protobuf.Struct` (so the payload's JSON numbers are doubles and its fields
//! `dyn`), the output type checked to be `bool`, homogeneous aggregate literals, cross-type numeric
//! comparisons, `ext.Strings` and optional types. hookgate evaluates a subset of that language itself:
//! its parser ([`syntax`]) builds `cel-parser`'s tree, [`tree`] checks it into hookgate's, [`types`] infers
//! its types as cel-go's checker does, and [`eval`] evaluates it with cel-go's semantics (`&&` and `||`
//! absorb an error on either side, `==` compares numbers across int, uint and double, `size()` counts
//! code points, integer arithmetic is checked, `has()` of a field of a scalar is false). Values are
//! `cel-interpreter`'s [`Value`]; its interpreter does not run (it has no cost limit, panics on some
//! inputs, wraps integers and differs from cel-go where listed above).
//!
//! What [`Expression::compile`] accepts:
//!
//! - at most [`MAX_SOURCE_BYTES`] of source, of the syntax [`syntax`] accepts, nested at most
//!   [`MAX_NESTING`] deep (the parser recurses);
//! - at most [`MAX_NODES`] nodes and [`MAX_DEPTH`] levels of syntax tree (the evaluator recurses);
//! - only the declared variables, and only the functions in [`FUNCTIONS`], each with its arity;
//! - comprehensions: only `all`, `exists` and `exists_one` (`map` and `filter` build lists in quadratic
//!   time), at most [`MAX_COMPREHENSIONS`], none inside another;
//! - what cel-go's checker accepts in Flux's environment, as far as hookgate knows the types: the result
//!   is a `bool`, operators apply to their operands' types, `first()`/`last()` are unwrapped by `value()`.
//!
//! Evaluation: `+` and `split` refuse to build a value of more than [`MAX_BUILT`] bytes or elements, and
//! one evaluation does at most [`BUDGET`] steps (each node evaluated, each element compared or visited,
//! each [`BYTES_PER_STEP`] bytes scanned), whatever the expression and the input: past it, it fails
//! with an [`EvaluationError`] (the filter then fails closed). An evaluation error's text shows no value
//! of the input.

use std::fmt;
use std::sync::Arc;

use cel_interpreter::objects::{Key, Map};
use cel_parser::reference::Val;

mod eval;
mod functions;
mod json;
mod syntax;
mod tree;
mod types;
mod values;

pub use cel_interpreter::Value;
pub use json::{from_json, from_json_object, prune};

/// The variables of a target filter, as Flux's: `res`, the object (`apiVersion`, `kind`, `metadata`), and
/// `req`, the payload.
pub const TARGET_VARIABLES: &[&str] = &["res", "req"];

/// The longest expression, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024;
/// The deepest nesting of brackets, calls and conditionals, and the longest run of unary `!` or `-`: the
/// parser recurses on each.
pub const MAX_NESTING: usize = 12;
/// The most nodes of the syntax tree (after macros are expanded).
pub const MAX_NODES: usize = 256;
/// The deepest syntax tree; evaluation recurses this deep.
pub const MAX_DEPTH: usize = 32;
/// The most comprehensions (`all`, `exists`, `exists_one`) of one expression.
pub const MAX_COMPREHENSIONS: usize = 4;
/// The largest string (bytes) or list (elements) that `+` or `split` may build.
pub const MAX_BUILT: usize = 16 * 1024;
/// The most steps one evaluation may take: each node evaluated is [`NODE_STEPS`], each element compared
/// or visited (`==`, `in`, `+` on lists) one, each [`BYTES_PER_STEP`] bytes of a string scanned
/// (compared, searched, counted, split, hashed as a key) one. The weights make a step cost about the
/// same (measured natively, with the other sessions' load: a node ~100 ns, an element ~20 ns, 64 bytes
/// ~20 ns), so the budget is about 0.1 to 0.5 s of work at most, whatever the expression and input.
/// Flux's documented filters scan a payload string about three times
/// (`req.tag.split('/').last().value().split(":")…`, `req.tag.contains(…)`): on the largest payload a
/// receiver takes (`bodyLimit` up to 32 MiB) that is about 1.6 million steps, inside the budget. A
/// quadratic expression (`req.a.exists(x, 1 in req.a)` on 100,000 elements, 10^10 comparisons) stops
/// after this much work instead of running for minutes on the worker that serves every route.
pub const BUDGET: u64 = 4_000_000;
/// The steps of evaluating one node of the tree (see [`BUDGET`]).
pub const NODE_STEPS: u64 = 4;
/// The bytes of a string scanned per step (see [`BUDGET`]).
pub const BYTES_PER_STEP: usize = 64;

/// The functions an expression may call: name, whether it is called on a target (`x.f()`), and its
/// number of arguments. `size`, `string`, `int`, `uint` and `double` take both forms.
pub const FUNCTIONS: &[(&str, Call)] = &[
    ("size", Call::Either),
    ("string", Call::Either),
    ("int", Call::Either),
    ("uint", Call::Either),
    ("double", Call::Either),
    ("contains", Call::Method(1)),
    ("startsWith", Call::Method(1)),
    ("endsWith", Call::Method(1)),
    ("split", Call::Method(1)),
    ("first", Call::Method(0)),
    ("last", Call::Method(0)),
    ("value", Call::Method(0)),
];

/// How a function is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// On a target, with this many arguments.
    Method(usize),
    /// `f(x)` or `x.f()`.
    Either,
}

/// Why an expression is refused. The text is safe to log and to reply: it names parts of the expression,
/// never a value of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError(pub String);

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CompileError {}

/// Why an evaluation failed: the filter then fails closed. The text shows no value of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvaluationError(pub String);

impl fmt::Display for EvaluationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvaluationError {}

/// What an expression reads of a variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reads {
    Nothing,
    /// Only these fields (paths of object keys): `req.repository.name` is `["repository", "name"]`. An
    /// index that is not a string constant ends a path: `req.commits[0].id` reads `["commits"]`.
    Fields(Vec<Vec<String>>),
    /// The variable itself (`size(req)`, `req[k]` with `k` computed).
    Whole,
}

/// A compiled, bounded boolean expression.
#[derive(Debug)]
pub struct Expression {
    tree: tree::Node,
    reads: tree::VariableReads,
}

impl Expression {
    /// Compiles `source`, which may read `variables` only.
    pub fn compile(source: &str, variables: &[&str]) -> Result<Self, CompileError> {
        if source.trim().is_empty() {
            return Err(CompileError("is empty".into()));
        }
        if source.len() > MAX_SOURCE_BYTES {
            return Err(CompileError(format!(
                "is longer than {MAX_SOURCE_BYTES} bytes"
            )));
        }
        let (tree, reads) = tree::build(syntax::parse(source)?, variables)?;
        match types::type_of(&tree)? {
            types::Type::Bool => Ok(Self { tree, reads }),
            other => Err(CompileError(format!(
                "must return a boolean, not {} (cel-go's type check, as Flux runs it)",
                other.name()
            ))),
        }
    }

    /// What the expression reads of `variable`.
    pub fn reads(&self, variable: &str) -> Reads {
        let mut fields = Vec::new();
        for (name, path) in &self.reads {
            if name == variable {
                if path.is_empty() {
                    return Reads::Whole;
                }
                fields.push(path.clone());
            }
        }
        if fields.is_empty() {
            Reads::Nothing
        } else {
            Reads::Fields(fields)
        }
    }

    /// Evaluates the expression with `variables` (every declared one): `Ok(true)` or `Ok(false)`, or why
    /// it could not decide.
    pub fn evaluate(&self, variables: Vec<(&str, Value)>) -> Result<bool, EvaluationError> {
        let mut evaluation = eval::Evaluation::new(variables);
        let outcome = evaluation.eval(&self.tree);
        eval::Evaluation::finish(outcome).map_err(|fault| match fault {
            values::Fault::Error(message) => EvaluationError(message),
            values::Fault::OverBudget => {
                EvaluationError(format!("exceeded its evaluation budget of {BUDGET} steps"))
            }
        })
    }
}

/// A literal of the parser's tree as a value.
fn literal(value: Val) -> Value {
    match value {
        Val::String(s) => Value::String(Arc::new(s)),
        Val::Boolean(b) => Value::Bool(b),
        Val::Int(i) => Value::Int(i),
        Val::UInt(u) => Value::UInt(u),
        Val::Double(d) => Value::Float(d),
        Val::Bytes(b) => Value::Bytes(Arc::new(b)),
        Val::Null => Value::Null,
    }
}

/// The values the variables of a filter hold, as values.
pub fn text(value: &str) -> Value {
    Value::String(Arc::new(value.to_string()))
}

/// A map of strings (headers, labels), as a value.
pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let map: std::collections::HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), text(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests;
