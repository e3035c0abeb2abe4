//! A decoder compiled from the writer schema: reads the few fields a survey mapper uses straight
//! out of the Avro bytes, and steps over everything else.
//!
//! Why: apache-avro's generic decoder builds a `Value` tree of the whole alert — a `String` for
//! every field name of every record, a `Vec` copy of every image stamp — and then the mapper
//! reads ~40 of its ~1,500 fields. That was 56 % of a worker's time. Here the writer schema is
//! compiled once (per container schema or registry id, cached by the [`Decoder`](super::Decoder))
//! into a [`Plan`]: one [`Op`] per writer field, which either keeps the value in a numbered slot
//! of a [`Layout`] or skips its bytes. Decoding then allocates one `Vec` per kept record or array
//! (the alert, its candidate, each history entry) and borrows every string from the packet.
//!
//! Decoding still follows the writer schema, never a fixed reader schema: ZTF's `schemavsn` does
//! not determine the layout and LSST renames fields between versions, so a [`Layout`] names every
//! spelling of a field and the compiler binds the first one the writer record has — the same
//! rule as [`field`](super::avro_value::field) on the generic tree, which stays as the reference
//! this decoder is tested against (`storage/tests/decode_equivalence.rs`).
//!
//! Bounds: every length is checked against the bytes left before anything is read, an array
//! reserves at most one slot per remaining byte, and items that take no bytes at all are
//! limited to [`MAX_EMPTY_ITEMS`], so a few hundred bytes claiming a huge string, array or block
//! are refused without allocating for the claim.

use super::DecodeError;
use apache_avro::schema::{Name, NamesRef, Namespace, ResolvedSchema};
use apache_avro::Schema;
use std::sync::Arc;

/// What a mapper reads from one record layout: its slots, in index order.
#[derive(Debug)]
pub struct Layout {
    pub slots: &'static [Want],
}

/// One slot: the field's spellings, in order of preference, and — when the field is a record,
/// or an array of records — the layout of that record.
#[derive(Debug)]
pub struct Want {
    pub names: &'static [&'static str],
    pub sub: Option<&'static Layout>,
}

/// A slot's index in its layout and its spellings (the generic reader looks fields up by name).
#[derive(Debug, Clone, Copy)]
pub struct Slot {
    pub index: usize,
    pub names: &'static [&'static str],
}

