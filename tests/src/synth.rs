//! Real-size synthetic alerts for benchmarks: real shared packets (cutouts included) re-issued
//! under new object ids and candids, re-encoded as Avro container files with their own writer
//! schema — byte sizes and decode costs of the real thing.

use apache_avro::types::Value;
use apache_avro::{Reader, Schema, Writer};
use std::path::Path;

pub struct Template {
    schema: Schema,
    value: Value,
}

/// Loads ZTF templates (one record each) from the `.avro` files below `dir`.
pub fn load_templates(dir: &Path, max: usize) -> Vec<Template> {
    crate::avro_files(dir)
        .into_iter()
        .take(max)
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            let reader = Reader::new(&bytes[..]).unwrap();
            let schema = reader.writer_schema().clone();
            let value = reader.into_iter().next().unwrap().unwrap();
            Template { schema, value }
        })
        .collect()
}

fn set(fields: &mut [(String, Value)], name: &str, v: Value) {
    if let Some((_, slot)) = fields.iter_mut().find(|(n, _)| n == name) {
        *slot = match slot {
            Value::Union(i, _) => Value::Union(*i, Box::new(v)),
            _ => v,
        };
    }
}

/// The template re-issued as alert `candid` of object `object_id`.
pub fn reissue(t: &Template, object_id: &str, candid: i64) -> Vec<u8> {
    reissue_with(t, object_id, candid, None)
}

/// Like [`reissue`], at a new position: the candidate's `ra`/`dec` (degrees), which is where the
/// object is (its history entries keep theirs; the object's position is its latest alert's).
pub fn reissue_at(t: &Template, object_id: &str, candid: i64, ra: f64, dec: f64) -> Vec<u8> {
    reissue_with(t, object_id, candid, Some((ra, dec)))
}

fn reissue_with(t: &Template, object_id: &str, candid: i64, position: Option<(f64, f64)>) -> Vec<u8> {
    let mut value = t.value.clone();
    if let Value::Record(fields) = &mut value {
        set(fields, "objectId", Value::String(object_id.to_owned()));
        set(fields, "candid", Value::Long(candid));
        if let Some((_, Value::Record(c))) = fields.iter_mut().find(|(n, _)| n == "candidate") {
            set(c, "candid", Value::Long(candid));
            if let Some((ra, dec)) = position {
                set(c, "ra", Value::Double(ra));
                set(c, "dec", Value::Double(dec));
            }
        }
    }
    let mut w = Writer::new(&t.schema, Vec::new());
    w.append(value).unwrap();
    w.into_inner().unwrap()
}

/// A copy of `t` as small as a ZTF alert can be, for loads of millions of objects (the test
/// broker keeps every byte in memory): the same `ztf.alert` record with its whole `candidate`
/// (every field, the real values), but without the history (`prv_candidates`, `fp_hists`) and
/// the cutouts, and the writer schema in its Parsing Canonical Form (no docs). About 5 kB instead
/// of ~60 kB, most of it the schema every container carries. An object made from it has one
/// detection and the summary a real alert of that candidate gives; re-issue it with
/// [`reissue`] or [`reissue_at`].
pub fn lean(t: &Template) -> Template {
    const DROPPED: [&str; 5] = ["prv_candidates", "fp_hists", "cutoutScience", "cutoutTemplate", "cutoutDifference"];
    let mut json = serde_json::to_value(&t.schema).expect("a schema serializes");
    if let Some(fields) = json.get_mut("fields").and_then(serde_json::Value::as_array_mut) {
        fields.retain(|f| !f.get("name").and_then(serde_json::Value::as_str).is_some_and(|n| DROPPED.contains(&n)));
    }
    let pruned = Schema::parse(&json).expect("the pruned schema parses");
    let schema = Schema::parse_str(&pruned.canonical_form()).expect("the canonical form parses");
    let mut value = t.value.clone();
    if let Value::Record(fields) = &mut value {
        fields.retain(|(n, _)| !DROPPED.contains(&n.as_str()));
    }
    Template { schema, value }
}

/// Like [`reissue`], but the history detections get fresh candids too (`history_base + j`), so
/// every re-issued alert adds its whole history as new points — large updates on demand.
pub fn reissue_with_fresh_history(t: &Template, object_id: &str, candid: i64, history_base: i64) -> Vec<u8> {
    let mut value = t.value.clone();
    if let Value::Record(fields) = &mut value {
        set(fields, "objectId", Value::String(object_id.to_owned()));
        set(fields, "candid", Value::Long(candid));
        for (name, v) in fields.iter_mut() {
            match (name.as_str(), v) {
                ("candidate", Value::Record(c)) => set(c, "candid", Value::Long(candid)),
                ("prv_candidates", Value::Union(_, items)) => {
                    if let Value::Array(items) = items.as_mut() {
                        for (j, item) in items.iter_mut().enumerate() {
                            if let Value::Record(p) = item {
                                let has_candid = p.iter().any(|(n, v)| {
                                    n == "candid" && !matches!(v, Value::Union(_, b) if matches!(**b, Value::Null))
                                });
                                if has_candid {
                                    set(p, "candid", Value::Long(history_base + j as i64));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut w = Writer::new(&t.schema, Vec::new());
    w.append(value).unwrap();
    w.into_inner().unwrap()
}

/// A number in the template's `candidate` record (`magpsf`, `ra`, …), read from the template's
/// own Avro value: what a reference expects the node to report for a re-issued alert.
pub fn candidate_number(t: &Template, name: &str) -> Option<f64> {
    fn number(v: &Value) -> Option<f64> {
        match v {
            Value::Double(x) => Some(*x),
            Value::Float(x) => Some(f64::from(*x)),
            Value::Long(x) => Some(*x as f64),
            Value::Int(x) => Some(f64::from(*x)),
            Value::Union(_, b) => number(b),
            _ => None,
        }
    }
    let Value::Record(fields) = &t.value else { return None };
    let (_, Value::Record(c)) = fields.iter().find(|(n, _)| n == "candidate")? else { return None };
    number(&c.iter().find(|(n, _)| n == name)?.1)
}

/// A ZTF-like object id for index `i`.
pub fn object_id(i: usize) -> String {
    let mut s = String::new();
    let mut n = i;
    for _ in 0..7 {
        s.push((b'a' + (n % 26) as u8) as char);
        n /= 26;
    }
    format!("ZTF99{s}")
}

/// Writes `n` re-issued alerts of `n / per_object` new objects (ids from `object_id(first)`)
/// to files in `dir` (for the Python producer and the fastavro reference), candids from
/// `candid_base`.
pub fn write_alerts(
    dir: &Path,
    n: usize,
    per_object: usize,
    first: usize,
    candid_base: i64,
) -> Vec<std::path::PathBuf> {
    let templates = load_templates(&crate::shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 16);
    std::fs::create_dir_all(dir).unwrap();
    (0..n)
        .map(|i| {
            let path = dir.join(format!("synthetic-{i:06}.avro"));
            let packet =
                reissue(&templates[i % templates.len()], &object_id(first + i / per_object), candid_base + i as i64);
            std::fs::write(&path, packet).unwrap();
            path
        })
        .collect()
}
