//! Schema registries for the Confluent wire format: schema id → writer schema.
//!
//! Three engines behind one trait:
//! - [`EmbeddedRegistry`] holds schema versions laid out as Rubin's `alert_packet` ships them
//!   (id = major×100 + minor, [`convention_id`]): the published ones compiled in, plus a
//!   directory of newer ones;
//! - [`ConfluentRegistry`] speaks the Confluent Schema Registry REST API (HTTPS, basic auth),
//!   for production and for a mirror's upstream;
//! - [`LogRegistry`] keeps the schemas registered *through a node* (a mirror meeting a version
//!   the binary does not ship) in a compacted topic every node reads, so a cluster is its own
//!   registry without another service.
//!
//! [`Layered`] chains them. Lookups are synchronous (they run on partition-worker threads or
//! `spawn_blocking`, never on the async runtime) and cached.

mod confluent;
mod embedded;
mod log;

pub use confluent::{ConfluentRegistry, RegistryAuth};
pub use embedded::EmbeddedRegistry;
pub use log::{LogRegistry, Registered, Registration};

use crate::codec::untrusted;
use apache_avro::Schema;
use std::sync::Arc;

/// A writer schema with the named types it refers to.
#[derive(Debug)]
pub struct RegisteredSchema {
    pub id: u32,
    /// The top-level (alert) schema.
    pub schema: Schema,
    /// Named types the top-level schema refers to (LSST splits its schema over several files).
    pub named: Vec<Schema>,
    /// The schema's Parsing Canonical Form with every named type inlined: one self-contained
    /// JSON text any Avro library parses alone. What the registry routes serve, and what two
    /// registrations are compared by.
    pub canonical: String,
}

impl RegisteredSchema {
    /// The top-level schema's full name (`lsst.v7_1.alert`), if it is a named type.
    pub fn fullname(&self) -> Option<String> {
        match &self.schema {
            Schema::Record(r) => Some(r.name.fullname(None)),
            _ => None,
        }
    }
}

/// The id Rubin's convention gives an alert schema by its name: `lsst.vM_m.alert` → M×100 + m
/// (`lsst.v7_1.alert` → 701). `None` for any other name. Every LSST schema this project writes
/// or registers carries the id of this convention, whatever id an upstream registry used.
pub fn convention_id(fullname: &str) -> Option<u32> {
    let v = fullname.strip_prefix("lsst.v")?.strip_suffix(".alert")?;
    let (major, minor) = v.split_once('_')?;
    let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
    (minor < 100 && major < 40_000_000).then_some(major * 100 + minor)
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema id {0} is not registered")]
    NotFound(u32),
    #[error("schema {id} does not parse: {reason}")]
    Invalid { id: u32, reason: String },
    #[error("schema registry unreachable: {0}")]
    Unreachable(String),
    #[error("reading schema directory {path}: {reason}")]
    Directory { path: String, reason: String },
    /// A registration names an id already registered with a different schema.
    #[error("schema id {id} is already registered with a different schema")]
    Conflict { id: u32 },
    /// A registration this registry cannot take (why is in words).
    #[error("{0}")]
    Rejected(String),
}

pub trait SchemaRegistry: Send + Sync {
    /// The schema registered under `id`.
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError>;
    /// The ids this registry knows without a network round trip (for `/v1/cluster` and logs).
    fn known_ids(&self) -> Vec<u32>;
}

/// A registry asked first, and another asked for the ids the first does not know: a
/// Confluent registry over the published versions shipped in the binary, so a known version
/// decodes even when the registry lacks it.
pub struct Layered {
    pub first: Arc<dyn SchemaRegistry>,
    pub then: Arc<dyn SchemaRegistry>,
}

