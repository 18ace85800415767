//! Attribute filters: the test a vector's attributes must pass to be searched, and the small
//! expression language the command line writes them in.
//!
//! ```text
//! filter   := or
//! or       := and ("or" and)*
//! and      := unary ("and" unary)*
//! unary    := "not" unary | primary
//! primary  := "(" or ")" | "true" | "false" | "exists" key
//!           | key ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=") value
//!           | key "in" value ".." value          -- key >= low and key <= high
//!           | key                                -- the same as: exists key
//! key      := identifier | quoted string
//! value    := number | quoted string | "inf" | "-inf" | "nan"
//! ```
//!
//! Identifiers start with a letter or `_` and go on with letters, digits, `_`, `.` and `-`.
//! Keywords (`and or not exists in true false`) are case-insensitive and are not identifiers; a
//! key that is a keyword or not an identifier is written quoted. Numbers are integers ([`Int`])
//! unless they have a fraction or an exponent ([`Float`]). Strings are single- or double-quoted
//! with backslash escapes `\\ \" \' \n \r \t \0 \u{…}`.
//!
//! Semantics: a key that is absent makes every comparison false (`Eq`, `Ne`, `Cmp`), so
//! `not (a = 1)` holds for vectors without `a` while `a != 1` does not. Integers and floats
//! compare as numbers, exactly (`2 = 2.0`); strings compare with strings by bytes; a string never
//! equals or orders against a number. `true` is `And([])` and `false` is `Or([])`.
//!
//! Round trip: `parse(&f.to_string()) == Ok(f)` for every filter whose `And`/`Or` nodes have zero
//! or at least two children and whose values are not NaN; a one-child `And`/`Or` prints as its
//! child.
//!
//! [`Int`]: AttrValue::Int
//! [`Float`]: AttrValue::Float

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use rustc_hash::FxHashSet;

use vexfs_format::collection::AttrValue;

/// The longest filter text accepted, in bytes.
pub const FILTER_TEXT_MAX: usize = 64 * 1024;
/// The deepest nesting of parentheses and `not`s the parser follows (its recursion bound).
pub const FILTER_DEPTH_MAX: usize = 64;

/// An ordering comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }
}

/// A test on a vector's attributes.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    /// The key is present and its value equals this one.
    Eq(String, AttrValue),
    /// The key is present and its value does not equal this one.
    Ne(String, AttrValue),
    /// The key is present and its value compares so (numbers with numbers, strings with strings).
    Cmp(String, CmpOp, AttrValue),
    /// The key is present.
    Exists(String),
    /// Every child holds (true when empty).
    And(Vec<Filter>),
    /// Some child holds (false when empty).
    Or(Vec<Filter>),
    Not(Box<Filter>),
    /// The key is absent, or its value is not an integer in the set. Never parsed: the daemon
    /// adds it to leave out what a caller may not see (the documents of a text collection it
    /// cannot read), where an `or` of one equality per value would cost a comparison per value
    /// for every row.
    NotIn(String, Arc<FxHashSet<i64>>),
}

/// A parse error: where, what the parser expected there, and what it found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("filter: at byte {position}: expected {expected}, found {found}")]
pub struct FilterError {
    /// Byte offset into the filter text.
    pub position: usize,
    pub expected: &'static str,
    pub found: String,
}

impl Filter {
    /// Parses the filter language; the same as [`parse`].
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        parse(text)
    }

    /// Whether `attrs` pass the filter.
    pub fn matches(&self, attrs: &[(String, AttrValue)]) -> bool {
        let lookup = |key: &str| attrs.iter().find(|(name, _)| name == key).map(|(_, value)| value);
        match self {
            Filter::Eq(key, value) => lookup(key).is_some_and(|found| compare(found, value) == Some(Ordering::Equal)),
            Filter::Ne(key, value) => lookup(key).is_some_and(|found| compare(found, value) != Some(Ordering::Equal)),
            Filter::Cmp(key, op, value) => {
                lookup(key).and_then(|found| compare(found, value)).is_some_and(|ordering| op.holds(ordering))
            }
            Filter::Exists(key) => lookup(key).is_some(),
            Filter::And(children) => children.iter().all(|child| child.matches(attrs)),
            Filter::Or(children) => children.iter().any(|child| child.matches(attrs)),
            Filter::Not(child) => !child.matches(attrs),
            Filter::NotIn(key, set) => !matches!(lookup(key), Some(AttrValue::Int(value)) if set.contains(value)),
        }
    }
}

