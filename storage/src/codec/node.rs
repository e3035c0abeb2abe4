//! Reading a decoded alert by slot, whichever decoder produced it.
//!
//! The survey mappers (`ztf.rs`, `lsst.rs`) are written once, against [`Node`]. Two decoders
//! implement it:
//! - [`Val`](super::projection::Val), from the plan compiled from the writer schema — what
//!   ingest uses: a slot is an index;
//! - apache-avro's generic `Value` tree — the reference the compiled decoder is tested and
//!   benchmarked against: a slot is looked up by its spellings.
//!
//! Both follow the same rules: unions are unwrapped, a null is an absent value, the first
//! spelling the record has is the field (even when its value is null), and a float that is not
//! finite (ZTF and LSST write NaN for "no value") is absent.

use super::avro_value;
use super::projection::{Slot, Val};
use apache_avro::types::Value;

/// A decoded value: a record, an array or a scalar.
pub trait Node<'a>: Copy + Sized {
    /// The record's field for `slot`; `None` when it has none, when its value is null, or when
    /// this is not a record.
    fn field(self, slot: Slot) -> Option<Self>;
    /// True when the record has a field for `slot`, even a null one.
    fn has(self, slot: Slot) -> bool;
    /// The items of an array.
    fn items(self) -> Option<impl Iterator<Item = Self>>;
    /// A finite `float`, `double`, `int` or `long`.
    fn as_f64(self) -> Option<f64>;
    /// An `int` or `long`.
    fn as_i64(self) -> Option<i64>;
    /// A `string` or an enum's symbol.
    fn as_str(self) -> Option<&'a str>;
    fn as_bool(self) -> Option<bool>;

    fn f64(self, slot: Slot) -> Option<f64> {
        self.field(slot).and_then(Self::as_f64)
    }
    fn i64(self, slot: Slot) -> Option<i64> {
        self.field(slot).and_then(Self::as_i64)
    }
    fn str(self, slot: Slot) -> Option<&'a str> {
        self.field(slot).and_then(Self::as_str)
    }
    fn bool(self, slot: Slot) -> Option<bool> {
        self.field(slot).and_then(Self::as_bool)
    }
    /// An array field's items; `None` when the field is missing or null (not an empty array).
    fn array(self, slot: Slot) -> Option<impl Iterator<Item = Self>> {
        self.field(slot)?.items()
    }
}

impl<'a, 'b: 'a> Node<'a> for &'a Val<'b> {
    fn field(self, slot: Slot) -> Option<Self> {
        match self {
            Val::Record(rec) => rec.vals.get(slot.index).filter(|v| !matches!(v, Val::Null)),
            _ => None,
        }
    }
    fn has(self, slot: Slot) -> bool {
        matches!(self, Val::Record(rec) if rec.present & (1 << slot.index) != 0)
    }
    fn items(self) -> Option<impl Iterator<Item = Self>> {
        match self {
            Val::Array(items) => Some(items.iter()),
            _ => None,
        }
    }
    fn as_f64(self) -> Option<f64> {
        let x = match self {
            Val::Double(d) => *d,
            Val::Long(l) => *l as f64,
            _ => return None,
        };
        x.is_finite().then_some(x)
    }
    fn as_i64(self) -> Option<i64> {
        match self {
            Val::Long(l) => Some(*l),
            _ => None,
        }
    }
    fn as_str(self) -> Option<&'a str> {
        match self {
            Val::Str(s) => Some(*s),
            _ => None,
        }
    }
    fn as_bool(self) -> Option<bool> {
        match self {
            Val::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

impl<'a> Node<'a> for &'a Value {
    fn field(self, slot: Slot) -> Option<Self> {
        avro_value::field(self, slot.names)
    }
    fn has(self, slot: Slot) -> bool {
        slot.names.iter().any(|n| avro_value::has_field(self, n))
    }
    fn items(self) -> Option<impl Iterator<Item = Self>> {
        match avro_value::plain(self) {
            Value::Array(items) => Some(items.iter()),
            _ => None,
        }
    }
    fn as_f64(self) -> Option<f64> {
        avro_value::f64_of(self)
    }
    fn as_i64(self) -> Option<i64> {
        avro_value::i64_of(self)
    }
    fn as_str(self) -> Option<&'a str> {
        avro_value::str_of(self)
    }
    fn as_bool(self) -> Option<bool> {
        avro_value::bool_of(self)
    }
}
