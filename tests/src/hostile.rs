//! Hostile packets: real alert packets rewritten so that one Avro length claims far more than
//! the packet holds — a string, a bytes field, an array's item count, a container block's size.
//!
//! Each is built from a real shared packet: the value is decoded with apache-avro, the target
//! field is set to a sentinel, the record is re-encoded, and the sentinel (with the length or
//! count before it) is replaced by the claim, the rest cut off and replaced by a little filler.
//! So everything before the claim is a valid encoding under the packet's real writer schema, and
//! a decoder reaches the claim exactly as it would reach a real field.

use crate::shared_data;
use apache_avro::types::Value;
use apache_avro::{from_avro_datum_schemata, to_avro_datum, to_avro_datum_schemata, Reader};
use lightkeeper_storage::registry::{EmbeddedRegistry, SchemaRegistry};

/// What the packet claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// ZTF container: the `objectId` string's length.
    ZtfString,
    /// ZTF container: the size in bytes of the (only) data block.
    ZtfBlockSize,
    /// LSST wire format: the `cutoutDifference` bytes' length.
    LsstBytes,
    /// LSST wire format: the item count of `prvDiaSources`.
    LsstArrayCount,
}

impl Claim {
    pub const ALL: [Claim; 4] = [Claim::ZtfString, Claim::ZtfBlockSize, Claim::LsstBytes, Claim::LsstArrayCount];
}

/// Bytes of filler after the claim: the packet says it holds `claimed` more, it holds this many.
const FILLER: usize = 64;

/// Avro's zig-zag varint of `n`.
pub fn varint(n: i64) -> Vec<u8> {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let b = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A packet of `claim`'s kind whose length or count says `claimed`.
pub fn packet(claim: Claim, claimed: i64) -> Vec<u8> {
    match claim {
        Claim::ZtfString | Claim::ZtfBlockSize => ztf(claim, claimed),
        Claim::LsstBytes | Claim::LsstArrayCount => lsst(claim, claimed),
    }
}

fn set(fields: &mut [(String, Value)], name: &str, v: Value) {
    let (_, slot) = fields.iter_mut().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no field {name}"));
    // Every union set here is `["null", T]`.
    *slot = match slot {
        Value::Union(_, _) if v == Value::Null => Value::Union(0, Box::new(Value::Null)),
        Value::Union(_, _) => Value::Union(1, Box::new(v)),
        _ => v,
    };
}

/// `datum` cut at the sentinel: everything before its length (or count) prefix of
/// `prefix_len` bytes, then the claim, then filler.
fn cut_at(datum: &[u8], sentinel: &[u8], prefix_len: usize, claimed: i64) -> Vec<u8> {
    let at = datum.windows(sentinel.len()).position(|w| w == sentinel).expect("the sentinel is in the encoding");
    let mut out = datum[..at - prefix_len].to_vec();
    out.extend(varint(claimed));
    out.extend(std::iter::repeat_n(b'x', FILLER));
    out
}

const STRING_SENTINEL: &str = "SENTINEL-string-4f1c9a";
const BYTES_SENTINEL: &[u8] = b"SENTINEL-bytes-7be203";
const LONG_SENTINEL: i64 = 0x0123_4567_89ab_cdef;

fn ztf(claim: Claim, claimed: i64) -> Vec<u8> {
    let file = shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129");
    let bytes = std::fs::read(crate::avro_files(&file).first().expect("a ZTF packet")).unwrap();
    let reader = Reader::new(&bytes[..]).unwrap();
    let schema = reader.writer_schema().clone();
    let mut value = reader.into_iter().next().unwrap().unwrap();
    // The file's header (magic, metadata, sync marker) is kept as is: it ends at the first
    // occurrence of the sync marker, which is also the file's last 16 bytes.
    let sync = &bytes[bytes.len() - 16..];
    let header_end = bytes.windows(16).position(|w| w == sync).expect("the sync marker") + 16;
    let header = &bytes[..header_end];
    let Value::Record(fields) = &mut value else { panic!("a ZTF alert is a record") };
    let datum = match claim {
        Claim::ZtfString => {
            set(fields, "objectId", Value::String(STRING_SENTINEL.into()));
            let datum = to_avro_datum(&schema, value).unwrap();
            cut_at(&datum, STRING_SENTINEL.as_bytes(), varint(STRING_SENTINEL.len() as i64).len(), claimed)
        }
        _ => to_avro_datum(&schema, value).unwrap()[..200].to_vec(),
    };
    let block = match claim {
        Claim::ZtfBlockSize => claimed,
        _ => datum.len() as i64,
    };
    let mut out = header.to_vec();
    out.extend(varint(1));
    out.extend(varint(block));
    out.extend(&datum);
    out.extend(sync);
    out
}

fn lsst(claim: Claim, claimed: i64) -> Vec<u8> {
    let bytes = std::fs::read(shared_data().join("lsst/alerts/pittgoogle-client_wire/lsst.v7_1.avro")).unwrap();
    assert_eq!(bytes[0], 0, "Confluent wire format");
    let id = u32::from_be_bytes(bytes[1..5].try_into().unwrap());
    let registered = EmbeddedRegistry::published().get(id).expect("a published schema id");
    // The alert schema with its sibling files' named types, as the node's decoder reads it.
    let (schema, named) = (&registered.schema, registered.named.iter().collect::<Vec<_>>());
    let encode = |value: Value| to_avro_datum_schemata(schema, named.clone(), value).unwrap();
    let mut value = from_avro_datum_schemata(schema, named.clone(), &mut &bytes[5..], None).unwrap();
    let Value::Record(fields) = &mut value else { panic!("an LSST alert is a record") };
    for f in ["prvDiaSources", "prvDiaForcedSources", "prvDiaNondetectionLimits", "cutoutScience", "cutoutTemplate"] {
        set(fields, f, Value::Null);
    }
    let datum = match claim {
        Claim::LsstBytes => {
            set(fields, "cutoutDifference", Value::Bytes(BYTES_SENTINEL.to_vec()));
            let datum = encode(value);
            cut_at(&datum, BYTES_SENTINEL, varint(BYTES_SENTINEL.len() as i64).len(), claimed)
        }
        _ => {
            // One previous source, a copy of the triggering one with a sentinel id: its id is
            // the array's first item's first field, right after the item count.
            let (_, source) = fields.iter().find(|(n, _)| n == "diaSource").expect("diaSource").clone();
            let Value::Record(mut source_fields) = source else { panic!("diaSource is a record") };
            set(&mut source_fields, "diaSourceId", Value::Long(LONG_SENTINEL));
            let (_, slot) = fields.iter_mut().find(|(n, _)| n == "prvDiaSources").unwrap();
            *slot = Value::Union(1, Box::new(Value::Array(vec![Value::Record(source_fields)])));
            let datum = encode(value);
            cut_at(&datum, &varint(LONG_SENTINEL), varint(1).len(), claimed)
        }
    };
    let mut out = bytes[..5].to_vec();
    out.extend(datum);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_avro_zigzag() {
        assert_eq!(varint(0), [0]);
        assert_eq!(varint(-1), [1]);
        assert_eq!(varint(1), [2]);
        assert_eq!(varint(64), [0x80, 1]);
        assert_eq!(varint(i64::MAX).len(), 10);
    }
}
