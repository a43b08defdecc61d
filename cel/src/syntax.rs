//! hookgate's CEL parser: `cel-parser`'s syntax tree (which [`crate::tree`] checks into hookgate's),
//! from the CEL subset hookgate accepts.
//!
//! `cel-parser` 0.10 (the interpreter's) panics on most syntax errors (its ANTLR visitor walks the error
//! nodes) and its ANTLR runtime is a third of the filter module, so hookgate parses itself, into the same
//! tree and with the same macro expansions. The subset is CEL's grammar (CEL.g4) without message
//! literals, leading-dot names, optional syntax (`?.`, `[?`), comments, raw, triple-quoted and bytes
//! strings, escapes other than `\\ \' \" \n \r \t`, and the `map` and `filter` macros (quadratic
//! time). Nesting is bounded by [`MAX_NESTING`]: the parser recurses.

use cel_parser::ast::{
    operators, CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedEntryExpr, IdedExpr, ListExpr,
    MapEntryExpr, MapExpr, SelectExpr,
};
use cel_parser::reference::Val;

use super::{CompileError, MAX_NESTING};

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident(String),
    Literal(Val),
    /// An operator or punctuation, as written.
    Symbol(&'static str),
    /// `9223372036854775808`, an int only after `-` (cel-go's literal `-9223372036854775808`).
    MinIntMagnitude,
}

/// Two-character symbols first: the lexer takes the longest.
const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

/// Parses `source`, nested at most [`MAX_NESTING`] deep.
pub(crate) fn parse(source: &str) -> Result<IdedExpr, CompileError> {
    let (tokens, starts) = lex(source)?;
    let mut parser = Parser {
        tokens,
        starts,
        at: 0,
        depth: 0,
        next_id: 0,
    };
    let tree = parser.expr()?;
    match parser.peek() {
        None => Ok(tree),
        Some(_) => Err(parser.unexpected()),
    }
}

/// The tokens of `source`, and where each starts.
fn lex(source: &str) -> Result<(Vec<Token>, Vec<usize>), CompileError> {
    let bytes = source.as_bytes();
    let (mut tokens, mut starts) = (Vec::new(), Vec::new());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !c.is_ascii_whitespace() {
            starts.push(i);
        }
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            tokens.push(match &source[start..i] {
                "true" => Token::Literal(Val::Boolean(true)),
                "false" => Token::Literal(Val::Boolean(false)),
                "null" => Token::Literal(Val::Null),
                "in" => Token::Symbol("in"),
                word => Token::Ident(word.to_string()),
            });
        } else if c.is_ascii_digit() {
            let (value, end) = number(source, i)?;
            tokens.push(value.map_or(Token::MinIntMagnitude, Token::Literal));
            i = end;
        } else if c == b'\'' || c == b'"' {
            let (value, end) = string(source, i)?;
            tokens.push(Token::Literal(Val::String(value)));
            i = end;
        } else if let Some(symbol) = SYMBOLS
            .iter()
            .find(|s| bytes[i..].starts_with(s.as_bytes()))
        {
            // `?.` and `[?` are CEL's optional syntax, which hookgate does not evaluate.
            if (*symbol == "?" && bytes.get(i + 1) == Some(&b'.'))
                || (*symbol == "[" && next_non_space(bytes, i + 1) == Some(b'?'))
            {
                return Err(invalid("optional syntax (?. and [?) is not supported"));
            }
            i += symbol.len();
            tokens.push(Token::Symbol(symbol));
        } else {
            return Err(invalid(format!("unexpected character at byte {i}")));
        }
    }
    Ok((tokens, starts))
}

fn next_non_space(bytes: &[u8], from: usize) -> Option<u8> {
    bytes[from..]
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace())
}

fn invalid(reason: impl Into<String>) -> CompileError {
    CompileError(format!("invalid CEL: {}", reason.into()))
}

