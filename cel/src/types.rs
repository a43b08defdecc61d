//! The static types of a checked tree, as cel-go's type checker infers them in Flux's environment
//! (variables are `google.protobuf.Struct`, so every field of them is `dyn`; homogeneous aggregate
//! literals; cross-type numeric comparisons): Flux refuses an expression whose type is not `bool`, or
//! that applies an operator to operands of known types it has no overload for, so hookgate does too.

use super::tree::{Comprehension, Function, Node};
use super::{CompileError, Value};

/// A static type. `Dyn` is anything, known when it runs: every variable and what is read from it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Type {
    Dyn,
    Null,
    Bool,
    Int,
    Uint,
    Double,
    String,
    List(Box<Type>),
    Map(Box<Type>, Box<Type>),
    /// `list.first()` and `list.last()`, which only `.value()` may follow.
    Optional(Box<Type>),
}

impl Type {
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Dyn => "dyn".into(),
            Self::Null => "null_type".into(),
            Self::Bool => "bool".into(),
            Self::Int => "int".into(),
            Self::Uint => "uint".into(),
            Self::Double => "double".into(),
            Self::String => "string".into(),
            Self::List(e) => format!("list({})", e.name()),
            Self::Map(k, v) => format!("map({}, {})", k.name(), v.name()),
            Self::Optional(t) => format!("optional_type({})", t.name()),
        }
    }

    fn is_number(&self) -> bool {
        matches!(self, Self::Int | Self::Uint | Self::Double)
    }
}

/// The type of `node`, or why cel-go's checker refuses it.
pub(crate) fn type_of(node: &Node) -> Result<Type, CompileError> {
    Checker { bound: Vec::new() }.node(node)
}

struct Checker<'a> {
    /// Comprehension variables in scope and their types.
    bound: Vec<(&'a str, Type)>,
}

/// The type both `a` and `b` are, when they can be the same (`dyn` is any).
fn join(a: &Type, b: &Type) -> Option<Type> {
    Some(match (a, b) {
        (Type::Dyn, _) | (_, Type::Dyn) => Type::Dyn,
        (Type::List(x), Type::List(y)) => Type::List(Box::new(join(x, y)?)),
        (Type::Map(k, v), Type::Map(l, w)) => {
            Type::Map(Box::new(join(k, l)?), Box::new(join(v, w)?))
        }
        _ if a == b => a.clone(),
        _ => return None,
    })
}

fn no_overload(function: Function, args: &[&Type]) -> CompileError {
    let names: Vec<String> = args.iter().map(|t| t.name()).collect();
    CompileError(format!(
        "found no matching overload for '{}' applied to ({})",
        function.name(),
        names.join(", ")
    ))
}

impl<'a> Checker<'a> {
    fn node(&mut self, node: &'a Node) -> Result<Type, CompileError> {
        Ok(match node {
            Node::Literal(value) => literal(value),
            Node::Variable(name) => self
                .bound
                .iter()
                .rev()
                .find(|(n, _)| n == name)
                .map_or(Type::Dyn, |(_, t)| t.clone()),
            Node::Select { operand, .. } | Node::Has { operand, .. } => {
                let is_has = matches!(node, Node::Has { .. });
                match self.node(operand)? {
                    Type::Map(_, _) | Type::Dyn if is_has => Type::Bool,
                    Type::Map(_, value) => *value,
                    Type::Dyn => Type::Dyn,
                    other => {
                        return Err(CompileError(format!(
                            "type '{}' does not support field selection",
                            other.name()
                        )))
                    }
                }
            }
            Node::Call(function, args) => self.call(*function, args)?,
            Node::List(elements) => Type::List(Box::new(self.elements(elements.iter())?)),
            Node::Map(entries) => {
                let key = self.elements(entries.iter().map(|(k, _)| k))?;
                let value = self.elements(entries.iter().map(|(_, v)| v))?;
                Type::Map(Box::new(key), Box::new(value))
            }
            Node::Comprehension(c) => self.comprehension(c)?,
        })
    }

    /// The one type of an aggregate literal's elements (cel-go's `HomogeneousAggregateLiterals`).
    fn elements(&mut self, nodes: impl Iterator<Item = &'a Node>) -> Result<Type, CompileError> {
        let mut joined: Option<Type> = None;
        for node in nodes {
            let t = self.node(node)?;
            joined = Some(match joined {
                None => t,
                Some(before) => join(&before, &t).ok_or_else(|| {
                    CompileError(format!(
                        "expected type '{}' but found '{}'",
                        before.name(),
                        t.name()
                    ))
                })?,
            });
        }
        Ok(joined.unwrap_or(Type::Dyn))
    }

    fn comprehension(&mut self, c: &'a Comprehension) -> Result<Type, CompileError> {
        let element = match self.node(&c.range)? {
            Type::List(element) | Type::Map(element, _) => *element,
            Type::Dyn => Type::Dyn,
            other => {
                return Err(CompileError(format!(
                    "expression of type '{}' cannot be the range of a comprehension",
                    other.name()
                )))
            }
        };
        let accumulator = self.node(&c.init)?;
        let scope = self.bound.len();
        self.bound.push((c.variable.as_str(), element));
        self.bound.push((c.accumulator.as_str(), accumulator));
        self.node(&c.condition)?;
        self.node(&c.step)?;
        let result = self.node(&c.result);
        self.bound.truncate(scope);
        result
    }