/// Orders two attribute values: numbers exactly (also `Int` against `Float`), strings by bytes;
/// `None` for a string against a number and for NaN.
fn compare(a: &AttrValue, b: &AttrValue) -> Option<Ordering> {
    match (a, b) {
        (AttrValue::Int(x), AttrValue::Int(y)) => Some(x.cmp(y)),
        (AttrValue::Float(x), AttrValue::Float(y)) => x.partial_cmp(y),
        (AttrValue::Int(x), AttrValue::Float(y)) => compare_int_float(*x, *y),
        (AttrValue::Float(x), AttrValue::Int(y)) => compare_int_float(*y, *x).map(Ordering::reverse),
        (AttrValue::Str(x), AttrValue::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        _ => None,
    }
}

/// Orders an integer against a float without rounding the integer (`i64 as f64` would make
/// `2⁵³ + 1` equal to `2⁵³`).
fn compare_int_float(int: i64, float: f64) -> Option<Ordering> {
    // 2⁶³ is exact in f64; every float at or beyond it is beyond every i64.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if float.is_nan() {
        return None;
    }
    if float >= TWO_POW_63 {
        return Some(Ordering::Less);
    }
    if float < -TWO_POW_63 {
        return Some(Ordering::Greater);
    }
    // Now -2⁶³ <= trunc(float) < 2⁶³, so the cast is exact.
    let whole = float.trunc();
    let by_whole = int.cmp(&(whole as i64));
    let fraction = float - whole;
    Some(by_whole.then(if fraction > 0.0 {
        Ordering::Less
    } else if fraction < 0.0 {
        Ordering::Greater
    } else {
        Ordering::Equal
    }))
}

/// Parses the filter language (see the module documentation).
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > FILTER_TEXT_MAX {
        return Err(FilterError { position: FILTER_TEXT_MAX, expected: "a shorter filter", found: "more text".into() });
    }
    let tokens = lex(text)?;
    let mut parser = Parser { tokens: &tokens, next: 0, depth: 0 };
    let filter = parser.or()?;
    let end = parser.peek();
    if end.kind != TokenKind::End {
        return Err(parser.error("`and`, `or` or the end of the filter"));
    }
    Ok(filter)
}

#[derive(Clone, Debug, PartialEq)]
enum TokenKind {
    Ident(String),
    Str(String),
    Int(i64),
    Float(f64),
    /// `= == != < <= > >= ( ) ..`
    Symbol(&'static str),
    /// Keywords, lowercased.
    Keyword(&'static str),
    End,
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    position: usize,
}

const KEYWORDS: [&str; 9] = ["and", "or", "not", "exists", "in", "true", "false", "inf", "nan"];
const SYMBOLS: [&str; 9] = ["==", "!=", "<=", ">=", "..", "=", "<", ">", "("];

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')
}

fn keyword(word: &str) -> Option<&'static str> {
    KEYWORDS.into_iter().find(|k| k.eq_ignore_ascii_case(word))
}

