//! hookgate's CEL filters, shared by the edge filter (which compiles them at configure time and evaluates
//! the receiver's `filter`) and the controller (which evaluates the target filters on each candidate
//! object).
//!
//! The interpreter is `cel-interpreter` 0.10 (the cel-rust project before its rename to `cel`, whose
//! releases are larger in the Wasm module than its budget allows); its parser is replaced by hookgate's
//! (see [`syntax`]: the ANTLR one panics on syntax errors and is a third of the module). The interpreter
//! has no cost limit and panics on a few inputs (a comprehension over a value that is neither a list nor a
//! map), and a panic kills the Wasm VM. So [`Expression::compile`] bounds and checks every expression
//! before it can run:
//!
//! - at most [`MAX_SOURCE_BYTES`] of source, of the syntax [`syntax`] accepts, nested at most
//!   [`MAX_NESTING`] deep (the parser recurses);
//! - at most [`MAX_NODES`] nodes and [`MAX_DEPTH`] levels of syntax tree;
//! - only the declared variables, and only the functions in [`FUNCTIONS`], each with its arity;
//! - comprehensions: only `all`, `exists` and `exists_one` (`map` and `filter` build lists in quadratic
//!   time), at most [`MAX_COMPREHENSIONS`], none inside another, each over a value checked to be a list or a
//!   map when it runs;
//! - `+` and `split` refuse to build a value of more than [`MAX_BUILT`] bytes or elements.
//!
//! Evaluation is then linear in the input (whose size the receiver's `bodyLimit` bounds) times the number
//! of nodes. An evaluation error is an [`EvaluationError`] whose text shows no value of the input.

use std::fmt;
use std::sync::Arc;

use cel_interpreter::extractors::{Arguments, This};
use cel_interpreter::objects::{Key, Map};
use cel_interpreter::{Context, ExecutionError};
use cel_parser::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;

mod functions;
mod json;
mod syntax;

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

/// The operators the parser produces that the interpreter evaluates.
const OPERATORS: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::IN,
    operators::NOT_STRICTLY_FALSE,
];

/// Operators and functions whose result is never a boolean: an expression that is one of them is refused.
const NOT_BOOLEAN: &[&str] = &[
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::NEGATE,
    "size",
    "string",
    "int",
    "uint",
    "double",
    "split",
];

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
    /// The syntax tree, rewritten so that every step is bounded (see the crate's documentation).
    tree: IdedExpr,
    /// Every variable read: its name and the field path read (empty: the variable itself).
    reads: Vec<(String, Vec<String>)>,
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
        let tree = syntax::parse(source)?;
        let mut check = Check {
            variables,
            bound: Vec::new(),
            nodes: 0,
            comprehensions: 0,
            reads: Vec::new(),
        };
        let start = At {
            depth: 0,
            in_comprehension: false,
            in_path: false,
        };
        let tree = check.node(tree, start)?;
        if let Some(kind) = never_boolean(&tree) {
            return Err(CompileError(format!("must return a boolean, not {kind}")));
        }
        Ok(Self {
            tree,
            reads: check.reads,
        })
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
        let mut context = Context::empty();
        functions::register(&mut context);
        for (name, value) in variables {
            context.add_variable_from_value(name, value);
        }
        match Value::resolve(&self.tree, &context) {
            Ok(Value::Bool(result)) => Ok(result),
            Ok(other) => Err(EvaluationError(format!(
                "returned a {}, not a boolean",
                other.type_of()
            ))),
            Err(error) => Err(EvaluationError(describe(&error))),
        }
    }
}

/// An error's text without the values it may carry (the interpreter's own messages print them): a
/// wrongly typed value is named by its kind. A missing key is a field the expression selects (an index
/// computed from the payload gives null, not this error).
fn describe(error: &ExecutionError) -> String {
    match error {
        ExecutionError::NoSuchKey(key) => format!("no such key: {key}"),
        ExecutionError::UndeclaredReference(name) => format!("undeclared reference to '{name}'"),
        ExecutionError::FunctionError { function, message } if function.starts_with('@') => {
            message.clone()
        }
        ExecutionError::FunctionError { function, .. } => format!("{function}() failed"),
        ExecutionError::InvalidArgumentCount { expected, actual } => {
            format!("expected {expected} arguments, got {actual}")
        }
        ExecutionError::UnsupportedTargetType { target } => {
            format!("unsupported target of type {}", target.type_of())
        }
        ExecutionError::NotSupportedAsMethod { method, target } => {
            format!("{method}() does not apply to a {}", target.type_of())
        }
        ExecutionError::UnexpectedType { got, want } => {
            format!("expected {}, got {}", kind_named(want), kind_named(got))
        }
        ExecutionError::ValuesNotComparable(a, b) => {
            format!("a {} cannot be compared to a {}", a.type_of(), b.type_of())
        }
        ExecutionError::UnsupportedBinaryOperator(op, a, b) => {
            format!(
                "{op} does not apply to a {} and a {}",
                a.type_of(),
                b.type_of()
            )
        }
        ExecutionError::UnsupportedUnaryOperator(op, a) => {
            format!("{op} does not apply to a {}", a.type_of())
        }
        ExecutionError::UnsupportedIndex(value, index)
        | ExecutionError::UnsupportedMapIndex(index @ value)
        | ExecutionError::UnsupportedListIndex(index @ value) => {
            format!(
                "cannot index a {} with a {}",
                value.type_of(),
                index.type_of()
            )
        }
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "division by zero".into()
        }
        ExecutionError::Overflow(op, _, _) => format!("{op} overflows"),
        ExecutionError::MissingArgumentOrTarget => "missing argument or target".into(),
        _ => "evaluation failed".into(),
    }
}

