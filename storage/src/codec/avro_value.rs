//! Small helpers to read fields out of a decoded Avro `Value` by name (the generic decoder's side
//! of [`Node`](super::node::Node), and stamps).
//!
//! Decoding goes through the writer schema into a generic `Value` (never a fixed reader schema:
//! the ZTF `schemavsn` does not determine the layout, see the data notes), so field access is by
//! name, unions are unwrapped here, and NaN becomes "absent".

use apache_avro::types::Value;

/// Unwraps union layers.
pub fn plain(v: &Value) -> &Value {
    match v {
        Value::Union(_, inner) => plain(inner),
        other => other,
    }
}

/// A record's field by name (first of `names` present), unions unwrapped; `None` if absent or null.
pub fn field<'a>(rec: &'a Value, names: &[&str]) -> Option<&'a Value> {
    let Value::Record(fields) = plain(rec) else {
        return None;
    };
    for name in names {
        if let Some((_, v)) = fields.iter().find(|(n, _)| n == name) {
            let v = plain(v);
            return (!matches!(v, Value::Null)).then_some(v);
        }
    }
    None
}

/// True when the record has a field of this name (even a null one).
pub fn has_field(rec: &Value, name: &str) -> bool {
    matches!(plain(rec), Value::Record(fields) if fields.iter().any(|(n, _)| n == name))
}

pub fn f64_of(v: &Value) -> Option<f64> {
    let x = match plain(v) {
        Value::Double(d) => *d,
        Value::Float(f) => f64::from(*f),
        Value::Int(i) => f64::from(*i),
        Value::Long(l) => *l as f64,
        _ => return None,
    };
    x.is_finite().then_some(x)
}

pub fn i64_of(v: &Value) -> Option<i64> {
    match plain(v) {
        Value::Long(l) => Some(*l),
        Value::Int(i) => Some(i64::from(*i)),
        _ => None,
    }
}

pub fn str_of(v: &Value) -> Option<&str> {
    match plain(v) {
        Value::String(s) => Some(s.as_str()),
        Value::Enum(_, s) => Some(s.as_str()),
        _ => None,
    }
}

pub fn bool_of(v: &Value) -> Option<bool> {
    match plain(v) {
        Value::Boolean(b) => Some(*b),
        _ => None,
    }
}