/// Splits the text into tokens, ending with `End`.
fn lex(text: &str) -> Result<Vec<Token>, FilterError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut position = 0;
    while position < bytes.len() {
        let c = text[position..].chars().next().expect("position is on a char boundary");
        if c.is_whitespace() {
            position += c.len_utf8();
            continue;
        }
        let start = position;
        let kind = if is_ident_start(c) {
            let end = text[start..].find(|c: char| !is_ident_char(c)).map_or(text.len(), |n| start + n);
            position = end;
            let word = &text[start..end];
            keyword(word).map_or_else(|| TokenKind::Ident(word.to_string()), TokenKind::Keyword)
        } else if c.is_ascii_digit() || ((c == '-' || c == '+') && starts_number(&bytes[start + 1..])) {
            let (kind, end) = lex_number(text, start)?;
            position = end;
            kind
        } else if c == '-' && is_negative_infinity(&text[start + 1..]) {
            position = start + 4;
            TokenKind::Float(f64::NEG_INFINITY)
        } else if c == '"' || c == '\'' {
            let (value, end) = lex_string(text, start)?;
            position = end;
            TokenKind::Str(value)
        } else if c == ')' {
            position += 1;
            TokenKind::Symbol(")")
        } else if let Some(symbol) = SYMBOLS.into_iter().find(|s| text[start..].starts_with(s)) {
            position += symbol.len();
            TokenKind::Symbol(symbol)
        } else {
            return Err(FilterError {
                position,
                expected: "a key, value, operator or parenthesis",
                found: describe(c),
            });
        };
        tokens.push(Token { kind, position: start });
    }
    tokens.push(Token { kind: TokenKind::End, position: text.len() });
    Ok(tokens)
}

/// Whether `rest` (after a '-') is the word `inf`.
fn is_negative_infinity(rest: &str) -> bool {
    rest.get(..3).is_some_and(|word| word.eq_ignore_ascii_case("inf")) && !rest[3..].starts_with(is_ident_char)
}

fn starts_number(rest: &[u8]) -> bool {
    rest.first().is_some_and(u8::is_ascii_digit)
}

fn describe(c: char) -> String {
    format!("`{}`", c.escape_debug())
}

/// Lexes `[+-]digits[.digits][(e|E)[+-]digits]` at `start`.
fn lex_number(text: &str, start: usize) -> Result<(TokenKind, usize), FilterError> {
    let bytes = text.as_bytes();
    let digits_from = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    };
    let mut end = start;
    if matches!(bytes[end], b'-' | b'+') {
        end += 1;
    }
    end = digits_from(end);
    let mut float = false;
    // A '.' belongs to the number only before a digit, so `1..2` is `1`, `..`, `2`.
    if end + 1 < bytes.len() && bytes[end] == b'.' && bytes[end + 1].is_ascii_digit() {
        float = true;
        end = digits_from(end + 1);
    }
    if end < bytes.len() && matches!(bytes[end], b'e' | b'E') {
        let mut exponent = end + 1;
        if exponent < bytes.len() && matches!(bytes[exponent], b'-' | b'+') {
            exponent += 1;
        }
        if exponent < bytes.len() && bytes[exponent].is_ascii_digit() {
            float = true;
            end = digits_from(exponent);
        }
    }
    if end < bytes.len() && is_ident_char(bytes[end] as char) && bytes[end] != b'.' && bytes[end] != b'-' {
        let found = text[end..].chars().next().map_or_else(String::new, describe);
        return Err(FilterError { position: end, expected: "a digit or the end of the number", found });
    }
    let literal = &text[start..end];
    let kind = if float {
        TokenKind::Float(literal.parse().expect("the lexer accepted a valid float"))
    } else {
        let value = literal.parse().map_err(|_| FilterError {
            position: start,
            expected: "an integer between -2^63 and 2^63 - 1",
            found: format!("`{literal}`"),
        })?;
        TokenKind::Int(value)
    };
    Ok((kind, end))
}