/// The kind in an interpreter's type text: a type name (`string`, `Arc<String>`: `string`), or the first
/// word of a value's `{:?}` dump (`Map(Map { .. })`: `map`), never what follows it.
fn kind_named(text: &str) -> String {
    let text = text.strip_prefix("Arc<").unwrap_or(text);
    let kind: String = text
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if kind.is_empty() {
        "a value".into()
    } else {
        kind.to_ascii_lowercase()
    }
}

/// The kind of value `tree` certainly is, when it is certainly not a boolean.
fn never_boolean(tree: &IdedExpr) -> Option<&'static str> {
    match &tree.expr {
        Expr::Literal(Val::Boolean(_)) => None,
        Expr::Literal(_) => Some("a literal of another type"),
        Expr::List(_) => Some("a list"),
        Expr::Map(_) => Some("a map"),
        Expr::Call(call) if NOT_BOOLEAN.contains(&call.func_name.as_str()) => {
            Some("a number, string or list")
        }
        Expr::Call(call) if call.func_name == functions::ADD => Some("a number, string or list"),
        _ => None,
    }
}

/// The walk of [`Expression::compile`] over the syntax tree: checks each node and rewrites what must be
/// bounded when it runs.
struct Check<'a> {
    variables: &'a [&'a str],
    /// Comprehension variables in scope.
    bound: Vec<String>,
    nodes: usize,
    comprehensions: usize,
    reads: Vec<(String, Vec<String>)>,
}

/// Where the walk is.
#[derive(Clone, Copy)]
struct At {
    depth: usize,
    in_comprehension: bool,
    /// Below a node that recorded the variable path it reads: the shorter paths of its operands are
    /// part of it.
    in_path: bool,
}

impl At {
    fn below(self, in_path: bool) -> Self {
        Self {
            depth: self.depth + 1,
            in_path,
            ..self
        }
    }
}