/// Declares a record layout as a module: a [`Slot`] constant per field and the `LAYOUT` static
/// the compiler reads. `FIELD: ["spelling", "old spelling"] => sub_layout` (the `=>` part for
/// records and arrays of records).
macro_rules! layout {
    ($(#[$meta:meta])* $vis:vis mod $name:ident { $($slot:ident : [$($spelling:literal),+ $(,)?] $(=> $sub:ident)?),* $(,)? }) => {
        $(#[$meta])*
        #[allow(dead_code)]
        $vis mod $name {
            use $crate::codec::projection::{Layout, Slot, Want};
            #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
            enum Index { $($slot),* }
            $(pub const $slot: Slot = Slot { index: Index::$slot as usize, names: &[$($spelling),+] };)*
            pub static LAYOUT: Layout = Layout {
                slots: &[$(Want { names: &[$($spelling),+], sub: $crate::codec::projection::layout!(@sub $($sub)?) }),*],
            };
        }
    };
    (@sub) => { None };
    (@sub $sub:ident) => { Some(&super::$sub::LAYOUT) };
}
pub(crate) use layout;

/// Arrays whose items take no bytes (a record of nulls) are still bounded: at most this many.
pub const MAX_EMPTY_ITEMS: usize = 1 << 16;
/// Deepest nesting of records, arrays and unions a writer schema may have (alerts have 4).
const MAX_DEPTH: usize = 32;

/// A value read out of the packet. Strings and bytes are borrowed from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Val<'a> {
    Null,
    Bool(bool),
    /// `int` or `long`.
    Long(i64),
    /// `float` or `double`.
    Double(f64),
    /// `string`, or an `enum`'s symbol.
    Str(&'a str),
    /// `bytes` or `fixed`.
    Bytes(&'a [u8]),
    /// A record: its layout's slots (absent fields stay `Null`), and which slots the writer
    /// schema has at all.
    Record(Rec<'a>),
    /// An array a layout keeps.
    Array(Vec<Val<'a>>),
    /// Anything a mapper does not read as a value (logical types, maps, arrays of scalars).
    Other,
}

/// A kept record.
#[derive(Debug, Clone, PartialEq)]
pub struct Rec<'a> {
    pub vals: Box<[Val<'a>]>,
    /// Bit `i` is set when the writer record has a field for slot `i` (even if its value is null).
    pub present: u64,
}

/// How to read one writer value.
#[derive(Debug)]
enum Op {
    Null,
    Bool,
    Int,
    Long,
    Float,
    Double,
    String,
    Bytes,
    Fixed(usize),
    Enum(Arc<[String]>),
    /// A logical type over `int`/`long` (dates, times, timestamps): read, not kept.
    LongOther,
    /// A logical type over `bytes` (decimal, UUID): read, not kept.
    BytesOther,
    Union(Vec<Op>),
    Array {
        items: Box<Op>,
        keep: bool,
    },
    Map(Box<Op>),
    Record(RecordPlan),
}

#[derive(Debug)]
struct RecordPlan {
    /// One per writer field, in writer order: the slot it fills, if any.
    fields: Vec<(Option<usize>, Op)>,
    /// Slots of the layout (0 when the record is only skipped).
    width: usize,
    present: u64,
}

/// A writer schema compiled against a layout.
#[derive(Debug)]
pub struct Plan {
    root: Op,
}

impl Plan {
    /// Compiles `schema` (its references resolved against `named`, or against itself when empty)
    /// for `layout`. Fails only on a schema that cannot be decoded at all (a dangling reference,
    /// recursion deeper than alerts ever nest).
    pub fn compile(schema: &Schema, named: &[Schema], layout: &'static Layout) -> Result<Plan, String> {
        let schemata: Vec<&Schema> = if named.is_empty() { vec![schema] } else { named.iter().collect() };
        let resolved = ResolvedSchema::try_from(schemata).map_err(|e| e.to_string())?;
        let compiler = Compiler { names: resolved.get_names() };
        Ok(Plan { root: compiler.op(schema, Some(layout), &None, 0)? })
    }

    /// Decodes one datum. Trailing bytes are the caller's to judge (see [`Plan::decode_all`]).
    pub fn decode<'a>(&'a self, buf: &mut &'a [u8]) -> Result<Val<'a>, DecodeError> {
        read(&self.root, buf).map_err(DecodeError::Corrupt)
    }

    /// Decodes one datum that must span all of `bytes`.
    pub fn decode_all<'a>(&'a self, bytes: &'a [u8]) -> Result<Val<'a>, DecodeError> {
        let mut buf = bytes;
        let val = self.decode(&mut buf)?;
        if !buf.is_empty() {
            return Err(DecodeError::Corrupt(format!("{} trailing bytes after the alert record", buf.len())));
        }
        Ok(val)
    }
}

struct Compiler<'s> {
    names: &'s NamesRef<'s>,
}

impl Compiler<'_> {
    fn op(&self, schema: &Schema, want: Option<&'static Layout>, ns: &Namespace, depth: usize) -> Result<Op, String> {
        if depth > MAX_DEPTH {
            return Err(format!("the schema nests deeper than {MAX_DEPTH} levels"));
        }
        Ok(match schema {
            Schema::Null => Op::Null,
            Schema::Boolean => Op::Bool,
            Schema::Int => Op::Int,
            Schema::Long => Op::Long,
            Schema::Float => Op::Float,
            Schema::Double => Op::Double,
            Schema::String => Op::String,
            Schema::Bytes => Op::Bytes,
            Schema::Fixed(f) => Op::Fixed(f.size),
            Schema::Enum(e) => Op::Enum(e.symbols.clone().into()),
            Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Op::LongOther,
            Schema::Decimal(d) => match &*d.inner {
                Schema::Fixed(f) => Op::Fixed(f.size),
                _ => Op::BytesOther,
            },
            Schema::BigDecimal | Schema::Uuid => Op::BytesOther,
            Schema::Duration => Op::Fixed(12),
            Schema::Union(u) => {
                Op::Union(u.variants().iter().map(|v| self.op(v, want, ns, depth + 1)).collect::<Result<_, _>>()?)
            }
            Schema::Array(a) => {
                Op::Array { items: Box::new(self.op(&a.items, want, ns, depth + 1)?), keep: want.is_some() }
            }
            Schema::Map(m) => Op::Map(Box::new(self.op(&m.types, None, ns, depth + 1)?)),
            Schema::Record(r) => {
                let inner_ns = r.name.fully_qualified_name(ns).namespace;
                let mut fields: Vec<(Option<usize>, Op)> = Vec::with_capacity(r.fields.len());
                let mut slot_of = vec![None; r.fields.len()];
                let mut present = 0u64;
                if let Some(layout) = want {
                    if layout.slots.len() > 64 {
                        return Err("a layout has more than 64 slots".into());
                    }
                    for (i, w) in layout.slots.iter().enumerate() {
                        // The first spelling the writer has wins, as in the generic reader.
                        if let Some(pos) = w.names.iter().find_map(|n| r.lookup.get(*n).copied()) {
                            slot_of[pos] = Some((i, w.sub));
                            present |= 1 << i;
                        }
                    }
                }
                for (field, slot) in r.fields.iter().zip(slot_of) {
                    let op = self.op(&field.schema, slot.and_then(|(_, sub)| sub), &inner_ns, depth + 1)?;
                    fields.push((slot.map(|(i, _)| i), op));
                }
                Op::Record(RecordPlan { fields, width: want.map_or(0, |l| l.slots.len()), present })
            }
            Schema::Ref { name } => {
                let full: Name = name.fully_qualified_name(ns);
                let target = self.names.get(&full).ok_or_else(|| format!("undefined type {full}"))?;
                self.op(target, want, &full.namespace, depth + 1)?
            }
        })
    }
}

/// An Avro `long` (zig-zag varint). Shared with the container framing in `mod.rs`.
pub(super) fn read_long(buf: &mut &[u8]) -> Result<i64, String> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err("varint longer than 10 bytes".into())
}

fn read_int(buf: &mut &[u8]) -> Result<i64, String> {
    let v = read_long(buf)?;
    i32::try_from(v).map(i64::from).map_err(|_| format!("int {v} out of range"))
}

fn take<'a>(buf: &mut &'a [u8], len: usize) -> Result<&'a [u8], String> {
    if buf.len() < len {
        return Err(format!("length {len} runs past the end ({} bytes left)", buf.len()));
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Avro `bytes`: a length, then that many bytes, borrowed.
pub(super) fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
    let len = read_long(buf)?;
    let len = usize::try_from(len).map_err(|_| format!("negative length {len}"))?;
    take(buf, len)
}

fn read_str<'a>(buf: &mut &'a [u8]) -> Result<&'a str, String> {
    std::str::from_utf8(read_bytes(buf)?).map_err(|e| format!("string is not utf-8: {e}"))
}

