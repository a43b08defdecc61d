//! hookgate's evaluator of a checked [`Node`] tree, with cel-go's semantics for the subset it admits. It
//! recurses as deep as the tree (at most [`crate::MAX_DEPTH`]), charges every step to a [`Meter`] and
//! never panics.

use std::collections::HashMap;
use std::sync::Arc;

use cel_interpreter::objects::{Key, Map};

use super::tree::{Comprehension, Function, Node};
use super::values::{
    arithmetic, compare, concatenate, double_to_int, equal, error, find, key_value, kind,
    no_overload, Fault, Meter, Outcome,
};
use super::{functions, Value, MAX_BUILT, NODE_STEPS};

/// One evaluation: the variables in scope (declared ones first, then comprehension ones, whose
/// accumulator may hold an error) and the work left.
pub(crate) struct Evaluation<'a> {
    scope: Vec<(&'a str, Outcome)>,
    meter: Meter,
}

impl<'a> Evaluation<'a> {
    pub(crate) fn new(variables: Vec<(&'a str, Value)>) -> Self {
        Self {
            scope: variables.into_iter().map(|(n, v)| (n, Ok(v))).collect(),
            meter: Meter::new(),
        }
    }

    pub(crate) fn eval(&mut self, node: &'a Node) -> Outcome {
        self.meter.charge(NODE_STEPS)?;
        match node {
            Node::Literal(value) => Ok(value.clone()),
            Node::Variable(name) => self.variable(name),
            Node::Select { operand, field } => {
                let operand = self.eval(operand)?;
                select(&operand, field)
            }
            Node::Has { operand, field } => {
                let operand = self.eval(operand)?;
                has(&operand, field)
            }
            Node::Call(function, args) => self.call(*function, args),
            Node::List(elements) => {
                let values = elements
                    .iter()
                    .map(|e| self.eval(e))
                    .collect::<Result<_, _>>()?;
                Ok(Value::List(Arc::new(values)))
            }
            Node::Map(entries) => self.map(entries),
            Node::Comprehension(c) => self.comprehension(c),
        }
    }

    fn variable(&self, name: &str) -> Outcome {
        // The innermost binding of the name.
        match self.scope.iter().rev().find(|(n, _)| *n == name) {
            Some((_, value)) => value.clone(),
            None => error(format!("undeclared reference to '{name}'")),
        }
    }

    fn call(&mut self, function: Function, args: &'a [Node]) -> Outcome {
        match (function, args) {
            (Function::And | Function::Or, [a, b]) => self.logic(function, a, b),
            (Function::Not, [a]) => match self.eval(a)? {
                Value::Bool(b) => Ok(Value::Bool(!b)),
                other => no_overload("!", &[&other]),
            },
            // cel-go: true unless strictly false; an error is not.
            (Function::NotStrictlyFalse, [a]) => match self.eval(a) {
                Err(Fault::OverBudget) => Err(Fault::OverBudget),
                outcome => Ok(Value::Bool(!matches!(outcome, Ok(Value::Bool(false))))),
            },
            // cel-go's optimizer makes `x in []` the constant false: `x` is not evaluated.
            (Function::In, [_, Node::List(empty)]) if empty.is_empty() => Ok(Value::Bool(false)),
            (Function::Conditional, [condition, then, otherwise]) => match self.eval(condition)? {
                Value::Bool(true) => self.eval(then),
                Value::Bool(false) => self.eval(otherwise),
                other => no_overload("?:", &[&other]),
            },
            _ => {
                let mut values = Vec::with_capacity(args.len());
                for arg in args {
                    values.push(self.eval(arg)?);
                }
                self.apply(function, &values)
            }
        }
    }

    /// cel-go's commutative `&&` and `||`: either side that decides (false, true) decides, whatever
    /// the other gave; else an error (the first) stays an error.
    fn logic(&mut self, function: Function, a: &'a Node, b: &'a Node) -> Outcome {
        let decides = function == Function::Or;
        let mut first_error = None;
        for operand in [a, b] {
            match self.eval(operand) {
                Ok(Value::Bool(value)) if value == decides => return Ok(Value::Bool(decides)),
                Ok(Value::Bool(_)) => {}
                Err(Fault::OverBudget) => return Err(Fault::OverBudget),
                Err(fault) => {
                    first_error.get_or_insert(fault);
                }
                Ok(other) => {
                    first_error.get_or_insert_with(|| {
                        Fault::Error(format!(
                            "no such overload: {} applied to a {}",
                            function.name(),
                            kind(&other)
                        ))
                    });
                }
            }
        }
        first_error.map_or(Ok(Value::Bool(!decides)), Err)
    }

    fn apply(&mut self, function: Function, values: &[Value]) -> Outcome {
        let meter = &mut self.meter;
        let name = function.name();
        match (function, values) {
            (Function::Equals, [a, b]) => Ok(Value::Bool(equal(a, b, meter)?)),
            (Function::NotEquals, [a, b]) => Ok(Value::Bool(!equal(a, b, meter)?)),
            (Function::Less, [a, b]) => Ok(Value::Bool(compare(name, a, b, meter)?.is_lt())),
            (Function::LessEquals, [a, b]) => Ok(Value::Bool(compare(name, a, b, meter)?.is_le())),
            (Function::Greater, [a, b]) => Ok(Value::Bool(compare(name, a, b, meter)?.is_gt())),
            (Function::GreaterEquals, [a, b]) => {
                Ok(Value::Bool(compare(name, a, b, meter)?.is_ge()))
            }
            (Function::In, [element, container]) => contains(element, container, meter),
            (Function::Add, [a, b]) => concatenate(a, b, MAX_BUILT, meter),
            (
                Function::Subtract | Function::Multiply | Function::Divide | Function::Modulo,
                [a, b],
            ) => arithmetic(name, a, b),
            (Function::Negate, [Value::Int(i)]) => i
                .checked_neg()
                .map_or_else(|| error("integer overflow"), |i| Ok(Value::Int(i))),
            (Function::Negate, [Value::Float(d)]) => Ok(Value::Float(-d)),
            (Function::Negate, [other]) => no_overload(name, &[other]),
            (Function::Index, [container, index]) => index_into(container, index, meter),
            _ => functions::call(function, values, meter),
        }
    }

    fn map(&mut self, entries: &'a [(Node, Node)]) -> Outcome {
        let mut map = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            let key = match self.eval(key)? {
                Value::String(s) => {
                    // Hashed, and compared on a collision: scanned.
                    self.meter.scan(s.len())?;
                    Key::String(s)
                }
                Value::Int(i) => Key::Int(i),
                Value::UInt(u) => Key::Uint(u),
                Value::Bool(b) => Key::Bool(b),
                other => return error(format!("unsupported map key type {}", kind(&other))),
            };
            map.insert(key, self.eval(value)?);
        }
        Ok(Value::Map(Map { map: Arc::new(map) }))
    }