impl SchemaRegistry for Layered {
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        match self.first.get(id) {
            Err(RegistryError::NotFound(_)) => self.then.get(id),
            other => other,
        }
    }

    fn known_ids(&self) -> Vec<u32> {
        let mut ids = self.first.known_ids();
        ids.extend(self.then.known_ids());
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// Parses one self-contained schema text (a registration), with no id yet.
pub fn parse_schema(text: &str) -> Result<RegisteredSchema, RegistryError> {
    parse_with_named(0, text, &[])
}

/// Parses a top-level schema together with the named schemas it refers to.
pub(crate) fn parse_with_named(id: u32, top: &str, named: &[String]) -> Result<RegisteredSchema, RegistryError> {
    let invalid = |reason: String| RegistryError::Invalid { id, reason };
    let (schema, named) = if named.is_empty() {
        (untrusted::parse_str(top).map_err(invalid)?, Vec::new())
    } else {
        let mut all: Vec<&str> = named.iter().map(String::as_str).collect();
        all.push(top);
        let mut parsed = untrusted::parse_list(&all).map_err(invalid)?;
        let schema = parsed.pop().expect("parse_list returns one schema per input");
        (schema, parsed)
    };
    let canonical = self_contained(&schema, &named).map_err(|reason| RegistryError::Invalid { id, reason })?;
    Ok(RegisteredSchema { id, schema, named, canonical })
}

/// The schema's Parsing Canonical Form with each named type it refers to defined inline at its
/// first use (as Avro requires), so the text parses with no other schema. (apache-avro's
/// `independent_canonical_form` leaves references to types parsed from sibling files
/// unresolved, which is every Rubin schema.)
fn self_contained(top: &Schema, named: &[Schema]) -> Result<String, String> {
    use serde_json::Value;
    if named.is_empty() {
        return Ok(top.canonical_form());
    }
    let mut defs = std::collections::HashMap::new();
    for s in named {
        if let Some(name) = s.name() {
            defs.insert(name.fullname(None), serde_json::to_value(s).map_err(|e| e.to_string())?);
        }
    }
    fn walk(
        v: &mut Value,
        defs: &std::collections::HashMap<String, Value>,
        defined: &mut std::collections::HashSet<String>,
    ) {
        match v {
            Value::String(name) => {
                if let Some(def) = defs.get(name.as_str()) {
                    if defined.insert(name.clone()) {
                        let mut def = def.clone();
                        walk(&mut def, defs, defined);
                        *v = def;
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| walk(i, defs, defined)),
            Value::Object(map) => {
                // Only type positions: a record's own "name" must stay a name.
                for key in ["type", "items", "values", "fields"] {
                    if let Some(inner) = map.get_mut(key) {
                        walk(inner, defs, defined);
                    }
                }
            }
            _ => {}
        }
    }
    let mut json = serde_json::to_value(top).map_err(|e| e.to_string())?;
    walk(&mut json, &defs, &mut std::collections::HashSet::new());
    let alone = untrusted::parse_str(&json.to_string()).map_err(|e| format!("inlining its named types: {e}"))?;
    Ok(alone.canonical_form())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convention_ids_follow_the_name() {
        assert_eq!(convention_id("lsst.v7_1.alert"), Some(701));
        assert_eq!(convention_id("lsst.v11_0.alert"), Some(1100));
        assert_eq!(convention_id("lsst.v7_1.diaSource"), None);
        assert_eq!(convention_id("ztf.alert"), None);
        assert_eq!(convention_id("lsst.v7_100.alert"), None, "a minor of 100 would collide with the next major");
        assert_eq!(convention_id("lsst.vx_1.alert"), None);
    }

    #[test]
    fn canonical_form_inlines_named_types_and_parses_alone() {
        let published = EmbeddedRegistry::published();
        let s = published.get(701).unwrap();
        assert_eq!(s.fullname().as_deref(), Some("lsst.v7_1.alert"));
        let alone = Schema::parse_str(&s.canonical).expect("the canonical form parses with no other schema");
        assert_eq!(alone.canonical_form(), s.canonical);
    }

    #[test]
    fn a_self_contained_schema_decodes_what_the_split_one_does() {
        use crate::codec::Decoder;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/lsst/alerts");
        for (file, id) in [("boom/25409136044802067.avro", 701), ("boom/7912941781254298.avro", 900)] {
            let packet = std::fs::read(dir.join(file)).expect("the shared data is beside the repository");
            let published = EmbeddedRegistry::published();
            let alone = parse_schema(&published.get(id).unwrap().canonical).unwrap();
            struct One(Arc<RegisteredSchema>);
            impl SchemaRegistry for One {
                fn get(&self, _: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
                    Ok(self.0.clone())
                }
                fn known_ids(&self) -> Vec<u32> {
                    vec![self.0.id]
                }
            }
            let split = Decoder::new(Arc::new(published)).decode(&packet).unwrap();
            let inlined = Decoder::new(Arc::new(One(Arc::new(alone)))).decode(&packet).unwrap();
            assert_eq!(split, inlined, "{file}");
        }
    }
}
