//! Schemas registered through a node, kept in a compacted topic every node reads.
//!
//! Why a topic: a cluster must resolve the ids Lightkeeper writes without another service (a
//! mirror registers a new Rubin schema version once, at one node; every partition worker on
//! every node then decodes alerts written with it). The topic is the log all nodes already share,
//! so the registrations survive restarts, reach new nodes, and need no election: ids are not
//! allocated but given by the schema's name ([`convention_id`]), and when two registrations of
//! one id race, the first in the topic wins on every node alike (the loser sees the conflict).
//!
//! One partition; key = the id in decimal, value = a JSON [`Registration`]. A lookup of an id
//! this registry has not seen reads the topic to its end first, so a schema registered a moment
//! before the alert that uses it is always found; a read failure is
//! [`RegistryError::Unreachable`] (transient: the worker retries instead of dead-lettering).

use super::{convention_id, parse_with_named, RegisteredSchema, RegistryError, SchemaRegistry};
use crate::log::{read_to_end, Append, Topic};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One record of the registry topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub id: u32,
    /// The schema as registered: self-contained Parsing Canonical Form.
    pub schema: String,
}

pub struct LogRegistry {
    topic: Arc<dyn Topic>,
    /// The schemas the node has without registration (the shipped versions, `schemas.dir`'s):
    /// an id they hold can be registered only with the very same schema.
    beneath: Arc<dyn SchemaRegistry>,
    /// Everything read so far and where to read on; the lock also serializes catch-ups.
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    next: u64,
    schemas: BTreeMap<u32, Arc<RegisteredSchema>>,
    /// Ids looked up and not found, with when: a stream of alerts under an id nobody registered
    /// costs one catch-up per id per [`MISS_TTL`], not one per alert (bounded by `MAX_MISSES`).
    misses: std::collections::HashMap<u32, std::time::Instant>,
}

/// How long a lookup that found nothing is believed. A mirror registers a schema *before* it
/// writes the first alert that uses it, so that alert's lookup is never a remembered miss.
const MISS_TTL: std::time::Duration = std::time::Duration::from_secs(1);
const MAX_MISSES: usize = 1024;

/// What [`LogRegistry::register`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    /// The schema was appended under this id.
    New(u32),
    /// The same schema was already registered under this id.
    Existing(u32),
}

impl Registered {
    pub fn id(self) -> u32 {
        match self {
            Registered::New(id) | Registered::Existing(id) => id,
        }
    }
}

/// Bound on one schema's text: Rubin's alert schemas are ~30 kB inlined.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;

impl LogRegistry {
    /// Opens the registry over `topic` (partition 0), above the schemas `beneath` it, and reads
    /// what it holds.
    pub fn open(topic: Arc<dyn Topic>, beneath: Arc<dyn SchemaRegistry>) -> Result<LogRegistry, RegistryError> {
        let r = LogRegistry { topic, beneath, loaded: Mutex::new(Loaded::default()) };
        r.catch_up(&mut r.loaded.lock())?;
        Ok(r)
    }