    /// A comprehension: each element (a map's keys), the accumulator kept even when it is an error
    /// (a later step or the result may absorb it), until the condition is strictly false.
    fn comprehension(&mut self, c: &'a Comprehension) -> Outcome {
        // Walked in place: a comprehension that stops early costs no copy of its range.
        match self.eval(&c.range)? {
            Value::List(list) => self.fold(c, list.iter().cloned()),
            Value::Map(map) => self.fold(c, map.map.keys().map(key_value)),
            other => error(format!(
                "a comprehension needs a list or a map, not a {}",
                kind(&other)
            )),
        }
    }

    fn fold(&mut self, c: &'a Comprehension, elements: impl Iterator<Item = Value>) -> Outcome {
        let scope = self.scope.len();
        let init = self.eval(&c.init);
        if matches!(init, Err(Fault::OverBudget)) {
            return init;
        }
        self.scope.push((c.accumulator.as_str(), init));
        let mut over_budget = false;
        for element in elements {
            self.scope.push((c.variable.as_str(), Ok(element)));
            let go_on = self.eval(&c.condition);
            if matches!(go_on, Ok(Value::Bool(false))) {
                break;
            }
            let step = self.eval(&c.step);
            if matches!(step, Err(Fault::OverBudget)) || matches!(go_on, Err(Fault::OverBudget)) {
                over_budget = true;
                break;
            }
            self.scope.pop();
            if let Some(accumulator) = self.scope.last_mut() {
                accumulator.1 = step;
            }
        }
        self.scope.truncate(scope + 1);
        let outcome = if over_budget {
            Err(Fault::OverBudget)
        } else {
            self.eval(&c.result)
        };
        self.scope.truncate(scope);
        outcome
    }

    /// The evaluation's answer: a boolean, or why not.
    pub(crate) fn finish(outcome: Outcome) -> Result<bool, Fault> {
        match outcome? {
            Value::Bool(b) => Ok(b),
            other => error(format!("returned a {}, not a boolean", kind(&other))),
        }
    }
}

/// `operand.field`: a map's entry; anything else has no fields.
fn select(operand: &Value, field: &Key) -> Outcome {
    let Key::String(name) = field else {
        return error("no such key");
    };
    match operand {
        Value::Map(map) => map
            .map
            .get(field)
            .cloned()
            .map_or_else(|| error(format!("no such key: {name}")), Ok),
        Value::List(_) => error("unsupported index type 'string' in list"),
        _ => error(format!("no such key: {name}")),
    }
}

/// `has(operand.field)`, as cel-go answers without `EnableErrorOnBadPresenceTest` (Flux's): a map has
/// the field or not; a scalar or null has none; a list cannot be asked.
fn has(operand: &Value, field: &Key) -> Outcome {
    match operand {
        Value::Map(map) => Ok(Value::Bool(map.map.contains_key(field))),
        Value::List(_) => error("unsupported index type 'string' in list"),
        _ => Ok(Value::Bool(false)),
    }
}

/// `element in container`: a list's element (cel-go's `==`), or a map's key.
fn contains(element: &Value, container: &Value, meter: &mut Meter) -> Outcome {
    match container {
        Value::List(list) => {
            for candidate in list.iter() {
                if equal(element, candidate, meter)? {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        Value::Map(map) => Ok(Value::Bool(find(map, element, meter)?.is_some())),
        other => no_overload("in", &[element, other]),
    }
}

/// `container[index]`: a list at an int (or a double or uint that is one), a map at a key. A missing key
/// is named by neither value: the index may come from the input.
fn index_into(container: &Value, index: &Value, meter: &mut Meter) -> Outcome {
    match container {
        Value::List(list) => {
            let position = match index {
                Value::Int(i) => Some(*i),
                Value::UInt(u) => i64::try_from(*u).ok(),
                Value::Float(d) => double_to_int(*d),
                other => return error(format!("unsupported index type '{}' in list", kind(other))),
            };
            position
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| list.get(i))
                .cloned()
                .map_or_else(|| error("index out of range"), Ok)
        }
        Value::Map(map) => find(map, index, meter)?
            .cloned()
            .map_or_else(|| error("no such key"), Ok),
        other => error(format!("cannot index a {}", kind(other))),
    }
}