/// The next block's item count of an array or map (0 ends it); a negative count is followed by
/// the block's size in bytes, which is not needed.
fn block_count(buf: &mut &[u8]) -> Result<usize, String> {
    let n = read_long(buf)?;
    if n < 0 {
        read_long(buf)?;
    }
    usize::try_from(n.unsigned_abs()).map_err(|_| format!("block count {n} out of range"))
}

fn union_branch<'o>(variants: &'o [Op], buf: &mut &[u8]) -> Result<&'o Op, String> {
    let index = read_long(buf)?;
    usize::try_from(index)
        .ok()
        .and_then(|i| variants.get(i))
        .ok_or_else(|| format!("union index {index} out of range ({} branches)", variants.len()))
}

/// Items an array block may claim: never more than the bytes left when every item takes at
/// least one byte, and [`MAX_EMPTY_ITEMS`] in all otherwise.
fn check_count(count: usize, seen: usize, items: &Op, left: usize) -> Result<(), String> {
    if min_size(items) == 0 {
        if seen + count > MAX_EMPTY_ITEMS {
            return Err(format!("an array claims more than {MAX_EMPTY_ITEMS} items that take no bytes"));
        }
    } else if count > left {
        return Err(format!("an array block claims {count} items with {left} bytes left"));
    }
    Ok(())
}

/// The fewest bytes a value of this op can take.
fn min_size(op: &Op) -> usize {
    match op {
        Op::Null => 0,
        Op::Float => 4,
        Op::Double => 8,
        Op::Fixed(n) => *n,
        Op::Union(_) | Op::Bool | Op::Int | Op::Long | Op::LongOther | Op::Enum(_) => 1,
        Op::String | Op::Bytes | Op::BytesOther | Op::Array { .. } | Op::Map(_) => 1,
        Op::Record(r) => r.fields.iter().map(|(_, op)| min_size(op)).sum(),
    }
}

