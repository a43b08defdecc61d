//! The tree hookgate evaluates, built from the parser's by [`build`], which checks each node (declared
//! names, arity, bounds) and records what the expression reads of each variable.

use cel_interpreter::objects::Key;
use cel_parser::ast::{operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr};
use cel_parser::reference::Val;

use super::{
    literal, Call, CompileError, Value, FUNCTIONS, MAX_COMPREHENSIONS, MAX_DEPTH, MAX_NODES,
};

/// A node of a checked expression: what it computes, its operands already checked.
#[derive(Debug)]
pub(crate) enum Node {
    Literal(Value),
    /// A declared variable or a comprehension's.
    Variable(String),
    /// `operand.field`.
    Select {
        operand: Box<Node>,
        field: Key,
    },
    /// `has(operand.field)`.
    Has {
        operand: Box<Node>,
        field: Key,
    },
    /// A function or operator; a method's target is its first argument.
    Call(Function, Vec<Node>),
    List(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Comprehension(Box<Comprehension>),
}

/// `range.all(variable, …)`, `exists` or `exists_one`, expanded as cel-go expands them: the accumulator
/// starts at `init`; for each element (a map's keys) while `condition` holds, it becomes `step`; the
/// answer is `result`.
#[derive(Debug)]
pub(crate) struct Comprehension {
    pub range: Node,
    pub variable: String,
    pub accumulator: String,
    pub init: Node,
    pub condition: Node,
    pub step: Node,
    pub result: Node,
}

/// The operators and functions an expression may call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Function {
    And,
    Or,
    Not,
    NotStrictlyFalse,
    Conditional,
    Equals,
    NotEquals,
    Less,
    LessEquals,
    Greater,
    GreaterEquals,
    In,
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
    Negate,
    Index,
    Size,
    String,
    Int,
    Uint,
    Double,
    Contains,
    StartsWith,
    EndsWith,
    Split,
    First,
    Last,
    Value,
}

/// Each function by the parser's name for it (operators) or its CEL name (functions, see [`FUNCTIONS`]).
const NAMES: &[(&str, Function)] = &[
    (operators::LOGICAL_AND, Function::And),
    (operators::LOGICAL_OR, Function::Or),
    (operators::LOGICAL_NOT, Function::Not),
    (operators::NOT_STRICTLY_FALSE, Function::NotStrictlyFalse),
    (operators::CONDITIONAL, Function::Conditional),
    (operators::EQUALS, Function::Equals),
    (operators::NOT_EQUALS, Function::NotEquals),
    (operators::LESS, Function::Less),
    (operators::LESS_EQUALS, Function::LessEquals),
    (operators::GREATER, Function::Greater),
    (operators::GREATER_EQUALS, Function::GreaterEquals),
    (operators::IN, Function::In),
    (operators::ADD, Function::Add),
    (operators::SUBSTRACT, Function::Subtract),
    (operators::MULTIPLY, Function::Multiply),
    (operators::DIVIDE, Function::Divide),
    (operators::MODULO, Function::Modulo),
    (operators::NEGATE, Function::Negate),
    (operators::INDEX, Function::Index),
    ("size", Function::Size),
    ("string", Function::String),
    ("int", Function::Int),
    ("uint", Function::Uint),
    ("double", Function::Double),
    ("contains", Function::Contains),
    ("startsWith", Function::StartsWith),
    ("endsWith", Function::EndsWith),
    ("split", Function::Split),
    ("first", Function::First),
    ("last", Function::Last),
    ("value", Function::Value),
];

impl Function {
    /// How cel-go names it in an error: the operator as written, or the function's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::And => "&&",
            Self::Or => "||",
            Self::Not => "!",
            Self::NotStrictlyFalse => "@not_strictly_false",
            Self::Conditional => "?:",
            Self::Equals => "==",
            Self::NotEquals => "!=",
            Self::Less => "<",
            Self::LessEquals => "<=",
            Self::Greater => ">",
            Self::GreaterEquals => ">=",
            Self::In => "in",
            Self::Add => "+",
            Self::Subtract | Self::Negate => "-",
            Self::Multiply => "*",
            Self::Divide => "/",
            Self::Modulo => "%",
            Self::Index => "[]",
            _ => NAMES
                .iter()
                .find(|(_, f)| *f == self)
                .map_or("?", |(name, _)| name),
        }
    }
}

/// Every variable an expression reads: its name and the field path read (empty: the variable itself).
pub(crate) type VariableReads = Vec<(String, Vec<String>)>;

