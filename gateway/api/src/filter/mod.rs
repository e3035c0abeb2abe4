//! The filter language: one expression language for `where`, `cone`, filter subscriptions and
//! processor filters, in the spirit of a SQL `WHERE` clause.
//!
//! ```text
//! n_detections >= 3 and mag_g < 18 and solar_system is null
//! survey = 'ztf' and (drb > 0.9 or rb > 0.65) and isdiffpos = true
//! mag_g < mag_r and key not in ('ztf:ZTF21aaaaaaa', 'ztf:ZTF21aaaaaab')
//! ```
//!
//! Why one language: a user who learned `where` can write a subscription or a processor
//! filter, and every place accepts exactly the same text, checked the same way, with the same
//! error messages.
//!
//! Why resolved at parse time: a subscription's filter runs against every alert of the
//! stream, so parsing does all the work once — field names become [`Field`] values, types are
//! checked, literals are converted — and [`Filter::matches`] does no name lookup and no
//! allocation. An unknown field or a type mismatch is found before anything runs, and is a
//! 400 whose [`FilterError`] says where and what.
//!
//! Why bounded: filters come from the network and run per alert, so text length
//! ([`MAX_FILTER_BYTES`]), tests ([`MAX_TERMS`]), nesting ([`MAX_DEPTH`], checked while
//! parsing, so deep parentheses cannot overflow the stack) and `in` lists ([`MAX_IN_ITEMS`])
//! are all capped, and evaluation costs at most a few hundred comparisons.
//!
//! # Grammar
//!
//! Keywords (`and or not in is null true false`) are case-insensitive; field names are
//! case-sensitive and listed by [`fields`] (`GET /v1/fields`). Whitespace separates tokens.
//!
//! ```text
//! filter     = or_expr ;
//! or_expr    = and_expr , { "or" , and_expr } ;
//! and_expr   = unary , { "and" , unary } ;
//! unary      = "not" , unary | primary ;
//! primary    = "(" , or_expr , ")" | test ;
//! test       = field , cmp_op , ( literal | field )
//!            | field , [ "not" ] , "in" , "(" , literal , { "," , literal } , ")"
//!            | field , "is" , [ "not" ] , "null" ;
//! cmp_op     = "=" | "!=" | "<" | "<=" | ">" | ">=" ;
//! literal    = number | string | "true" | "false" ;
//! number     = [ "-" ] , digits , [ "." , digits ] , [ ( "e" | "E" ) , [ "+" | "-" ] , digits ] ;
//! digits     = digit , { digit } ;
//! string     = "'" , { any character but "'" | "''" } , "'" ;
//! field      = ( letter | "_" ) , { letter | digit | "_" } ;
//! ```
//!
//! # Meaning
//!
//! - Types: `number` (f64) and `integer` (i64) compare with each other numerically; strings
//!   with all six operators, byte-wise; bools with `=` and `!=` only. A number written with
//!   digits only is an integer literal. The field comes first (`mag_g < 18`, not `18 >
//!   mag_g`); a field may also be compared with another field of a compatible type.
//! - Precedence: `not` binds tighter than `and`, which binds tighter than `or`.
//! - Nulls follow SQL's three-valued logic: a comparison or `in` with a null value is
//!   Unknown, `not` Unknown is Unknown, `and`/`or` are Kleene's; `is [not] null` is never
//!   Unknown. An object matches when the whole filter is True, so `not (mag_g < 18)` does not
//!   match an object without a g detection.
//! - [`Filter`]'s `Display` is canonical (lowercase keywords, parentheses only where needed,
//!   floats in their shortest exact form) and parses back to an equal filter.

mod ast;
mod eval;
mod fields;
mod lexer;
mod order;
mod parser;
mod set;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use ast::{CmpOp, Expr, Literal, Operand};
pub use eval::{value, Scalar};
pub use fields::{fields, Field, FieldInfo, FieldType, Fields};
pub use order::Order;
pub use set::{FilterSet, Guard};

use crate::object::ObjectSummary;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Longest filter text accepted, in bytes.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Most comparisons and `in` / `is null` tests in one filter.
pub const MAX_TERMS: usize = 256;
/// Deepest nesting of parentheses and `not`.
pub const MAX_DEPTH: usize = 32;
/// Most values in one `in` list.
pub const MAX_IN_ITEMS: usize = 256;

/// Why a filter (or an ordering) was refused: where, and what was expected and found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    /// 0-based byte offset in the text, at a character boundary.
    pub position: usize,
    pub message: String,
}

impl FilterError {
    pub(crate) fn new(position: usize, message: impl Into<String>) -> FilterError {
        FilterError { position, message: message.into() }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for FilterError {}

/// At most 40 characters of `s`, for quoting user text in messages.
pub(crate) fn snippet(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((cut, _)) => Cow::Owned(format!("{}…", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

/// A parsed, type-checked filter, ready to run against summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses and checks `text` (see the module documentation for the language).
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        parser::parse(text).map(|expr| Filter { expr })
    }

    /// Whether the summary satisfies the filter: the expression is True (not False, not
    /// Unknown).
    pub fn matches(&self, s: &ObjectSummary) -> bool {
        eval::eval(&self.expr, s) == eval::Truth::True
    }

    /// The resolved expression, for callers that plan around it (e.g. pick an index).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.expr.fmt(f)
    }
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Filter, FilterError> {
        Filter::parse(s)
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Filter, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Filter::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Filter {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "A filter expression: comparisons (= != < <= > >=), and, or, not, parentheses, in (…), \
                 is [not] null, strings in single quotes; fields as listed by GET /v1/fields.",
            ))
            .max_length(Some(MAX_FILTER_BYTES))
            .examples(["n_detections >= 3 and mag_g < 18 and solar_system is null"])
            .into()
    }
}

impl ToSchema for Filter {}
