//! Splits filter text into tokens, each with its byte span.

use super::ast::{CmpOp, Literal};
use super::FilterError;

/// A reserved word (matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keyword {
    And,
    Or,
    Not,
    In,
    Is,
    Null,
    True,
    False,
}

impl Keyword {
    fn parse(word: &str) -> Option<Keyword> {
        const WORDS: [(&str, Keyword); 8] = [
            ("and", Keyword::And),
            ("or", Keyword::Or),
            ("not", Keyword::Not),
            ("in", Keyword::In),
            ("is", Keyword::Is),
            ("null", Keyword::Null),
            ("true", Keyword::True),
            ("false", Keyword::False),
        ];
        WORDS.iter().find(|(w, _)| w.eq_ignore_ascii_case(word)).map(|&(_, k)| k)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok<'a> {
    Ident(&'a str),
    Keyword(Keyword),
    Literal(Literal),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    End,
}

/// A token and where it is: `start..end` are byte offsets into the filter text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Token<'a> {
    pub tok: Tok<'a>,
    pub start: usize,
    pub end: usize,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The character starting at byte `at`, for messages.
fn char_at(text: &str, at: usize) -> char {
    text.get(at..).and_then(|rest| rest.chars().next()).unwrap_or('\u{fffd}')
}

/// Tokenizes the whole text; the last token is always `End`, whose span is the text's end.
pub(crate) fn tokenize(text: &str) -> Result<Vec<Token<'_>>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match b {
            b'(' => {
                i += 1;
                Tok::LParen
            }
            b')' => {
                i += 1;
                Tok::RParen
            }
            b',' => {
                i += 1;
                Tok::Comma
            }
            b'=' if bytes.get(i + 1) == Some(&b'=') => {
                return Err(FilterError::new(start, "'==' is not an operator; use '=' to test equality"));
            }
            b'=' => {
                i += 1;
                Tok::Op(CmpOp::Eq)
            }
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ne)
            }
            b'!' => return Err(FilterError::new(start, "expected '!=', found '!' (negation is 'not')")),
            b'<' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Le)
            }
            b'<' if bytes.get(i + 1) == Some(&b'>') => {
                return Err(FilterError::new(start, "'<>' is not an operator; use '!=' for 'not equal'"));
            }
            b'<' => {
                i += 1;
                Tok::Op(CmpOp::Lt)
            }
            b'>' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Tok::Op(CmpOp::Ge)
            }
            b'>' => {
                i += 1;
                Tok::Op(CmpOp::Gt)
            }
            b'\'' => {
                let (s, end) = string(text, start)?;
                i = end;
                Tok::Literal(Literal::Str(s))
            }
            b'"' => {
                return Err(FilterError::new(
                    start,
                    "strings are in single quotes ('ztf'), found '\"' (names need no quotes)",
                ));
            }
            b'-' | b'0'..=b'9' => {
                let (lit, end) = number(text, start)?;
                i = end;
                Tok::Literal(lit)
            }
            b'.' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                return Err(FilterError::new(start, "a number needs a digit before its decimal point (0.5, not .5)"));
            }
            b if is_ident_start(b) => {
                while i < bytes.len() && is_ident_char(bytes[i]) {
                    i += 1;
                }
                let word = &text[start..i];
                Keyword::parse(word).map_or(Tok::Ident(word), Tok::Keyword)
            }
            _ => {
                let c = char_at(text, start);
                return Err(FilterError::new(start, format!("unexpected character '{}'", c.escape_debug())));
            }
        };
        out.push(Token { tok, start, end: i });
    }
    out.push(Token { tok: Tok::End, start: bytes.len(), end: bytes.len() });
    Ok(out)
}

/// A single-quoted string starting at `start`; `''` stands for one quote. Returns the value
/// and the offset just past the closing quote.
fn string(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let mut value = String::new();
    let mut rest = &text[start + 1..];
    let mut at = start + 1;
    loop {
        let Some(q) = rest.find('\'') else {
            return Err(FilterError::new(
                start,
                "unterminated string: no closing quote (write '' for a quote inside a string)",
            ));
        };
        value.push_str(&rest[..q]);
        at += q + 1;
        rest = &rest[q + 1..];
        if let Some(after) = rest.strip_prefix('\'') {
            value.push('\'');
            at += 1;
            rest = after;
        } else {
            return Ok((value, at));
        }
    }
}

fn digits(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// A number starting at `start`: `-? digits (. digits)? ([eE] [+-]? digits)?`. Digits only is
/// an integer (or a number, if it does not fit in i64).
fn number(text: &str, start: usize) -> Result<(Literal, usize), FilterError> {
    let bytes = text.as_bytes();
    let mut i = start;
    if bytes[i] == b'-' {
        i += 1;
        if !bytes.get(i).is_some_and(u8::is_ascii_digit) {
            let msg = "expected a digit after '-' (there is no arithmetic; '-' only starts a negative number)";
            return Err(FilterError::new(start, msg));
        }
    }
    i = digits(bytes, i);
    let mut integral = true;
    if bytes.get(i) == Some(&b'.') {
        integral = false;
        if !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return Err(FilterError::new(i, "expected a digit after the decimal point"));
        }
        i = digits(bytes, i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        integral = false;
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if !bytes.get(j).is_some_and(u8::is_ascii_digit) {
            return Err(FilterError::new(i, "expected the exponent's digits after 'e'"));
        }
        i = digits(bytes, j);
    }
    if bytes.get(i).is_some_and(|&b| is_ident_char(b) || b == b'.') {
        let mut end = i;
        while end < bytes.len() && (is_ident_char(bytes[end]) || bytes[end] == b'.') {
            end += 1;
        }
        return Err(FilterError::new(start, format!("invalid number '{}'", &text[start..end])));
    }
    let src = &text[start..i];
    if integral {
        if let Ok(n) = src.parse::<i64>() {
            return Ok((Literal::Integer(n), i));
        }
    }
    match src.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok((Literal::Number(x), i)),
        _ => Err(FilterError::new(start, format!("number {src} is out of range"))),
    }
}
