//! A recognizer for the CEL syntax hookgate accepts, run before the parser.
//!
//! `cel-parser` 0.10 panics on most syntax errors (its ANTLR visitor walks the error nodes), so nothing
//! reaches it that this recognizer does not accept, and this recognizer accepts a subset of CEL's grammar
//! (CEL.g4): everything but message literals, leading-dot names, optional syntax (`?.`, `[?`), comments,
//! raw, triple-quoted and bytes strings, and escapes other than `\\ \' \" \n \r \t`. It also bounds the
//! nesting the (recursive) parser would go through.

use super::{CompileError, MAX_NESTING};

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Ident,
    /// A literal: number, string, `true`, `false`, `null`.
    Literal,
    /// An operator or punctuation, as written.
    Symbol(&'static str),
}

/// Two-character symbols first: the lexer takes the longest.
const SYMBOLS: &[&str] = &[
    "==", "!=", "<=", ">=", "&&", "||", "<", ">", "+", "-", "*", "/", "%", "!", "?", ":", ".", ",",
    "(", ")", "[", "]", "{", "}",
];

/// Checks that `source` is an expression of the accepted syntax, nested at most [`MAX_NESTING`] deep.
pub(crate) fn check(source: &str) -> Result<(), CompileError> {
    let (tokens, starts) = lex(source)?;
    let mut parser = Recognizer {
        tokens,
        starts,
        at: 0,
        depth: 0,
    };
    parser.expr()?;
    match parser.peek() {
        None => Ok(()),
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
                "true" | "false" | "null" => Token::Literal,
                "in" => Token::Symbol("in"),
                _ => Token::Ident,
            });
        } else if c.is_ascii_digit() {
            i = number(source, i)?;
            tokens.push(Token::Literal);
        } else if c == b'\'' || c == b'"' {
            i = string(bytes, i)?;
            tokens.push(Token::Literal);
        } else if let Some(symbol) = SYMBOLS
            .iter()
            .find(|s| bytes[i..].starts_with(s.as_bytes()))
        {
            // `?.` and `[?` are CEL's optional syntax, which the interpreter lacks.
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

/// The end of the number at `start`: an int that fits 64 bits (decimal or `0x` hex, `u` suffix for a
/// uint) or a float (`1.5`, `1e3`, `1.5e-3`).
fn number(source: &str, start: usize) -> Result<usize, CompileError> {
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
        let unsigned = matches!(bytes.get(end), Some(b'u' | b'U'));
        let value = u64::from_str_radix(&source[start + 2..end], 16).map_err(|_| too_big())?;
        if !unsigned && i64::try_from(value).is_err() {
            return Err(too_big());
        }
        return Ok(end + usize::from(unsigned));
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
    if float {
        return Ok(end);
    }
    let text = &source[start..end];
    if matches!(bytes.get(end), Some(b'u' | b'U')) {
        text.parse::<u64>().map_err(|_| too_big())?;
        return Ok(end + 1);
    }
    text.parse::<i64>().map_err(|_| too_big())?;
    Ok(end)
}

/// The end of the quoted string at `start` (one line, simple escapes only).
fn string(bytes: &[u8], start: usize) -> Result<usize, CompileError> {
    let quote = bytes[start];
    if bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote) {
        return Err(invalid("triple-quoted strings are not supported"));
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => match bytes.get(i + 1) {
                Some(b'\\' | b'\'' | b'"' | b'n' | b'r' | b't') => i += 2,
                _ => return Err(invalid(format!("unsupported escape at byte {i}"))),
            },
            b'\n' | b'\r' => break,
            c if c == quote => return Ok(i + 1),
            _ => i += 1,
        }
    }
    Err(invalid(format!("unterminated string at byte {start}")))
}

struct Recognizer {
    tokens: Vec<Token>,
    /// Where each token starts in the source.
    starts: Vec<usize>,
    at: usize,
    depth: usize,
}