/// Lexes a quoted string at `start`, returning its value and the position after the closing quote.
fn lex_string(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let quote = text.as_bytes()[start] as char;
    let mut value = String::new();
    let mut chars = text[start + 1..].char_indices().map(|(offset, c)| (start + 1 + offset, c));
    while let Some((position, c)) = chars.next() {
        match c {
            _ if c == quote => return Ok((value, position + 1)),
            '\\' => {
                let Some((at, escaped)) = chars.next() else { break };
                let plain = match escaped {
                    '\\' | '"' | '\'' => escaped,
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    '0' => '\0',
                    'u' => lex_unicode_escape(at, &mut chars)?,
                    other => {
                        return Err(FilterError {
                            position: at,
                            expected: "an escape: \\\\ \\\" \\' \\n \\r \\t \\0 or \\u{...}",
                            found: describe(other),
                        })
                    }
                };
                value.push(plain);
            }
            _ => value.push(c),
        }
    }
    Err(FilterError { position: text.len(), expected: "a closing quote", found: "the end of the filter".into() })
}

/// Lexes the `{hex}` of a `\u{hex}` escape whose `u` is at `at`.
fn lex_unicode_escape(at: usize, chars: &mut impl Iterator<Item = (usize, char)>) -> Result<char, FilterError> {
    let error =
        || FilterError { position: at, expected: "`\\u{` 1 to 6 hex digits `}`", found: "something else".into() };
    if chars.next().map(|(_, c)| c) != Some('{') {
        return Err(error());
    }
    let mut hex = String::new();
    for (_, c) in chars.by_ref() {
        if c == '}' {
            let code = u32::from_str_radix(&hex, 16).map_err(|_| error())?;
            return char::from_u32(code).ok_or(FilterError {
                position: at,
                expected: "a Unicode scalar value",
                found: format!("`{hex}`"),
            });
        }
        if hex.len() == 6 || !c.is_ascii_hexdigit() {
            return Err(error());
        }
        hex.push(c);
    }
    Err(error())
}

