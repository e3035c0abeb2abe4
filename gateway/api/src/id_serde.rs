//! 64-bit ids (ZTF candid ~1.6e18, LSST diaSourceId) as JSON strings.
//!
//! JavaScript numbers are exact only to 2^53, so a browser would silently merge two distinct
//! candids. Human-readable formats (JSON) get strings and accept strings or numbers back; binary
//! formats (postcard, in the store and the changelog) keep plain integers.

use serde::{de, Deserialize, Deserializer, Serializer};

#[derive(Deserialize)]
#[serde(untagged)]
enum IdRepr {
    Num(i64),
    Str(String),
}

fn from_repr<E: de::Error>(r: IdRepr) -> Result<i64, E> {
    match r {
        IdRepr::Num(n) => Ok(n),
        IdRepr::Str(s) => s.parse().map_err(|_| E::custom(format!("id {s:?} is not a 64-bit integer"))),
    }
}

pub fn serialize<S: Serializer>(id: &i64, s: S) -> Result<S::Ok, S::Error> {
    if s.is_human_readable() {
        s.collect_str(id)
    } else {
        s.serialize_i64(*id)
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    if d.is_human_readable() {
        from_repr(IdRepr::deserialize(d)?)
    } else {
        i64::deserialize(d)
    }
}

pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(id: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) if s.is_human_readable() => s.collect_str(id),
            Some(id) => s.serialize_some(id),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
        if d.is_human_readable() {
            Option::<IdRepr>::deserialize(d)?.map(from_repr).transpose()
        } else {
            Option::<i64>::deserialize(d)
        }
    }
}
