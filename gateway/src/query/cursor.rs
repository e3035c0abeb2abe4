//! Page cursors: where a page of `GET /v1/objects` ended, in the query's order.
//!
//! A cursor holds the ordering it was made for and the last object's position in it — the
//! order field's value and the object key, which breaks ties — so the next page is everything
//! strictly after that position. Nothing about the query's state is kept on the server, so a
//! cursor stays valid across nodes, restarts and failovers. Encoded as base64url JSON: opaque
//! to clients, readable when debugging. A cursor that does not decode, or was made for another
//! ordering, is a 400.

use crate::error::ApiError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use lightkeeper_api::filter::{value, FieldType, Order, Scalar};
use lightkeeper_api::object::ObjectSummary;
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;

/// The order field's value at a position (never null: objects without a value of the order
/// field are not in an ordered answer).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Position {
    Integer(i64),
    Number(f64),
    Bool(bool),
    Str(String),
}

impl Position {
    pub fn of(s: Scalar<'_>) -> Option<Position> {
        Some(match s {
            Scalar::Null => return None,
            Scalar::Number(x) => Position::Number(x),
            Scalar::Integer(i) => Position::Integer(i),
            Scalar::Str(t) => Position::Str(t.to_owned()),
            Scalar::Bool(b) => Position::Bool(b),
        })
    }

    pub fn as_scalar(&self) -> Scalar<'_> {
        match self {
            Position::Number(x) => Scalar::Number(*x),
            Position::Integer(i) => Scalar::Integer(*i),
            Position::Str(t) => Scalar::Str(t),
            Position::Bool(b) => Scalar::Bool(*b),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The ordering, as `Order`'s canonical text.
    pub order: String,
    pub value: Position,
    pub key: String,
}

/// Where `s` sits in `order`: (value, key). `None` when its order value is null.
pub fn position_of<'a>(order: &Order, s: &'a ObjectSummary) -> Option<(Scalar<'a>, &'a str)> {
    match value(s, order.field) {
        Scalar::Null => None,
        v => Some((v, s.key.as_str())),
    }
}

/// Compares two positions in `order` (descending reverses value and key alike).
pub fn cmp_positions(order: &Order, a: (Scalar<'_>, &str), b: (Scalar<'_>, &str)) -> Ordering {
    let o = a.0.cmp_total(&b.0).then_with(|| a.1.as_bytes().cmp(b.1.as_bytes()));
    if order.desc {
        o.reverse()
    } else {
        o
    }
}

impl Cursor {
    pub fn after(order: &Order, last: &ObjectSummary) -> Option<Cursor> {
        let (v, key) = position_of(order, last)?;
        Some(Cursor { order: order.to_string(), value: Position::of(v)?, key: key.to_owned() })
    }

    /// The position the next page starts after.
    pub fn position(&self) -> (Scalar<'_>, &str) {
        (self.value.as_scalar(), &self.key)
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).expect("plain data serializes"))
    }

    /// Decodes a cursor given with a query ordered by `order`.
    pub fn decode(text: &str, order: &Order) -> Result<Cursor, ApiError> {
        let bad = |why: &str| {
            ApiError::bad_request(
                "invalid_cursor",
                format!("cursor {:?} {why}; pass the next_cursor of the previous page unchanged", truncate(text)),
            )
        };
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| bad("is not base64url"))?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad("does not decode"))?;
        if c.order != order.to_string() {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                format!(
                    "the cursor was made for order={:?}, but this query has order={:?}",
                    c.order,
                    order.to_string()
                ),
            ));
        }
        let fits = matches!(
            (order.field.ty(), &c.value),
            (FieldType::Number | FieldType::Integer, Position::Number(_) | Position::Integer(_))
                | (FieldType::String, Position::Str(_))
                | (FieldType::Bool, Position::Bool(_))
        );
        if !fits {
            return Err(bad("holds a value of the wrong type for its order"));
        }
        Ok(c)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_api::filter::Field;

    #[test]
    fn cursors_round_trip_and_are_checked() {
        let order = Order { field: Field::LastMjd, desc: true };
        let c = Cursor { order: order.to_string(), value: Position::Number(60_000.123_456_789_1), key: "ztf:A".into() };
        assert_eq!(Cursor::decode(&c.encode(), &order).unwrap(), c);
        let other = Order { field: Field::LastMjd, desc: false };
        assert!(Cursor::decode(&c.encode(), &other).unwrap_err().to_string().contains("made for order"));
        assert_eq!(Cursor::decode("%%%", &order).unwrap_err().code(), "invalid_cursor");
        assert_eq!(Cursor::decode("e30", &order).unwrap_err().code(), "invalid_cursor");
        let key_order = Order { field: Field::Key, desc: false };
        let wrong = Cursor { order: key_order.to_string(), value: Position::Number(1.0), key: "k".into() };
        assert!(Cursor::decode(&wrong.encode(), &key_order).unwrap_err().to_string().contains("wrong type"));
    }
}