fn read<'a>(op: &'a Op, buf: &mut &'a [u8]) -> Result<Val<'a>, String> {
    Ok(match op {
        Op::Null => Val::Null,
        Op::Bool => match take(buf, 1)?[0] {
            0 => Val::Bool(false),
            1 => Val::Bool(true),
            b => return Err(format!("invalid boolean byte {b}")),
        },
        Op::Int => Val::Long(read_int(buf)?),
        Op::Long => Val::Long(read_long(buf)?),
        Op::Float => Val::Double(f64::from(f32::from_le_bytes(take(buf, 4)?.try_into().expect("4 bytes")))),
        Op::Double => Val::Double(f64::from_le_bytes(take(buf, 8)?.try_into().expect("8 bytes"))),
        Op::String => Val::Str(read_str(buf)?),
        Op::Bytes => Val::Bytes(read_bytes(buf)?),
        Op::Fixed(n) => Val::Bytes(take(buf, *n)?),
        Op::Enum(symbols) => {
            let i = read_int(buf)?;
            let symbol = usize::try_from(i).ok().and_then(|i| symbols.get(i));
            Val::Str(symbol.ok_or_else(|| format!("enum index {i} out of range ({} symbols)", symbols.len()))?)
        }
        Op::Union(variants) => read(union_branch(variants, buf)?, buf)?,
        Op::Array { items, keep: true } => {
            let mut out = Vec::new();
            loop {
                let count = block_count(buf)?;
                if count == 0 {
                    break;
                }
                check_count(count, out.len(), items, buf.len())?;
                out.reserve(count);
                for _ in 0..count {
                    out.push(read(items, buf)?);
                }
            }
            Val::Array(out)
        }
        Op::Record(r) if r.width > 0 => {
            let mut vals = vec![Val::Null; r.width].into_boxed_slice();
            for (slot, op) in &r.fields {
                match slot {
                    Some(i) => vals[*i] = read(op, buf)?,
                    None => skip(op, buf)?,
                }
            }
            Val::Record(Rec { vals, present: r.present })
        }
        Op::Record(_) => {
            skip(op, buf)?;
            Val::Record(Rec { vals: Box::default(), present: 0 })
        }
        Op::LongOther | Op::BytesOther | Op::Map(_) | Op::Array { keep: false, .. } => {
            skip(op, buf)?;
            Val::Other
        }
    })
}

