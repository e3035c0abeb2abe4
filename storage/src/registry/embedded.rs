//! A registry of schema versions laid out as in `lsst/alert_packet`: `<major>.<minor>/*.avsc`,
//! the id of version M.m being M×100 + m. Two sources: the published Rubin versions compiled
//! into the binary ([`EmbeddedRegistry::published`], from `storage/schemas/lsst/`, see its
//! `SOURCE.md`), so a node with no schema settings decodes Rubin alerts, and a directory
//! ([`EmbeddedRegistry::from_dir`]) for versions published since, laid over them.

use super::{parse_with_named, RegisteredSchema, RegistryError, SchemaRegistry};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Every published LSST alert schema version, as shipped (`storage/schemas/lsst/`).
static PUBLISHED: include_dir::Dir<'_> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/schemas/lsst");

pub struct EmbeddedRegistry {
    schemas: BTreeMap<u32, Arc<RegisteredSchema>>,
}

/// The id of a `<major>.<minor>` directory name (`None` for anything else).
fn version_id(name: &str) -> Option<(u32, String)> {
    let (major, minor) = name.split_once('.')?;
    let (major, minor) = (major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?);
    Some((major * 100 + minor, format!("lsst.v{major}_{minor}.alert.avsc")))
}

/// Parses one version from its `.avsc` files (name, text), sorted by name: the alert schema
/// `top_name` and the named types it refers to.
fn parse_version(id: u32, top_name: &str, files: Vec<(String, String)>) -> Result<RegisteredSchema, String> {
    let mut top = None;
    let mut named = Vec::new();
    for (name, text) in files {
        if !name.ends_with(".avsc") {
            continue;
        }
        if name == top_name {
            top = Some(text);
        } else {
            named.push(text);
        }
    }
    let top = top.ok_or_else(|| format!("no {top_name}"))?;
    parse_with_named(id, &top, &named).map_err(|e| e.to_string())
}

impl EmbeddedRegistry {
    /// An empty registry.
    pub fn empty() -> EmbeddedRegistry {
        EmbeddedRegistry { schemas: BTreeMap::new() }
    }

    /// Every published Rubin alert schema version (3.0 to 11.1), compiled in.
    pub fn published() -> EmbeddedRegistry {
        let mut schemas = BTreeMap::new();
        for dir in PUBLISHED.dirs() {
            let name = dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let Some((id, top_name)) = version_id(&name) else { continue };
            let mut files: Vec<(String, String)> = dir
                .files()
                .filter_map(|f| {
                    let file = f.path().file_name()?.to_string_lossy().into_owned();
                    Some((file, f.contents_utf8()?.to_owned()))
                })
                .collect();
            files.sort();
            // Checked by this module's tests: every shipped version parses.
            if let Ok(schema) = parse_version(id, &top_name, files) {
                schemas.insert(id, Arc::new(schema));
            }
        }
        EmbeddedRegistry { schemas }
    }

    /// Loads every `<major>.<minor>` subdirectory. Fails on the first unreadable or invalid
    /// schema, naming it: a half-loaded registry would send good alerts to the dead-letter topic.
    pub fn from_dir(dir: &Path) -> Result<EmbeddedRegistry, RegistryError> {
        let err = |reason: String| RegistryError::Directory { path: dir.display().to_string(), reason };
        let mut schemas = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| err(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| err(e.to_string()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((id, top_name)) = version_id(&name) else { continue };
            let listing = std::fs::read_dir(entry.path()).map_err(|e| err(e.to_string()))?;
            let mut paths: Vec<_> = listing.filter_map(Result::ok).map(|f| f.path()).collect();
            paths.sort();
            let mut files = Vec::new();
            for path in paths {
                if path.extension().is_none_or(|e| e != "avsc") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                files.push((path.file_name().unwrap_or_default().to_string_lossy().into_owned(), text));
            }
            let schema = parse_version(id, &top_name, files).map_err(|reason| err(format!("{name}/: {reason}")))?;
            schemas.insert(id, Arc::new(schema));
        }
        if schemas.is_empty() {
            return Err(err("no <major>.<minor> schema directories found".into()));
        }
        Ok(EmbeddedRegistry { schemas })
    }

    /// This registry with `newer`'s versions laid over it (`newer` wins on the same id).
    pub fn overlaid_with(mut self, newer: EmbeddedRegistry) -> EmbeddedRegistry {
        self.schemas.extend(newer.schemas);
        self
    }
}

impl SchemaRegistry for EmbeddedRegistry {
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        self.schemas.get(&id).cloned().ok_or(RegistryError::NotFound(id))
    }

    fn known_ids(&self) -> Vec<u32> {
        self.schemas.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_version_is_shipped_and_parses() {
        let ids = EmbeddedRegistry::published().known_ids();
        // 3.0 … 11.1: every directory in storage/schemas/lsst.
        let shipped = PUBLISHED.dirs().count();
        assert_eq!(ids.len(), shipped, "a shipped version failed to parse: {ids:?}");
        for id in [300, 400, 500, 600, 601, 700, 701, 702, 703, 704, 800, 900, 1000, 1100, 1101] {
            assert!(ids.contains(&id), "{id} missing from {ids:?}");
        }
    }
}
