//! A registry loaded from a directory of schema versions: `<dir>/<major>.<minor>/*.avsc`, as in
//! `lsst/alert_packet` (and `shared/data/lsst/schema/`). The id of version M.m is M×100 + m.

use super::{parse_with_named, RegisteredSchema, RegistryError, SchemaRegistry};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

pub struct EmbeddedRegistry {
    schemas: BTreeMap<u32, Arc<RegisteredSchema>>,
}

impl EmbeddedRegistry {
    /// An empty registry (ZTF-only deployments need none).
    pub fn empty() -> EmbeddedRegistry {
        EmbeddedRegistry { schemas: BTreeMap::new() }
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
            let Some((major, minor)) = name.split_once('.') else { continue };
            let (Ok(major), Ok(minor)) = (major.parse::<u32>(), minor.parse::<u32>()) else { continue };
            let id = major * 100 + minor;
            let top_name = format!("lsst.v{major}_{minor}.alert.avsc");
            let mut top = None;
            let mut named = Vec::new();
            let files = std::fs::read_dir(entry.path()).map_err(|e| err(e.to_string()))?;
            let mut paths: Vec<_> = files.filter_map(Result::ok).map(|f| f.path()).collect();
            paths.sort();
            for path in paths {
                if path.extension().is_none_or(|e| e != "avsc") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).map_err(|e| err(format!("{}: {e}", path.display())))?;
                if path.file_name().is_some_and(|f| f.to_string_lossy() == top_name) {
                    top = Some(text);
                } else {
                    named.push(text);
                }
            }
            let top = top.ok_or_else(|| err(format!("{name}/ has no {top_name}")))?;
            schemas.insert(id, Arc::new(parse_with_named(id, &top, &named)?));
        }
        if schemas.is_empty() {
            return Err(err("no <major>.<minor> schema directories found".into()));
        }
        Ok(EmbeddedRegistry { schemas })
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
