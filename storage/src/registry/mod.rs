//! Schema registries for the Confluent wire format: schema id → writer schema.
//!
//! Two engines behind one trait: [`EmbeddedRegistry`] holds schema versions laid out as Rubin's
//! `alert_packet` ships them (id = major×100 + minor) — the published ones compiled in, plus a
//! directory of newer ones — and [`ConfluentRegistry`] speaks the Confluent Schema Registry REST
//! API for production, over the compiled-in versions ([`Layered`]). Lookups are synchronous (they
//! run on partition-worker threads or `spawn_blocking`, never on the async runtime) and cached.

mod confluent;
mod embedded;

pub use confluent::ConfluentRegistry;
pub use embedded::EmbeddedRegistry;

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

/// Parses a top-level schema together with the named schemas it refers to.
pub(crate) fn parse_with_named(id: u32, top: &str, named: &[String]) -> Result<RegisteredSchema, RegistryError> {
    let invalid = |e: apache_avro::Error| RegistryError::Invalid { id, reason: e.to_string() };
    if named.is_empty() {
        return Ok(RegisteredSchema { id, schema: Schema::parse_str(top).map_err(invalid)?, named: Vec::new() });
    }
    let mut all: Vec<&str> = named.iter().map(String::as_str).collect();
    all.push(top);
    let mut parsed = Schema::parse_list(&all).map_err(invalid)?;
    let schema = parsed.pop().expect("parse_list returns one schema per input");
    Ok(RegisteredSchema { id, schema, named: parsed })
}