impl Check<'_> {
    fn node(&mut self, mut tree: IdedExpr, at: At) -> Result<IdedExpr, CompileError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(CompileError(format!("has more than {MAX_NODES} nodes")));
        }
        if at.depth >= MAX_DEPTH {
            return Err(CompileError(format!(
                "nests deeper than {MAX_DEPTH} levels"
            )));
        }
        let mut in_path = at.in_path;
        if !in_path {
            if let Some(read) = self.variable_path(&tree) {
                self.reads.push(read);
                in_path = true;
            }
        }
        tree.expr = match tree.expr {
            Expr::Literal(value) => Expr::Literal(value),
            Expr::Ident(name) => {
                if !self.variables.contains(&name.as_str()) && !self.bound.contains(&name) {
                    return Err(CompileError(format!("undeclared reference to '{name}'")));
                }
                Expr::Ident(name)
            }
            Expr::Select(mut select) => {
                select.operand = Box::new(self.node(*select.operand, at.below(in_path))?);
                Expr::Select(select)
            }
            Expr::Call(call) => Expr::Call(self.call(call, at, in_path)?),
            Expr::List(mut list) => {
                list.elements = self.nodes_of(list.elements, at.below(false))?;
                Expr::List(list)
            }
            Expr::Map(mut map) => {
                let mut entries = Vec::with_capacity(map.entries.len());
                for mut entry in map.entries {
                    entry.expr = match entry.expr {
                        EntryExpr::MapEntry(mut e) if !e.optional => {
                            e.key = self.node(e.key, at.below(false))?;
                            e.value = self.node(e.value, at.below(false))?;
                            EntryExpr::MapEntry(e)
                        }
                        _ => return Err(CompileError("unsupported map entry".into())),
                    };
                    entries.push(entry);
                }
                map.entries = entries;
                Expr::Map(map)
            }
            Expr::Comprehension(c) => Expr::Comprehension(self.comprehension(c, at)?),
            Expr::Struct(_) => {
                return Err(CompileError("message literals are not supported".into()))
            }
            Expr::Unspecified => return Err(CompileError("unsupported expression".into())),
        };
        Ok(tree)
    }

    fn nodes_of(&mut self, trees: Vec<IdedExpr>, at: At) -> Result<Vec<IdedExpr>, CompileError> {
        trees.into_iter().map(|tree| self.node(tree, at)).collect()
    }

    fn comprehension(
        &mut self,
        mut c: ComprehensionExpr,
        at: At,
    ) -> Result<ComprehensionExpr, CompileError> {
        if at.in_comprehension {
            return Err(CompileError(
                "has a comprehension inside another (quadratic time)".into(),
            ));
        }
        self.comprehensions += 1;
        if self.comprehensions > MAX_COMPREHENSIONS {
            return Err(CompileError(format!(
                "has more than {MAX_COMPREHENSIONS} comprehensions"
            )));
        }
        for variable in std::iter::once(&c.iter_var).chain(c.iter_var2.iter()) {
            if self.variables.contains(&variable.as_str()) {
                return Err(CompileError(format!(
                    "comprehension variable '{variable}' hides a variable"
                )));
            }
        }
        let range = self.node(*c.iter_range, at.below(false))?;
        // The interpreter panics on a range that is neither a list nor a map: checked first.
        c.iter_range = Box::new(IdedExpr {
            id: range.id,
            expr: Expr::Call(CallExpr {
                func_name: functions::ITERABLE.into(),
                target: None,
                args: vec![range],
            }),
        });
        let scope = self.bound.len();
        self.bound.push(c.iter_var.clone());
        self.bound.extend(c.iter_var2.clone());
        self.bound.push(c.accu_var.clone());
        let inside = At {
            in_comprehension: true,
            ..at.below(false)
        };
        c.accu_init = Box::new(self.node(*c.accu_init, inside)?);
        c.loop_cond = Box::new(self.node(*c.loop_cond, inside)?);
        c.loop_step = Box::new(self.node(*c.loop_step, inside)?);
        c.result = Box::new(self.node(*c.result, inside)?);
        self.bound.truncate(scope);
        Ok(c)
    }

    fn call(
        &mut self,
        mut call: CallExpr,
        at: At,
        in_path: bool,
    ) -> Result<CallExpr, CompileError> {
        let name = call.func_name.as_str();
        if !OPERATORS.contains(&name) {
            let arity = FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
            let (target, args) = (call.target.is_some(), call.args.len());
            match arity {
                None => return Err(CompileError(format!("undeclared reference to '{name}'"))),
                Some(Call::Method(n)) if target && args == n => {}
                Some(Call::Either) if (target && args == 0) || (!target && args == 1) => {}
                Some(_) => {
                    return Err(CompileError(format!(
                        "{name}() called with the wrong number of arguments"
                    )))
                }
            }
        }
        if name == operators::ADD {
            // Bounded: see `functions::add`.
            call.func_name = functions::ADD.into();
        }
        let is_index = call.func_name == operators::INDEX;
        if let Some(target) = call.target.take() {
            call.target = Some(Box::new(self.node(*target, at.below(false))?));
        }
        let mut args = Vec::with_capacity(call.args.len());
        for (i, arg) in call.args.into_iter().enumerate() {
            // The indexed operand is part of the path this node read; the index is not.
            args.push(self.node(arg, at.below(is_index && i == 0 && in_path))?);
        }
        call.args = args;
        Ok(call)
    }

    /// The declared variable `tree` reads and the field path it reads, when `tree` is a variable under
    /// field selections and indexes (a computed index ends the path: `req.a[k].b` reads `["a"]`).
    fn variable_path(&self, tree: &IdedExpr) -> Option<(String, Vec<String>)> {
        let mut path = Vec::new();
        let mut at = tree;
        loop {
            match &at.expr {
                Expr::Select(select) => {
                    path.push(select.field.clone());
                    at = &select.operand;
                }
                Expr::Call(call) if call.func_name == operators::INDEX && call.args.len() == 2 => {
                    match &call.args[1].expr {
                        Expr::Literal(Val::String(key)) => path.push(key.clone()),
                        _ => path.clear(),
                    }
                    at = &call.args[0];
                }
                Expr::Ident(name)
                    if self.variables.contains(&name.as_str()) && !self.bound.contains(name) =>
                {
                    path.reverse();
                    return Some((name.clone(), path));
                }
                _ => return None,
            }
        }
    }
}

/// The values the variables of a filter hold, as the interpreter takes them.
pub fn text(value: &str) -> Value {
    Value::String(Arc::new(value.to_string()))
}

/// A map of strings (headers, labels), as the interpreter takes it.
pub fn string_map<'a>(entries: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    let map: std::collections::HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k.to_string())), text(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

#[cfg(test)]
mod tests;