/// Steps over a value without keeping it (strings are not checked for UTF-8: nothing reads them).
fn skip(op: &Op, buf: &mut &[u8]) -> Result<(), String> {
    match op {
        Op::Null => {}
        Op::Bool => {
            take(buf, 1)?;
        }
        Op::Int | Op::Long | Op::LongOther | Op::Enum(_) => {
            read_long(buf)?;
        }
        Op::Float => {
            take(buf, 4)?;
        }
        Op::Double => {
            take(buf, 8)?;
        }
        Op::String | Op::Bytes | Op::BytesOther => {
            read_bytes(buf)?;
        }
        Op::Fixed(n) => {
            take(buf, *n)?;
        }
        Op::Union(variants) => skip(union_branch(variants, buf)?, buf)?,
        Op::Array { items, .. } => {
            let mut seen = 0;
            loop {
                let count = block_count(buf)?;
                if count == 0 {
                    break;
                }
                check_count(count, seen, items, buf.len())?;
                seen += count;
                for _ in 0..count {
                    skip(items, buf)?;
                }
            }
        }
        Op::Map(values) => loop {
            let count = block_count(buf)?;
            if count == 0 {
                break;
            }
            // Every entry has at least its key's length byte.
            if count > buf.len() {
                return Err(format!("a map block claims {count} entries with {} bytes left", buf.len()));
            }
            for _ in 0..count {
                read_bytes(buf)?;
                skip(values, buf)?;
            }
        },
        Op::Record(r) => {
            for (_, op) in &r.fields {
                skip(op, buf)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    layout! {
        mod doc {
            X: ["x"],
            NAME: ["name", "old_name"],
            ITEMS: ["items"] => doc,
        }
    }

    fn plan(schema: &str) -> Plan {
        Plan::compile(&Schema::parse_str(schema).unwrap(), &[], &doc::LAYOUT).unwrap()
    }

    fn varint(n: i64) -> Vec<u8> {
        let mut z = ((n << 1) ^ (n >> 63)) as u64;
        let mut out = Vec::new();
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
        out
    }

    #[test]
    fn keeps_wanted_fields_by_first_spelling_and_skips_the_rest() {
        let p = plan(
            r#"{"type":"record","name":"r","fields":[
                {"name":"skipped","type":{"type":"array","items":"string"}},
                {"name":"old_name","type":"string"},
                {"name":"x","type":["null","double"]},
                {"name":"m","type":{"type":"map","values":"long"}}]}"#,
        );
        let mut bytes = varint(2);
        for item in [b'a', b'b'] {
            bytes.extend(varint(1));
            bytes.push(item);
        }
        bytes.extend(varint(0)); // end of array
        bytes.extend(varint(3));
        bytes.extend_from_slice(b"abc");
        bytes.extend(varint(1));
        bytes.extend_from_slice(&2.5f64.to_le_bytes());
        bytes.extend(varint(1));
        bytes.extend(varint(1));
        bytes.push(b'k');
        bytes.extend(varint(7));
        bytes.extend(varint(0));
        let Val::Record(rec) = plan_decode(&p, &bytes) else { panic!("not a record") };
        assert_eq!(rec.vals[doc::X.index], Val::Double(2.5));
        assert_eq!(rec.vals[doc::NAME.index], Val::Str("abc"));
        assert_eq!(rec.vals[doc::ITEMS.index], Val::Null);
        assert_eq!(rec.present, 0b011);
    }

    fn plan_decode<'a>(p: &'a Plan, bytes: &'a [u8]) -> Val<'a> {
        p.decode_all(bytes).unwrap()
    }

    fn refused(schema: &str, bytes: &[u8]) -> String {
        match plan(schema).decode_all(bytes) {
            Err(DecodeError::Corrupt(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn lengths_and_counts_beyond_the_packet_are_refused_without_allocating_for_them() {
        let huge = [1i64 << 28, 1 << 40, i64::MAX];
        for claim in huge {
            let mut bytes = varint(claim);
            bytes.extend_from_slice(&[2; 200]);
            let string = r#"{"type":"record","name":"r","fields":[{"name":"name","type":"string"}]}"#;
            assert!(refused(string, &bytes).contains("runs past the end"));
            let bytes_field = r#"{"type":"record","name":"r","fields":[{"name":"x","type":"bytes"}]}"#;
            assert!(refused(bytes_field, &bytes).contains("runs past the end"));
            // Arrays, kept or skipped, and maps.
            for items in [r#"{"type":"array","items":"long"}"#, r#"{"type":"array","items":"null"}"#] {
                let kept = format!(r#"{{"type":"record","name":"r","fields":[{{"name":"items","type":{items}}}]}}"#);
                let skipped = format!(r#"{{"type":"record","name":"r","fields":[{{"name":"y","type":{items}}}]}}"#);
                assert!(refused(&kept, &bytes).contains("claims"), "{kept}");
                assert!(refused(&skipped, &bytes).contains("claims"), "{skipped}");
            }
            let map = r#"{"type":"record","name":"r","fields":[{"name":"y","type":{"type":"map","values":"null"}}]}"#;
            assert!(refused(map, &bytes).contains("claims"));
            // A negative block count (followed by the block's byte size) is held to the same bound.
            let mut negative = varint(-claim.min(i64::MAX - 1));
            negative.extend(varint(5));
            negative.extend_from_slice(&[2; 200]);
            let kept =
                r#"{"type":"record","name":"r","fields":[{"name":"items","type":{"type":"array","items":"long"}}]}"#;
            assert!(refused(kept, &negative).contains("claims"));
        }
    }

    #[test]
    fn bad_union_and_enum_indexes_and_trailing_bytes_are_refused() {
        let union = r#"{"type":"record","name":"r","fields":[{"name":"x","type":["null","double"]}]}"#;
        assert!(refused(union, &varint(2)).contains("union index 2"));
        assert!(refused(union, &varint(-1)).contains("union index -1"));
        let e = r#"{"type":"record","name":"r","fields":[{"name":"name","type":{"type":"enum","name":"e","symbols":["a"]}}]}"#;
        assert!(refused(e, &varint(1)).contains("enum index 1"));
        let mut ok = varint(0);
        ok.push(9);
        assert!(refused(union, &ok).contains("1 trailing bytes"));
    }
}