/// A recursive-descent parser over the tokens; `depth` bounds its recursion.
struct Parser<'t> {
    tokens: &'t [Token],
    next: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        &self.tokens[self.next]
    }

    fn advance(&mut self) -> Token {
        let token = self.tokens[self.next].clone();
        if token.kind != TokenKind::End {
            self.next += 1;
        }
        token
    }

    fn eat(&mut self, kind: &TokenKind) -> bool {
        if &self.peek().kind == kind {
            self.advance();
            true
        } else {
            false
        }
    }

    fn error(&self, expected: &'static str) -> FilterError {
        let token = self.peek();
        FilterError { position: token.position, expected, found: describe_token(&token.kind) }
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut children = vec![self.and()?];
        while self.eat(&TokenKind::Keyword("or")) {
            children.push(self.and()?);
        }
        Ok(if children.len() == 1 { children.pop().expect("one child") } else { Filter::Or(children) })
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut children = vec![self.unary()?];
        while self.eat(&TokenKind::Keyword("and")) {
            children.push(self.unary()?);
        }
        Ok(if children.len() == 1 { children.pop().expect("one child") } else { Filter::And(children) })
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        self.depth += 1;
        if self.depth > FILTER_DEPTH_MAX {
            return Err(self.error("less nesting (at most 64 levels of parentheses and `not`)"));
        }
        let result = if self.eat(&TokenKind::Keyword("not")) {
            self.unary().map(|child| Filter::Not(Box::new(child)))
        } else {
            self.primary()
        };
        self.depth -= 1;
        result
    }

    fn primary(&mut self) -> Result<Filter, FilterError> {
        let token = self.peek().clone();
        match token.kind {
            TokenKind::Symbol("(") => {
                self.advance();
                let inner = self.or()?;
                if !self.eat(&TokenKind::Symbol(")")) {
                    return Err(self.error("`)`, `and` or `or`"));
                }
                Ok(inner)
            }
            TokenKind::Keyword("true") => {
                self.advance();
                Ok(Filter::And(Vec::new()))
            }
            TokenKind::Keyword("false") => {
                self.advance();
                Ok(Filter::Or(Vec::new()))
            }
            TokenKind::Keyword("exists") => {
                self.advance();
                Ok(Filter::Exists(self.key()?))
            }
            TokenKind::Ident(_) | TokenKind::Str(_) => {
                let key = self.key()?;
                self.predicate(key)
            }
            _ => Err(self.error("a key, `not`, `exists`, `true`, `false` or `(`")),
        }
    }

    fn key(&mut self) -> Result<String, FilterError> {
        match self.peek().kind.clone() {
            TokenKind::Ident(key) | TokenKind::Str(key) => {
                self.advance();
                Ok(key)
            }
            _ => Err(self.error("a key (an identifier or a quoted string)")),
        }
    }

    /// What follows a key: a comparison, `in low..high`, or nothing (`exists key`).
    fn predicate(&mut self, key: String) -> Result<Filter, FilterError> {
        let op = match self.peek().kind {
            TokenKind::Symbol(symbol @ ("=" | "==" | "!=" | "<" | "<=" | ">" | ">=")) => symbol,
            TokenKind::Keyword("in") => {
                self.advance();
                let low = self.value()?;
                if !self.eat(&TokenKind::Symbol("..")) {
                    return Err(self.error("`..` between the bounds of the range"));
                }
                let high = self.value()?;
                return Ok(Filter::And(vec![
                    Filter::Cmp(key.clone(), CmpOp::Ge, low),
                    Filter::Cmp(key, CmpOp::Le, high),
                ]));
            }
            _ => return Ok(Filter::Exists(key)),
        };
        self.advance();
        let value = self.value()?;
        Ok(match op {
            "=" | "==" => Filter::Eq(key, value),
            "!=" => Filter::Ne(key, value),
            "<" => Filter::Cmp(key, CmpOp::Lt, value),
            "<=" => Filter::Cmp(key, CmpOp::Le, value),
            ">" => Filter::Cmp(key, CmpOp::Gt, value),
            _ => Filter::Cmp(key, CmpOp::Ge, value),
        })
    }

    fn value(&mut self) -> Result<AttrValue, FilterError> {
        let value = match self.peek().kind.clone() {
            TokenKind::Int(value) => AttrValue::Int(value),
            TokenKind::Float(value) => AttrValue::Float(value),
            TokenKind::Str(value) => AttrValue::Str(value),
            TokenKind::Keyword("inf") => AttrValue::Float(f64::INFINITY),
            TokenKind::Keyword("nan") => AttrValue::Float(f64::NAN),
            _ => return Err(self.error("a value (a number or a quoted string)")),
        };
        self.advance();
        Ok(value)
    }
}

fn describe_token(kind: &TokenKind) -> String {
    match kind {
        TokenKind::Ident(word) => format!("`{word}`"),
        TokenKind::Str(value) => format!("the string {value:?}"),
        TokenKind::Int(value) => format!("`{value}`"),
        TokenKind::Float(value) => format!("`{value:?}`"),
        TokenKind::Symbol(symbol) | TokenKind::Keyword(symbol) => format!("`{symbol}`"),
        TokenKind::End => "the end of the filter".into(),
    }
}

/// How tightly a node binds when printed: a child that binds more loosely than its parent needs
/// parentheses.
fn binding(filter: &Filter) -> u8 {
    match filter {
        Filter::Or(children) if children.len() >= 2 => 1,
        Filter::And(children) if children.len() >= 2 => 2,
        Filter::And(children) | Filter::Or(children) if children.len() == 1 => binding(&children[0]),
        _ => 3,
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::Eq(key, value) => write!(f, "{} = {}", Key(key), Value(value)),
            Filter::Ne(key, value) => write!(f, "{} != {}", Key(key), Value(value)),
            Filter::Cmp(key, op, value) => write!(f, "{} {} {}", Key(key), op.symbol(), Value(value)),
            Filter::Exists(key) => write!(f, "exists {}", Key(key)),
            Filter::And(children) if children.is_empty() => f.write_str("true"),
            Filter::Or(children) if children.is_empty() => f.write_str("false"),
            Filter::And(children) | Filter::Or(children) if children.len() == 1 => children[0].fmt(f),
            Filter::And(children) => write_joined(f, children, " and ", 2),
            Filter::Or(children) => write_joined(f, children, " or ", 1),
            Filter::NotIn(key, set) => {
                // As the language would say it: not (key = a or key = b ...), in a fixed order.
                let mut values: Vec<i64> = set.iter().copied().collect();
                values.sort_unstable();
                let equalities: Vec<Filter> =
                    values.into_iter().map(|v| Filter::Eq(key.clone(), AttrValue::Int(v))).collect();
                Filter::Not(Box::new(Filter::Or(equalities))).fmt(f)
            }
            Filter::Not(child) => {
                // `not` binds tightest, so anything but a single predicate needs parentheses.
                if binding(child) < 3 {
                    write!(f, "not ({child})")
                } else {
                    write!(f, "not {child}")
                }
            }
        }
    }
}

