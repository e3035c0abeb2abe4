//! Client of the Confluent Schema Registry REST API (`GET /schemas/ids/{id}`), with schema
//! references resolved through `GET /subjects/{subject}/versions/{version}`. Results are cached
//! for the life of the process: a registered id never changes meaning.

use super::{parse_with_named, RegisteredSchema, RegistryError, SchemaRegistry};
use parking_lot::Mutex;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

pub struct ConfluentRegistry {
    base: String,
    agent: ureq::Agent,
    cache: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    subject: String,
    version: i64,
}

/// Depth bound on nested references (a cycle or a pathological registry must not hang a worker).
const MAX_REFERENCE_DEPTH: usize = 16;

impl ConfluentRegistry {
    pub fn new(base_url: &str, timeout: Duration) -> ConfluentRegistry {
        let agent =
            ureq::Agent::config_builder().timeout_global(Some(timeout)).http_status_as_error(false).build().into();
        ConfluentRegistry { base: base_url.trim_end_matches('/').to_owned(), agent, cache: Mutex::new(HashMap::new()) }
    }

    fn fetch(&self, path: &str) -> Result<Option<SchemaResponse>, RegistryError> {
        let url = format!("{}{}", self.base, path);
        let mut resp = self
            .agent
            .get(&url)
            .header("Accept", "application/vnd.schemaregistry.v1+json")
            .call()
            .map_err(|e| RegistryError::Unreachable(format!("GET {url}: {e}")))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .read_json::<SchemaResponse>()
                .map(Some)
                .map_err(|e| RegistryError::Unreachable(format!("GET {url}: bad body: {e}"))),
            404 => Ok(None),
            status => Err(RegistryError::Unreachable(format!("GET {url}: HTTP {status}"))),
        }
    }

    fn collect_refs(&self, refs: &[Reference], out: &mut Vec<String>, depth: usize) -> Result<(), RegistryError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(RegistryError::Unreachable("schema references nest too deeply".into()));
        }
        for r in refs {
            let path = format!("/subjects/{}/versions/{}", r.subject, r.version);
            let resp = self
                .fetch(&path)?
                .ok_or_else(|| RegistryError::Unreachable(format!("referenced schema {path} not found")))?;
            self.collect_refs(&resp.references, out, depth + 1)?;
            out.push(resp.schema);
        }
        Ok(())
    }
}

impl SchemaRegistry for ConfluentRegistry {
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(s) = self.cache.lock().get(&id) {
            return Ok(s.clone());
        }
        let resp = self.fetch(&format!("/schemas/ids/{id}"))?.ok_or(RegistryError::NotFound(id))?;
        if resp.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
            return Err(RegistryError::Invalid {
                id,
                reason: format!("schema type {:?} is not AVRO", resp.schema_type),
            });
        }
        let mut named = Vec::new();
        self.collect_refs(&resp.references, &mut named, 0)?;
        let schema = Arc::new(parse_with_named(id, &resp.schema, &named)?);
        self.cache.lock().insert(id, schema.clone());
        Ok(schema)
    }

    fn known_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.cache.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