impl Recognizer {
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
        match self.peek() {
            None => invalid("unexpected end of expression"),
            Some(_) => invalid(format!(
                "unexpected token at byte {}",
                self.starts.get(self.at).copied().unwrap_or_default()
            )),
        }
    }

    /// `or ('?' or ':' expr)?`; each level of nesting comes through here.
    fn expr(&mut self) -> Result<(), CompileError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(CompileError(format!(
                "nests deeper than {MAX_NESTING} levels (brackets, calls or conditionals)"
            )));
        }
        self.binary(0)?;
        if self.eat("?") {
            self.binary(0)?;
            self.expect(":")?;
            self.expr()?;
        }
        self.depth -= 1;
        Ok(())
    }

    /// Binary operators by precedence, loosest first: `||`, `&&`, relations, `+ -`, `* / %`.
    fn binary(&mut self, level: usize) -> Result<(), CompileError> {
        const LEVELS: &[&[&str]] = &[
            &["||"],
            &["&&"],
            &["==", "!=", "<", "<=", ">", ">=", "in"],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        let Some(operators) = LEVELS.get(level) else {
            return self.unary();
        };
        self.binary(level + 1)?;
        while operators.iter().any(|op| self.is(op)) {
            self.at += 1;
            self.binary(level + 1)?;
        }
        Ok(())
    }

    /// `'!'* member` or `'-'* member` (CEL does not mix them).
    fn unary(&mut self) -> Result<(), CompileError> {
        for op in ["!", "-"] {
            let mut run = 0;
            while self.eat(op) {
                run += 1;
            }
            if run > MAX_NESTING {
                return Err(CompileError(format!(
                    "has more than {MAX_NESTING} unary operators in a row"
                )));
            }
            if run > 0 {
                break;
            }
        }
        self.member()
    }

    /// `primary ('.' IDENT ('(' args ')')? | '[' expr ']')*`
    fn member(&mut self) -> Result<(), CompileError> {
        self.primary()?;
        loop {
            if self.eat(".") {
                if self.peek() != Some(&Token::Ident) {
                    return Err(self.unexpected());
                }
                self.at += 1;
                if self.eat("(") {
                    self.list(")", false)?;
                }
            } else if self.eat("[") {
                self.expr()?;
                self.expect("]")?;
            } else {
                return Ok(());
            }
        }
    }

    /// `IDENT ('(' args ')')? | '(' expr ')' | '[' list ']' | '{' map '}' | literal`
    fn primary(&mut self) -> Result<(), CompileError> {
        match self.peek() {
            Some(Token::Ident) => {
                self.at += 1;
                if self.is("{") {
                    return Err(invalid("message literals are not supported"));
                }
                if self.eat("(") {
                    self.list(")", false)?;
                }
                Ok(())
            }
            Some(Token::Literal) => {
                self.at += 1;
                Ok(())
            }
            Some(Token::Symbol("(")) => {
                self.at += 1;
                self.expr()?;
                self.expect(")")
            }
            Some(Token::Symbol("[")) => {
                self.at += 1;
                self.list("]", true)
            }
            Some(Token::Symbol("{")) => {
                self.at += 1;
                self.map()
            }
            _ => Err(self.unexpected()),
        }
    }

    /// Expressions separated by commas up to `close` (a trailing comma only in list literals).
    fn list(&mut self, close: &str, trailing_comma: bool) -> Result<(), CompileError> {
        if self.eat(close) {
            return Ok(());
        }
        loop {
            self.expr()?;
            if self.eat(close) {
                return Ok(());
            }
            self.expect(",")?;
            if trailing_comma && self.eat(close) {
                return Ok(());
            }
        }
    }

    /// `key ':' value` entries up to `}`, a trailing comma allowed.
    fn map(&mut self) -> Result<(), CompileError> {
        if self.eat("}") {
            return Ok(());
        }
        loop {
            self.expr()?;
            self.expect(":")?;
            self.expr()?;
            if self.eat("}") {
                return Ok(());
            }
            self.expect(",")?;
            if self.eat("}") {
                return Ok(());
            }
        }
    }
}