/// Prints `children` separated by `separator`, parenthesizing any child that binds no tighter
/// than the parent (an `And` inside an `And` keeps its parentheses, so the tree survives a round
/// trip instead of being flattened).
fn write_joined(f: &mut fmt::Formatter<'_>, children: &[Filter], separator: &str, parent: u8) -> fmt::Result {
    for (index, child) in children.iter().enumerate() {
        if index > 0 {
            f.write_str(separator)?;
        }
        if binding(child) <= parent {
            write!(f, "({child})")?;
        } else {
            write!(f, "{child}")?;
        }
    }
    Ok(())
}

/// A key as the lexer reads it back: bare when it is an identifier, quoted otherwise.
struct Key<'k>(&'k str);

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let bare = chars.next().is_some_and(is_ident_start) && chars.all(is_ident_char) && keyword(self.0).is_none();
        if bare {
            f.write_str(self.0)
        } else {
            write_quoted(f, self.0)
        }
    }
}

struct Value<'v>(&'v AttrValue);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AttrValue::Int(value) => write!(f, "{value}"),
            AttrValue::Float(value) if value.is_nan() => f.write_str("nan"),
            AttrValue::Float(value) if value.is_infinite() => f.write_str(if *value > 0.0 { "inf" } else { "-inf" }),
            // `{:?}` prints the shortest text that parses back to the same float, always with a
            // '.' or an exponent (`1.0`, `1e-7`), so it lexes as a float.
            AttrValue::Float(value) => write!(f, "{value:?}"),
            AttrValue::Str(value) => write_quoted(f, value),
        }
    }
}