/// The number at `start` and where it ends: an int that fits 64 bits (decimal or `0x` hex, `u` suffix for
/// a uint) or a float (`1.5`, `1e3`, `1.5e-3`); `None` for the decimal magnitude of the least int.
fn number(source: &str, start: usize) -> Result<(Option<Val>, usize), CompileError> {
    let bytes = source.as_bytes();
    let digits = |mut i: usize, hex: bool| {
        while i < bytes.len()
            && (bytes[i].is_ascii_digit() || (hex && bytes[i].is_ascii_hexdigit()))
        {
            i += 1;
        }
        i
    };
    let too_big = || invalid(format!("number at byte {start} out of range"));
    if bytes[start..].starts_with(b"0x") || bytes[start..].starts_with(b"0X") {
        let end = digits(start + 2, true);
        if end == start + 2 {
            return Err(invalid(format!("malformed number at byte {start}")));
        }
        let value = u64::from_str_radix(&source[start + 2..end], 16).map_err(|_| too_big())?;
        if matches!(bytes.get(end), Some(b'u' | b'U')) {
            return Ok((Some(Val::UInt(value)), end + 1));
        }
        let value = i64::try_from(value).map_err(|_| too_big())?;
        return Ok((Some(Val::Int(value)), end));
    }
    let mut end = digits(start, false);
    let mut float = false;
    if bytes.get(end) == Some(&b'.') && bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = digits(end + 1, false);
        float = true;
    }
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let mut exponent = end + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        let after = digits(exponent, false);
        if after == exponent {
            return Err(invalid(format!("malformed number at byte {start}")));
        }
        end = after;
        float = true;
    }
    let text = &source[start..end];
    if float {
        let value = text.parse::<f64>().map_err(|_| too_big())?;
        return Ok((Some(Val::Double(value)), end));
    }
    if matches!(bytes.get(end), Some(b'u' | b'U')) {
        let value = text.parse::<u64>().map_err(|_| too_big())?;
        return Ok((Some(Val::UInt(value)), end + 1));
    }
    if text == "9223372036854775808" {
        return Ok((None, end));
    }
    let value = text.parse::<i64>().map_err(|_| too_big())?;
    Ok((Some(Val::Int(value)), end))
}

/// The quoted string at `start` and where it ends (one line, simple escapes only).
fn string(source: &str, start: usize) -> Result<(String, usize), CompileError> {
    let bytes = source.as_bytes();
    let quote = bytes[start];
    if bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote) {
        return Err(invalid("triple-quoted strings are not supported"));
    }
    let mut value = Vec::new();
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                value.push(match bytes.get(i + 1) {
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    Some(c @ (b'\\' | b'\'' | b'"')) => *c,
                    _ => return Err(invalid(format!("unsupported escape at byte {i}"))),
                });
                i += 2;
            }
            b'\n' | b'\r' => break,
            c if c == quote => {
                // Bytes of the source between quotes and ASCII escapes: still UTF-8.
                let text = String::from_utf8(value).map_err(|_| invalid("not UTF-8"))?;
                return Ok((text, i + 1));
            }
            c => {
                value.push(c);
                i += 1;
            }
        }
    }
    Err(invalid(format!("unterminated string at byte {start}")))
}

struct Parser {
    tokens: Vec<Token>,
    /// Where each token starts in the source.
    starts: Vec<usize>,
    at: usize,
    depth: usize,
    next_id: u64,
}