    fn call(&mut self, function: Function, args: &'a [Node]) -> Result<Type, CompileError> {
        let types = args
            .iter()
            .map(|a| self.node(a))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Type> = types.iter().collect();
        if function != Function::Value && refs.iter().any(|t| matches!(t, Type::Optional(_))) {
            return Err(CompileError(
                "an optional value (first(), last()) must be unwrapped by .value()".into(),
            ));
        }
        result(function, &refs).ok_or_else(|| no_overload(function, &refs))
    }
}

/// The static type of a literal.
fn literal(value: &Value) -> Type {
    match value {
        Value::Null => Type::Null,
        Value::Bool(_) => Type::Bool,
        Value::Int(_) => Type::Int,
        Value::UInt(_) => Type::Uint,
        Value::Float(_) => Type::Double,
        Value::String(_) => Type::String,
        _ => Type::Dyn,
    }
}

/// The type of `function` applied to `args`, as cel-go's standard declarations give it, or `None` when
/// none applies.
fn result(function: Function, args: &[&Type]) -> Option<Type> {
    use Function as F;
    let boolean = |t: &Type| matches!(t, Type::Bool | Type::Dyn);
    let text = |t: &Type| matches!(t, Type::String | Type::Dyn);
    match (function, args) {
        (F::And | F::Or, [a, b]) => (boolean(a) && boolean(b)).then_some(Type::Bool),
        (F::Not | F::NotStrictlyFalse, [a]) => boolean(a).then_some(Type::Bool),
        (F::Conditional, [c, a, b]) => boolean(c).then(|| join(a, b)).flatten(),
        (F::Equals | F::NotEquals, [a, b]) => join(a, b).map(|_| Type::Bool),
        // cel-go's checker lets `null` stand for a timestamp or a duration, which `<`, `+` and `-`
        // take: it accepts them on a null and a dyn (or two nulls), which fail when they run.
        (
            F::Less | F::LessEquals | F::Greater | F::GreaterEquals | F::Add | F::Subtract,
            [a, b],
        ) if **a == Type::Null || **b == Type::Null => {
            let unknown = |t: &Type| matches!(t, Type::Null | Type::Dyn);
            let ordering = !matches!(function, F::Add | F::Subtract);
            (unknown(a) && unknown(b)).then_some(if ordering { Type::Bool } else { Type::Dyn })
        }
        (F::Less | F::LessEquals | F::Greater | F::GreaterEquals, [a, b]) => {
            orderable(a, b).then_some(Type::Bool)
        }
        (F::In, [element, container]) => match container {
            Type::List(e) | Type::Map(e, _) => join(element, e).map(|_| Type::Bool),
            Type::Dyn => Some(Type::Bool),
            _ => None,
        },
        (F::Add, [a, b]) => arithmetic(a, b, |t| {
            t.is_number() || matches!(t, Type::String | Type::List(_))
        }),
        (F::Subtract | F::Multiply | F::Divide, [a, b]) => arithmetic(a, b, Type::is_number),
        (F::Modulo, [a, b]) => arithmetic(a, b, |t| matches!(t, Type::Int | Type::Uint)),
        (F::Negate, [a]) => matches!(a, Type::Int | Type::Double | Type::Dyn).then(|| (*a).clone()),
        (F::Index, [container, index]) => match container {
            Type::List(e) => matches!(index, Type::Int | Type::Dyn).then(|| (**e).clone()),
            Type::Map(k, v) => join(k, index).map(|_| (**v).clone()),
            Type::Dyn => Some(Type::Dyn),
            _ => None,
        },
        (F::Size, [a]) => matches!(a, Type::String | Type::List(_) | Type::Map(..) | Type::Dyn)
            .then_some(Type::Int),
        (F::String, [a]) => (a.is_number() || matches!(a, Type::String | Type::Bool | Type::Dyn))
            .then_some(Type::String),
        (F::Int, [a]) => (a.is_number() || text(a)).then_some(Type::Int),
        (F::Uint, [a]) => (a.is_number() || text(a)).then_some(Type::Uint),
        (F::Double, [a]) => (a.is_number() || text(a)).then_some(Type::Double),
        (F::Contains | F::StartsWith | F::EndsWith, [a, b]) => {
            (text(a) && text(b)).then_some(Type::Bool)
        }
        (F::Split, [a, b]) => (text(a) && text(b)).then(|| Type::List(Box::new(Type::String))),
        (F::First | F::Last, [a]) => match a {
            Type::List(e) => Some(Type::Optional(e.clone())),
            Type::Dyn => Some(Type::Optional(Box::new(Type::Dyn))),
            _ => None,
        },
        (F::Value, [Type::Optional(t)]) => Some((**t).clone()),
        _ => None,
    }
}

/// Ordering: numbers across kinds (Flux enables cross-type numeric comparisons), or two strings, two
/// booleans; `dyn` with any of them.
fn orderable(a: &Type, b: &Type) -> bool {
    let ordered = |t: &Type| t.is_number() || matches!(t, Type::String | Type::Bool | Type::Dyn);
    match (a, b) {
        (Type::Dyn, t) | (t, Type::Dyn) => ordered(t),
        _ => (a.is_number() && b.is_number()) || (a == b && ordered(a)),
    }
}

/// An arithmetic operator's type: both operands the same type that `allowed` takes (cel-go has no
/// mixed arithmetic), the known one when the other is `dyn`.
fn arithmetic(a: &Type, b: &Type, allowed: impl Fn(&Type) -> bool) -> Option<Type> {
    match (a, b) {
        (Type::Dyn, Type::Dyn) => Some(Type::Dyn),
        (Type::Dyn, t) | (t, Type::Dyn) => allowed(t).then(|| t.clone()),
        _ => (allowed(a) && join(a, b).is_some())
            .then(|| join(a, b))
            .flatten(),
    }
}