/// Builds the checked tree of `tree`, which may read `variables` only, and records what it reads.
pub(crate) fn build(
    tree: IdedExpr,
    variables: &[&str],
) -> Result<(Node, VariableReads), CompileError> {
    let mut builder = Builder {
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
    let node = builder.node(tree, start)?;
    Ok((node, builder.reads))
}

struct Builder<'a> {
    variables: &'a [&'a str],
    /// Comprehension variables in scope.
    bound: Vec<String>,
    nodes: usize,
    comprehensions: usize,
    reads: VariableReads,
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

impl Builder<'_> {
    fn node(&mut self, tree: IdedExpr, at: At) -> Result<Node, CompileError> {
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
        Ok(match tree.expr {
            Expr::Literal(value) => Node::Literal(literal(value)),
            Expr::Ident(name) => {
                if !self.variables.contains(&name.as_str()) && !self.bound.contains(&name) {
                    return Err(CompileError(format!("undeclared reference to '{name}'")));
                }
                Node::Variable(name)
            }
            Expr::Select(select) => {
                let operand = Box::new(self.node(*select.operand, at.below(in_path))?);
                let field = Key::String(select.field.into());
                if select.test {
                    Node::Has { operand, field }
                } else {
                    Node::Select { operand, field }
                }
            }
            Expr::Call(call) => self.call(call, at, in_path)?,
            Expr::List(list) => Node::List(
                list.elements
                    .into_iter()
                    .map(|e| self.node(e, at.below(false)))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Map(map) => {
                let mut entries = Vec::with_capacity(map.entries.len());
                for entry in map.entries {
                    let EntryExpr::MapEntry(e) = entry.expr else {
                        return Err(CompileError("unsupported map entry".into()));
                    };
                    if e.optional {
                        return Err(CompileError("unsupported map entry".into()));
                    }
                    let key = self.node(e.key, at.below(false))?;
                    entries.push((key, self.node(e.value, at.below(false))?));
                }
                Node::Map(entries)
            }
            Expr::Comprehension(c) => Node::Comprehension(Box::new(self.comprehension(c, at)?)),
            Expr::Struct(_) => {
                return Err(CompileError("message literals are not supported".into()))
            }
            Expr::Unspecified => return Err(CompileError("unsupported expression".into())),
        })
    }

    fn comprehension(
        &mut self,
        c: ComprehensionExpr,
        at: At,
    ) -> Result<Comprehension, CompileError> {
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
        if c.iter_var2.is_some() {
            return Err(CompileError(
                "two-variable comprehensions are not supported".into(),
            ));
        }
        if self.variables.contains(&c.iter_var.as_str()) {
            return Err(CompileError(format!(
                "comprehension variable '{}' hides a variable",
                c.iter_var
            )));
        }
        let range = self.node(*c.iter_range, at.below(false))?;
        let scope = self.bound.len();
        self.bound.push(c.iter_var.clone());
        self.bound.push(c.accu_var.clone());
        let inside = At {
            in_comprehension: true,
            ..at.below(false)
        };
        let comprehension = Comprehension {
            range,
            init: self.node(*c.accu_init, inside)?,
            condition: self.node(*c.loop_cond, inside)?,
            step: self.node(*c.loop_step, inside)?,
            result: self.node(*c.result, inside)?,
            variable: c.iter_var,
            accumulator: c.accu_var,
        };
        self.bound.truncate(scope);
        Ok(comprehension)
    }

    fn call(&mut self, call: CallExpr, at: At, in_path: bool) -> Result<Node, CompileError> {
        let name = call.func_name.as_str();
        let Some(function) = NAMES.iter().find(|(n, _)| *n == name).map(|(_, f)| *f) else {
            return Err(CompileError(format!("undeclared reference to '{name}'")));
        };
        if let Some((_, arity)) = FUNCTIONS.iter().find(|(n, _)| *n == name) {
            let (target, args) = (call.target.is_some(), call.args.len());
            match arity {
                Call::Method(n) if target && args == *n => {}
                Call::Either if (target && args == 0) || (!target && args == 1) => {}
                _ => {
                    return Err(CompileError(format!(
                        "{name}() called with the wrong number of arguments"
                    )))
                }
            }
        }
        let is_index = function == Function::Index;
        let mut args = Vec::with_capacity(call.args.len() + 1);
        if let Some(target) = call.target {
            args.push(self.node(*target, at.below(false))?);
        }
        for (i, arg) in call.args.into_iter().enumerate() {
            // The indexed operand is part of the path this node read; the index is not.
            args.push(self.node(arg, at.below(is_index && i == 0 && in_path))?);
        }
        Ok(Node::Call(function, args))
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