/// The accumulator of expanded macros, as cel-parser names it.
const RESULT: &str = "@result";

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn is(&self, symbol: &str) -> bool {
        matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol)
    }

    fn eat(&mut self, symbol: &str) -> bool {
        let found = self.is(symbol);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, symbol: &str) -> Result<(), CompileError> {
        if self.eat(symbol) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn unexpected(&self) -> CompileError {
        match self.starts.get(self.at) {
            None => invalid("unexpected end of expression"),
            Some(at) => invalid(format!("unexpected token at byte {at}")),
        }
    }

    fn node(&mut self, expr: Expr) -> IdedExpr {
        self.next_id += 1;
        IdedExpr {
            id: self.next_id,
            expr,
        }
    }

    fn call(&mut self, function: &str, target: Option<IdedExpr>, args: Vec<IdedExpr>) -> IdedExpr {
        self.node(Expr::Call(CallExpr {
            func_name: function.to_string(),
            target: target.map(Box::new),
            args,
        }))
    }

    /// `or ('?' or ':' expr)?`; each level of nesting comes through here.
    fn expr(&mut self) -> Result<IdedExpr, CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(CompileError(format!(
                "nests deeper than {MAX_NESTING} levels (brackets, calls or conditionals)"
            )));
        }
        let condition = self.binary(0)?;
        let tree = if self.eat("?") {
            let then = self.binary(0)?;
            self.expect(":")?;
            let otherwise = self.expr()?;
            self.call(
                operators::CONDITIONAL,
                None,
                vec![condition, then, otherwise],
            )
        } else {
            condition
        };
        self.depth -= 1;
        Ok(tree)
    }

    /// Binary operators by precedence, loosest first, each left-associative.
    fn binary(&mut self, level: usize) -> Result<IdedExpr, CompileError> {
        const LEVELS: &[&[(&str, &str)]] = &[
            &[("||", operators::LOGICAL_OR)],
            &[("&&", operators::LOGICAL_AND)],
            &[
                ("==", operators::EQUALS),
                ("!=", operators::NOT_EQUALS),
                ("<", operators::LESS),
                ("<=", operators::LESS_EQUALS),
                (">", operators::GREATER),
                (">=", operators::GREATER_EQUALS),
                ("in", operators::IN),
            ],
            &[("+", operators::ADD), ("-", operators::SUBSTRACT)],
            &[
                ("*", operators::MULTIPLY),
                ("/", operators::DIVIDE),
                ("%", operators::MODULO),
            ],
        ];
        let Some(operators) = LEVELS.get(level) else {
            return self.unary();
        };
        let mut left = self.binary(level + 1)?;
        while let Some((_, function)) = operators.iter().find(|(symbol, _)| self.is(symbol)) {
            self.at += 1;
            let right = self.binary(level + 1)?;
            left = self.call(function, None, vec![left, right]);
        }
        Ok(left)
    }

    /// `'!'* member` or `'-'* member` (CEL does not mix them). As cel-go's parser, an even run is
    /// dropped and an odd one is one operator; `-` before a number is part of the literal.
    fn unary(&mut self) -> Result<IdedExpr, CompileError> {
        if self.is("-") && self.negative_literal().is_some() {
            return self.member();
        }
        for (symbol, function) in [("!", operators::LOGICAL_NOT), ("-", operators::NEGATE)] {
            let mut run = 0;
            while self.eat(symbol) {
                run += 1;
            }
            if run > MAX_NESTING {
                return Err(CompileError(format!(
                    "has more than {MAX_NESTING} unary operators in a row"
                )));
            }
            if run > 0 {
                let tree = self.member()?;
                if run % 2 == 0 {
                    return Ok(tree);
                }
                return Ok(self.call(function, None, vec![tree]));
            }
        }
        self.member()
    }

    /// `primary ('.' IDENT ('(' args ')')? | '[' expr ']')*`
    fn member(&mut self) -> Result<IdedExpr, CompileError> {
        let mut tree = self.primary()?;
        loop {
            if self.eat(".") {
                let Some(Token::Ident(field)) = self.peek().cloned() else {
                    return Err(self.unexpected());
                };
                self.at += 1;
                tree = if self.eat("(") {
                    let args = self.list(")", false)?;
                    self.method(tree, &field, args)?
                } else {
                    self.node(Expr::Select(SelectExpr {
                        operand: Box::new(tree),
                        field,
                        test: false,
                    }))
                };
            } else if self.eat("[") {
                let index = self.expr()?;
                self.expect("]")?;
                tree = self.call(operators::INDEX, None, vec![tree, index]);
            } else {
                return Ok(tree);
            }
        }
    }

    /// The literal of `-` and the number after it, when that follows.
    fn negative_literal(&self) -> Option<Val> {
        match self.tokens.get(self.at + 1)? {
            Token::Literal(Val::Int(i)) => Some(Val::Int(i.checked_neg()?)),
            Token::Literal(Val::Double(d)) => Some(Val::Double(-d)),
            Token::MinIntMagnitude => Some(Val::Int(i64::MIN)),
            _ => None,
        }
    }

    /// `IDENT ('(' args ')')? | '(' expr ')' | '[' list ']' | '{' map '}' | literal`
    fn primary(&mut self) -> Result<IdedExpr, CompileError> {
        let Some(token) = self.peek().cloned() else {
            return Err(self.unexpected());
        };
        if let (Token::Symbol("-"), Some(value)) = (&token, self.negative_literal()) {
            self.at += 2;
            return Ok(self.node(Expr::Literal(value)));
        }
        self.at += 1;
        match token {
            Token::Ident(name) => {
                if self.is("{") {
                    return Err(invalid("message literals are not supported"));
                }
                if !self.eat("(") {
                    return Ok(self.node(Expr::Ident(name)));
                }
                let mut args = self.list(")", false)?;
                if name != operators::HAS {
                    return Ok(self.call(&name, None, args));
                }
                // `has(a.b)`: the field test.
                match args.pop().map(|a| a.expr) {
                    Some(Expr::Select(mut select)) if args.is_empty() => {
                        select.test = true;
                        Ok(self.node(Expr::Select(select)))
                    }
                    _ => Err(invalid("has() takes one field selection, has(a.b)")),
                }
            }
            Token::Literal(value) => Ok(self.node(Expr::Literal(value))),
            Token::Symbol("(") => {
                let tree = self.expr()?;
                self.expect(")")?;
                Ok(tree)
            }
            Token::Symbol("[") => {
                let elements = self.list("]", true)?;
                Ok(self.node(Expr::List(ListExpr { elements })))
            }
            Token::Symbol("{") => self.map(),
            Token::MinIntMagnitude => {
                let at = self
                    .starts
                    .get(self.at.saturating_sub(1))
                    .copied()
                    .unwrap_or_default();
                Err(invalid(format!("number at byte {at} out of range")))
            }
            Token::Symbol(_) => {
                self.at -= 1;
                Err(self.unexpected())
            }
        }
    }

    /// `target.function(args)`, the comprehension macros expanded as cel-parser expands them.
    fn method(
        &mut self,
        target: IdedExpr,
        function: &str,
        mut args: Vec<IdedExpr>,
    ) -> Result<IdedExpr, CompileError> {
        let macros = [operators::ALL, operators::EXISTS, operators::EXISTS_ONE];
        if function == operators::MAP || function == operators::FILTER {
            return Err(CompileError(
                "map() and filter() are not supported (quadratic time): use all(), exists() or exists_one()"
                    .into(),
            ));
        }
        if !macros.contains(&function) {
            return Ok(self.call(function, Some(target), args));
        }
        let (Some(predicate), Some(variable), true) = (args.pop(), args.pop(), args.is_empty())
        else {
            return Err(invalid(format!(
                "{function}() takes a variable and a predicate"
            )));
        };
        let Expr::Ident(variable) = variable.expr else {
            return Err(invalid(format!(
                "{function}()'s first argument must be a variable name"
            )));
        };
        let result = |p: &mut Self| p.node(Expr::Ident(RESULT.into()));
        let (init, condition, step, outcome) = match function {
            operators::ALL => {
                let accumulated = result(self);
                let condition = self.call(operators::NOT_STRICTLY_FALSE, None, vec![accumulated]);
                let accumulated = result(self);
                let step = self.call(operators::LOGICAL_AND, None, vec![accumulated, predicate]);
                (Val::Boolean(true), condition, step, result(self))
            }
            operators::EXISTS => {
                let accumulated = result(self);
                let not = self.call(operators::LOGICAL_NOT, None, vec![accumulated]);
                let condition = self.call(operators::NOT_STRICTLY_FALSE, None, vec![not]);
                let accumulated = result(self);
                let step = self.call(operators::LOGICAL_OR, None, vec![accumulated, predicate]);
                (Val::Boolean(false), condition, step, result(self))
            }
            _ => {
                let condition = self.node(Expr::Literal(Val::Boolean(true)));
                let (accumulated, one) = (result(self), self.node(Expr::Literal(Val::Int(1))));
                let counted = self.call(operators::ADD, None, vec![accumulated, one]);
                let unchanged = result(self);
                let step = self.call(
                    operators::CONDITIONAL,
                    None,
                    vec![predicate, counted, unchanged],
                );
                let (accumulated, one) = (result(self), self.node(Expr::Literal(Val::Int(1))));
                let outcome = self.call(operators::EQUALS, None, vec![accumulated, one]);
                (Val::Int(0), condition, step, outcome)
            }
        };
        let init = self.node(Expr::Literal(init));
        Ok(self.node(Expr::Comprehension(ComprehensionExpr {
            iter_range: Box::new(target),
            iter_var: variable,
            iter_var2: None,
            accu_var: RESULT.into(),
            accu_init: Box::new(init),
            loop_cond: Box::new(condition),
            loop_step: Box::new(step),
            result: Box::new(outcome),
        })))
    }

    /// Expressions separated by commas up to `close` (a trailing comma only in list literals).
    fn list(&mut self, close: &str, trailing_comma: bool) -> Result<Vec<IdedExpr>, CompileError> {
        let mut items = Vec::new();
        if self.eat(close) {
            return Ok(items);
        }
        loop {
            items.push(self.expr()?);
            if self.eat(close) {
                return Ok(items);
            }
            self.expect(",")?;
            if trailing_comma && self.eat(close) {
                return Ok(items);
            }
        }
    }

    /// `key ':' value` entries up to `}`, a trailing comma allowed.
    fn map(&mut self) -> Result<IdedExpr, CompileError> {
        let mut entries = Vec::new();
        while !self.eat("}") {
            let key = self.expr()?;
            self.expect(":")?;
            let value = self.expr()?;
            self.next_id += 1;
            entries.push(IdedEntryExpr {
                id: self.next_id,
                expr: EntryExpr::MapEntry(MapEntryExpr {
                    key,
                    value,
                    optional: false,
                }),
            });
            if !self.is("}") {
                self.expect(",")?;
            }
        }
        Ok(self.node(Expr::Map(MapExpr { entries })))
    }
}