fn write_quoted(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in text.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\r' => f.write_str("\\r")?,
            '\t' => f.write_str("\\t")?,
            '\0' => f.write_str("\\0")?,
            c if c.is_control() => write!(f, "\\u{{{:x}}}", u32::from(c))?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    //! Goal: the parser reads the documented language, its errors point at the offending token,
    //! `Display` round-trips, and `matches` follows the documented semantics. Method: examples
    //! for the language and semantics, proptest for round trips over generated filters.
    use super::*;
    use proptest::prelude::*;

    fn eq(key: &str, value: AttrValue) -> Filter {
        Filter::Eq(key.into(), value)
    }

    fn cmp(key: &str, op: CmpOp, value: AttrValue) -> Filter {
        Filter::Cmp(key.into(), op, value)
    }

    fn string(value: &str) -> AttrValue {
        AttrValue::Str(value.into())
    }

    #[test]
    fn parses_the_examples() {
        assert_eq!(
            parse(r#"lang = "en" and year >= 2020"#).unwrap(),
            Filter::And(vec![eq("lang", string("en")), cmp("year", CmpOp::Ge, AttrValue::Int(2020))])
        );
        assert_eq!(
            parse("(a < 3 or b != 'x') and not c").unwrap(),
            Filter::And(vec![
                Filter::Or(vec![cmp("a", CmpOp::Lt, AttrValue::Int(3)), Filter::Ne("b".into(), string("x")),]),
                Filter::Not(Box::new(Filter::Exists("c".into()))),
            ])
        );
        assert_eq!(parse("exists tag").unwrap(), Filter::Exists("tag".into()));
        assert_eq!(
            parse("year in 2019..2021").unwrap(),
            Filter::And(vec![
                cmp("year", CmpOp::Ge, AttrValue::Int(2019)),
                cmp("year", CmpOp::Le, AttrValue::Int(2021))
            ])
        );
        assert_eq!(
            parse("x in -1.5..2.5e1").unwrap(),
            Filter::And(vec![cmp("x", CmpOp::Ge, AttrValue::Float(-1.5)), cmp("x", CmpOp::Le, AttrValue::Float(25.0))])
        );
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        let a = || Filter::Exists("a".into());
        let b = || Filter::Exists("b".into());
        let c = || Filter::Exists("c".into());
        assert_eq!(parse("a or b and c").unwrap(), Filter::Or(vec![a(), Filter::And(vec![b(), c()])]));
        assert_eq!(parse("not a and b").unwrap(), Filter::And(vec![Filter::Not(Box::new(a())), b()]));
        assert_eq!(parse("NOT a OR b").unwrap(), Filter::Or(vec![Filter::Not(Box::new(a())), b()]));
        assert_eq!(parse("a or b or c").unwrap(), Filter::Or(vec![a(), b(), c()]));
        assert_eq!(parse("(a or b) or c").unwrap(), Filter::Or(vec![Filter::Or(vec![a(), b()]), c()]));
    }

    #[test]
    fn lexes_identifiers_numbers_and_strings() {
        assert_eq!(parse("vexfs.doc-id_2 == 7").unwrap(), eq("vexfs.doc-id_2", AttrValue::Int(7)));
        assert_eq!(parse("x<-1").unwrap(), cmp("x", CmpOp::Lt, AttrValue::Int(-1)));
        assert_eq!(parse("x = 1e3").unwrap(), eq("x", AttrValue::Float(1000.0)));
        assert_eq!(parse("x = -inf").unwrap(), eq("x", AttrValue::Float(f64::NEG_INFINITY)));
        assert_eq!(parse("x = -9223372036854775808").unwrap(), eq("x", AttrValue::Int(i64::MIN)));
        assert_eq!(parse(r#"s = 'it\'s \"q\" \u{e9}\n'"#).unwrap(), eq("s", string("it's \"q\" é\n")));
        assert_eq!(parse(r#""and" = 1"#).unwrap(), eq("and", AttrValue::Int(1)));
        assert_eq!(parse("true").unwrap(), Filter::And(vec![]));
        assert_eq!(parse("not false").unwrap(), Filter::Not(Box::new(Filter::Or(vec![]))));
    }

    #[test]
    fn errors_name_position_and_expectation() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(error("").expected, "a key, `not`, `exists`, `true`, `false` or `(`");
        assert_eq!(error("").position, 0);
        let e = error("lang = en");
        assert_eq!((e.position, e.expected, e.found.as_str()), (7, "a value (a number or a quoted string)", "`en`"));
        let e = error("(a = 1");
        assert_eq!((e.position, e.expected), (6, "`)`, `and` or `or`"));
        let e = error("a = 1 b = 2");
        assert_eq!((e.position, e.expected), (6, "`and`, `or` or the end of the filter"));
        let e = error("a = 'open");
        assert_eq!((e.position, e.expected), (9, "a closing quote"));
        let e = error("a = 99999999999999999999");
        assert_eq!((e.position, e.expected), (4, "an integer between -2^63 and 2^63 - 1"));
        let e = error("a = 12abc");
        assert_eq!((e.position, e.expected), (6, "a digit or the end of the number"));
        let e = error("a in 1 2");
        assert_eq!((e.position, e.expected), (7, "`..` between the bounds of the range"));
        let e = error("a # 1");
        assert_eq!((e.position, e.expected), (2, "a key, value, operator or parenthesis"));
        let e = error(r"a = 'x\q'");
        assert_eq!(e.position, 7);
        let e = error("exists 3");
        assert_eq!((e.position, e.expected), (7, "a key (an identifier or a quoted string)"));
        let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
        assert!(error(&deep).expected.starts_with("less nesting"));
        assert_eq!(error(&"a".repeat(FILTER_TEXT_MAX + 1)).expected, "a shorter filter");
        assert_eq!(
            error("lang = en").to_string(),
            "filter: at byte 7: expected a value (a number or a quoted string), found `en`"
        );
    }

    #[test]
    fn matches_follows_the_semantics() {
        let attrs: Vec<(String, AttrValue)> = vec![
            ("lang".into(), string("en")),
            ("year".into(), AttrValue::Int(2020)),
            ("score".into(), AttrValue::Float(0.5)),
            ("big".into(), AttrValue::Int((1 << 53) + 1)),
        ];
        let check = |text: &str, expected: bool| {
            assert_eq!(parse(text).unwrap().matches(&attrs), expected, "{text}");
        };
        check(r#"lang = "en" and year >= 2020"#, true);
        check("year in 2019..2021", true);
        check("year in 2021..2022", false);
        check("year = 2020.0 and year < 2020.5 and year > 2019.9", true);
        check("score > 0 and score < 1 and score = 0.5", true);
        check("big > 9007199254740992.0", true);
        check("big = 9007199254740992.0", false);
        check("lang > 'de' and lang < 'fr'", true);
        check("lang = 1 or lang < 1 or lang > 1", false);
        check("lang != 1", true);
        check("missing = 1 or missing != 1 or missing < 1 or missing >= 1", false);
        check("not missing = 1", true);
        check("exists lang and not exists missing and not missing", true);
        check("score = nan or score != nan", true);
        check("true and not false", true);
        check("year > inf or year < -inf", false);
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z_][a-z0-9_.-]{0,6}",
            "[ -~é\n\t\"'\\\\]{0,6}",
            Just("and".to_string()),
            Just("NOT".to_string())
        ]
    }

    fn value_strategy() -> impl Strategy<Value = AttrValue> {
        prop_oneof![
            any::<i64>().prop_map(AttrValue::Int),
            prop::num::f64::NORMAL.prop_map(AttrValue::Float),
            prop_oneof![Just(0.0), Just(-0.0), Just(f64::INFINITY), Just(f64::NEG_INFINITY), Just(1e-310)]
                .prop_map(AttrValue::Float),
            "[ -~é\u{1}\n\"'\\\\]{0,8}".prop_map(AttrValue::Str),
        ]
    }

    /// Filters in parser normal form: `And`/`Or` with zero or at least two children.
    fn filter_strategy() -> impl Strategy<Value = Filter> {
        let cmp_op = prop_oneof![Just(CmpOp::Lt), Just(CmpOp::Le), Just(CmpOp::Gt), Just(CmpOp::Ge)];
        let leaf = prop_oneof![
            (key_strategy(), value_strategy()).prop_map(|(k, v)| Filter::Eq(k, v)),
            (key_strategy(), value_strategy()).prop_map(|(k, v)| Filter::Ne(k, v)),
            (key_strategy(), cmp_op, value_strategy()).prop_map(|(k, op, v)| Filter::Cmp(k, op, v)),
            key_strategy().prop_map(Filter::Exists),
            Just(Filter::And(vec![])),
            Just(Filter::Or(vec![])),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
                prop::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
                inner.prop_map(|child| Filter::Not(Box::new(child))),
            ]
        })
    }

    proptest! {
        #[test]
        fn display_round_trips(filter in filter_strategy()) {
            let text = filter.to_string();
            let parsed = parse(&text);
            prop_assert_eq!(parsed.as_ref(), Ok(&filter), "text: {}", text);
        }

        #[test]
        fn parse_never_panics(text in "[ -~]{0,40}") {
            let _ = parse(&text);
        }
    }
}