    /// Reads registrations appended since the last catch-up. A record that does not parse is
    /// skipped with a warning (it cannot have been written by a node, which checks first).
    fn catch_up(&self, loaded: &mut Loaded) -> Result<(), RegistryError> {
        let from = loaded.next;
        let schemas = &mut loaded.schemas;
        loaded.next = read_to_end(self.topic.as_ref(), 0, from, |r| {
            match serde_json::from_slice::<Registration>(&r.payload) {
                // The first registration of an id wins, on every node alike.
                Ok(reg) if !schemas.contains_key(&reg.id) => match parse_with_named(reg.id, &reg.schema, &[]) {
                    Ok(s) => {
                        schemas.insert(reg.id, Arc::new(s));
                    }
                    Err(e) => tracing::warn!(offset = r.offset, error = %e, "skipping a registered schema that does not parse"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(offset = r.offset, error = %e, "skipping a registry record that is not a registration"),
            }
            Ok(())
        })
        .map_err(|e| RegistryError::Unreachable(format!("reading registered schemas from {}: {e}", self.topic.name())))?;
        Ok(())
    }

    /// Registers an LSST alert schema under the id its name gives ([`convention_id`]). `schema`
    /// may be any Avro JSON text with its named types inlined; it is stored in canonical form.
    /// Fails with [`RegistryError::Invalid`] when it does not parse, [`RegistryError::Rejected`]
    /// when its name is not `lsst.vM_m.alert`, and [`RegistryError::Conflict`] when the id holds
    /// a different schema — here or in the registry beneath.
    pub fn register(&self, schema: &str) -> Result<Registered, RegistryError> {
        if schema.len() > MAX_SCHEMA_BYTES {
            return Err(RegistryError::Rejected(format!("schema is larger than {MAX_SCHEMA_BYTES} bytes")));
        }
        let parsed = parse_with_named(0, schema, &[])?;
        let name = parsed.fullname().unwrap_or_default();
        let id = convention_id(&name).ok_or_else(|| {
            RegistryError::Rejected(format!(
                "only Rubin alert schemas can be registered here: the top-level record must be named \
                 lsst.v<major>_<minor>.alert (its id is major×100+minor); this one is {name:?}"
            ))
        })?;
        match self.beneath.get(id) {
            Ok(shipped) if shipped.canonical == parsed.canonical => return Ok(Registered::Existing(id)),
            Ok(_) => return Err(RegistryError::Conflict { id }),
            Err(_) => {}
        }
        let mut loaded = self.loaded.lock();
        self.catch_up(&mut loaded)?;
        if let Some(existing) = loaded.schemas.get(&id) {
            return if existing.canonical == parsed.canonical {
                Ok(Registered::Existing(id))
            } else {
                Err(RegistryError::Conflict { id })
            };
        }
        let record = serde_json::to_vec(&Registration { id, schema: parsed.canonical.clone() })
            .expect("a registration serializes");
        let key = id.to_string();
        self.topic
            .append(0, &[Append { key: Some(key.as_bytes()), payload: &record, headers: &[] }])
            .map_err(|e| RegistryError::Unreachable(format!("appending to {}: {e}", self.topic.name())))?;
        // Another node may have registered the id first: the topic's order decides.
        self.catch_up(&mut loaded)?;
        loaded.misses.remove(&id);
        match loaded.schemas.get(&id) {
            Some(s) if s.canonical == parsed.canonical => Ok(Registered::New(id)),
            _ => Err(RegistryError::Conflict { id }),
        }
    }
}

impl SchemaRegistry for LogRegistry {
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let mut loaded = self.loaded.lock();
        if let Some(s) = loaded.schemas.get(&id) {
            return Ok(s.clone());
        }
        if loaded.misses.get(&id).is_some_and(|at| at.elapsed() < MISS_TTL) {
            return Err(RegistryError::NotFound(id));
        }
        self.catch_up(&mut loaded)?;
        if let Some(s) = loaded.schemas.get(&id) {
            return Ok(s.clone());
        }
        if loaded.misses.len() >= MAX_MISSES {
            loaded.misses.clear();
        }
        loaded.misses.insert(id, std::time::Instant::now());
        Err(RegistryError::NotFound(id))
    }

    fn known_ids(&self) -> Vec<u32> {
        self.loaded.lock().schemas.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EmbeddedLog;
    use crate::registry::EmbeddedRegistry;

    /// v7.1 renamed to a version no binary ships, as a mirror would meet it upstream.
    fn future_schema() -> String {
        let v71 = EmbeddedRegistry::published().get(701).unwrap().canonical.clone();
        v71.replace("lsst.v7_1.", "lsst.v99_1.")
    }

    #[test]
    fn registrations_are_read_back_by_another_reader_and_conflicts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let topic = log.topic("schemas", 1).unwrap();
        let shipped: Arc<dyn SchemaRegistry> = Arc::new(EmbeddedRegistry::published());
        let a = LogRegistry::open(topic.clone(), shipped.clone()).unwrap();
        let b = LogRegistry::open(topic.clone(), shipped.clone()).unwrap();

        let schema = future_schema();
        assert_eq!(a.register(&schema).unwrap(), Registered::New(9901));
        assert_eq!(a.register(&schema).unwrap(), Registered::Existing(9901), "registering again is idempotent");
        // `b` has not read since; a lookup of the unknown id catches up.
        let got = b.get(9901).unwrap();
        assert_eq!(got.fullname().as_deref(), Some("lsst.v99_1.alert"));
        assert_eq!(b.known_ids(), vec![9901]);

        let different = schema.replace("\"diaSourceId\"", "\"diaSourceIdX\"");
        assert_ne!(different, schema);
        assert!(matches!(b.register(&different), Err(RegistryError::Conflict { id: 9901 })));
        // A shipped id takes only the shipped schema.
        let v71 = shipped.get(701).unwrap().canonical.clone();
        assert_eq!(a.register(&v71).unwrap(), Registered::Existing(701));
        let altered = v71.replace("\"diaSourceId\"", "\"diaSourceIdX\"");
        assert!(matches!(a.register(&altered), Err(RegistryError::Conflict { id: 701 })));
        let ztf_like = r#"{"type":"record","name":"alert","namespace":"ztf","fields":[]}"#;
        assert!(matches!(a.register(ztf_like), Err(RegistryError::Rejected(_))));
        assert!(matches!(a.register("{not json"), Err(RegistryError::Invalid { .. })));

        // A miss is remembered briefly: the unknown id costs one catch-up, not one per lookup.
        assert!(matches!(a.get(4242), Err(RegistryError::NotFound(4242))));
        let before = a.loaded.lock().next;
        topic.append(0, &[Append { key: Some(b"x"), payload: b"not a registration", headers: &[] }]).unwrap();
        assert!(matches!(a.get(4242), Err(RegistryError::NotFound(4242))));
        assert_eq!(a.loaded.lock().next, before, "a remembered miss reads nothing");
        std::thread::sleep(MISS_TTL);
        assert!(matches!(a.get(4242), Err(RegistryError::NotFound(4242))));
        assert_eq!(a.loaded.lock().next, before + 1, "after the TTL it looks again");

        // A third reader, opened later, sees the first registration only.
        let c = LogRegistry::open(topic, shipped.clone()).unwrap();
        assert_eq!(c.get(9901).unwrap().canonical, got.canonical);
    }
}
