//! Upstream schema ids → local ones, for wire-format (Rubin) alerts.
//!
//! An upstream registry numbers schemas as it likes; Lightkeeper writes every Rubin alert with
//! the id Rubin's convention gives its schema's name (`lsst.v7_1.alert` → 701), which every
//! node resolves. For each upstream id met, once: fetch the upstream schema, derive the local id
//! from its name, and — when a local registry is configured — make sure the local registry holds
//! that very schema under that id (registering it when it is new; a *different* schema under the
//! id is a conflict, and such alerts are dead-lettered rather than written under a wrong id).

use lightkeeper_storage::registry::{convention_id, ConfluentRegistry, RegistryError, SchemaRegistry};
use std::collections::HashMap;
use std::sync::Arc;

/// Why an upstream id cannot be mapped.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// A property of the schema: alerts written with it are dead-lettered.
    #[error("{reason}")]
    Permanent { code: &'static str, reason: String },
    /// A registry could not be reached: the batch is retried.
    #[error("{0}")]
    Transient(String),
}

pub struct SchemaMap {
    upstream: Arc<dyn SchemaRegistry>,
    local: Option<(ConfluentRegistry, String)>,
    mapped: HashMap<u32, u32>,
    /// Schemas this mirror registered with the local registry (the metric itself).
    registered: prometheus_client::metrics::counter::Counter,
}

impl SchemaMap {
    /// `local`: the local registry and the subject to register under; `registered` counts the
    /// schemas registered there.
    pub fn new(
        upstream: Arc<dyn SchemaRegistry>,
        local: Option<(ConfluentRegistry, String)>,
        registered: prometheus_client::metrics::counter::Counter,
    ) -> SchemaMap {
        SchemaMap { upstream, local, mapped: HashMap::new(), registered }
    }

    /// The local id for upstream schema `id`. Blocking (registry round trips, once per id).
    pub fn local_id(&mut self, id: u32) -> Result<u32, MapError> {
        if let Some(local) = self.mapped.get(&id) {
            return Ok(*local);
        }
        let schema = self.upstream.get(id).map_err(|e| match e {
            RegistryError::NotFound(_) => MapError::Permanent {
                code: "unknown_schema",
                reason: format!("upstream schema id {id} is not registered upstream"),
            },
            RegistryError::Invalid { .. } => MapError::Permanent { code: "unsupported_schema", reason: e.to_string() },
            other => MapError::Transient(format!("upstream registry: {other}")),
        })?;
        let name = schema.fullname().unwrap_or_default();
        let local_id = convention_id(&name).ok_or_else(|| MapError::Permanent {
            code: "unsupported_schema",
            reason: format!("upstream schema id {id} is {name:?}, not a Rubin alert schema (lsst.vM_m.alert)"),
        })?;
        if let Some((local, subject)) = &self.local {
            match local.get(local_id) {
                Ok(known) if known.canonical == schema.canonical => {}
                Ok(_) => {
                    return Err(MapError::Permanent {
                        code: "schema_conflict",
                        reason: format!(
                            "upstream schema id {id} ({name}) differs from the local registry's schema {local_id}"
                        ),
                    })
                }
                Err(RegistryError::NotFound(_)) => {
                    let given = local.register(subject, &schema.canonical).map_err(|e| match e {
                        RegistryError::Rejected(reason) => MapError::Permanent { code: "schema_rejected", reason },
                        other => MapError::Transient(format!("local registry: {other}")),
                    })?;
                    if given != local_id {
                        return Err(MapError::Permanent {
                            code: "schema_conflict",
                            reason: format!("the local registry gave {name} id {given}, not {local_id}"),
                        });
                    }
                    self.registered.inc();
                    tracing::info!(upstream_id = id, local_id, schema = %name, "registered a new schema with the local registry");
                }
                Err(e) => return Err(MapError::Transient(format!("local registry: {e}"))),
            }
        }
        if id != local_id {
            tracing::info!(upstream_id = id, local_id, schema = %name, "rewriting schema ids");
        }
        self.mapped.insert(id, local_id);
        Ok(local_id)
    }
}
