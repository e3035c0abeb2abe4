//! `order=<field> [asc|desc]`: the sort order of a query's results.

use super::eval::value;
use super::fields::{Field, FieldType};
use super::{snippet, FilterError};
use crate::object::ObjectSummary;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Sort by one field, ascending (nulls first) or descending (nulls last).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Order {
    pub field: Field,
    pub desc: bool,
}

impl Order {
    /// Parses `field`, `field asc` or `field desc` (direction case-insensitive). Bool fields
    /// cannot be ordered by.
    pub fn parse(text: &str) -> Result<Order, FilterError> {
        let mut words = text.split_ascii_whitespace().map(|w| (w.as_ptr() as usize - text.as_ptr() as usize, w));
        let Some((at, name)) = words.next() else {
            return Err(FilterError::new(0, "the ordering is empty: expected a field name, e.g. 'last_mjd desc'"));
        };
        let field = Field::parse(name).ok_or_else(|| {
            let hint = match Field::suggest(name) {
                Some(f) => format!("; did you mean '{f}'?"),
                None => " (GET /v1/fields lists the fields)".to_string(),
            };
            FilterError::new(at, format!("unknown field '{}'{hint}", snippet(name)))
        })?;
        if field.ty() == FieldType::Bool {
            return Err(FilterError::new(at, format!("cannot order by bool field '{field}'")));
        }
        let desc = match words.next() {
            None => false,
            Some((_, w)) if w.eq_ignore_ascii_case("asc") => false,
            Some((_, w)) if w.eq_ignore_ascii_case("desc") => true,
            Some((at, w)) => {
                let msg = format!("expected 'asc' or 'desc' after field '{field}', found '{}'", snippet(w));
                return Err(FilterError::new(at, msg));
            }
        };
        if let Some((at, w)) = words.next() {
            let msg = format!("expected the end of the ordering, found '{}'", snippet(w));
            return Err(FilterError::new(at, msg));
        }
        Ok(Order { field, desc })
    }

    /// How `a` and `b` sort under this order (by [`Scalar::cmp_total`](super::Scalar::cmp_total)).
    pub fn compare(&self, a: &ObjectSummary, b: &ObjectSummary) -> Ordering {
        let ord = value(a, self.field).cmp_total(&value(b, self.field));
        if self.desc {
            ord.reverse()
        } else {
            ord
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, if self.desc { "desc" } else { "asc" })
    }
}

impl FromStr for Order {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Order, FilterError> {
        Order::parse(s)
    }
}

impl Serialize for Order {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Order {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Order, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Order::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialSchema for Order {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A field (not a bool) and an optional direction, 'asc' (default) or 'desc'."))
            .examples(["last_mjd desc"])
            .into()
    }
}

impl ToSchema for Order {}
