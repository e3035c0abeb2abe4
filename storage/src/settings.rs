//! Cluster settings that change at run time — pipeline definitions, watch lists — kept in a
//! compacted topic every node reads.
//!
//! Why a topic: a pipeline put at one node must run on every partition master of every node,
//! survive restarts and reach nodes that join later, without another service. The log is what
//! the nodes already share; the latest record per key is the setting, an empty record deletes
//! it (and compaction keeps exactly what is current). Nodes read the topic to its end
//! periodically and after their own writes, so a `PUT` answers once its own node applies it.
//!
//! One partition; key = `<kind>/<name>` (see [`SettingKey`]); value = the setting's bytes as
//! its kind defines them.

use crate::log::{read_to_end, Append, LogError, Topic};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bound on one setting's bytes (a Kafka record; brokers refuse more than about 1 MiB).
pub const MAX_SETTING_BYTES: usize = 900 << 10;

/// What a setting is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SettingKind {
    /// A pipeline definition: its YAML text.
    Pipeline,
    /// A watch list: JSON (see the gateway's `watchlists`).
    Watchlist,
}

impl SettingKind {
    fn prefix(self) -> &'static str {
        match self {
            SettingKind::Pipeline => "pipeline/",
            SettingKind::Watchlist => "watchlist/",
        }
    }
}

/// A setting's identity: its kind and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SettingKey {
    pub kind: SettingKind,
    pub name: String,
}

impl SettingKey {
    pub fn new(kind: SettingKind, name: &str) -> SettingKey {
        SettingKey { kind, name: name.to_owned() }
    }

    fn encode(&self) -> String {
        format!("{}{}", self.kind.prefix(), self.name)
    }

    fn decode(raw: &[u8]) -> Option<SettingKey> {
        let s = std::str::from_utf8(raw).ok()?;
        [SettingKind::Pipeline, SettingKind::Watchlist]
            .into_iter()
            .find_map(|k| s.strip_prefix(k.prefix()).map(|n| SettingKey::new(k, n)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading settings from {topic}: {source}")]
    Read { topic: String, source: Box<LogError> },
    #[error("writing a setting to {topic}: {source}")]
    Write { topic: String, source: Box<LogError> },
    #[error("the setting is {size} bytes; the bound is {MAX_SETTING_BYTES}")]
    TooLarge { size: usize },
}

/// The settings as read so far.
pub struct SettingsLog {
    topic: Arc<dyn Topic>,
    loaded: Mutex<Loaded>,
}

#[derive(Default)]
struct Loaded {
    next: u64,
    /// Rises with every record read that changed a setting.
    revision: u64,
    values: BTreeMap<SettingKey, Arc<Vec<u8>>>,
}

impl SettingsLog {
    /// Opens the settings over `topic` (partition 0) and reads what it holds.
    pub fn open(topic: Arc<dyn Topic>) -> Result<SettingsLog, SettingsError> {
        let s = SettingsLog { topic, loaded: Mutex::new(Loaded::default()) };
        s.catch_up()?;
        Ok(s)
    }

    /// Reads what was appended since the last read; returns the revision (which rises when
    /// anything changed). Records whose key is not a setting are skipped.
    pub fn catch_up(&self) -> Result<u64, SettingsError> {
        let mut loaded = self.loaded.lock();
        let from = loaded.next;
        let Loaded { values, revision, .. } = &mut *loaded;
        let next = read_to_end(self.topic.as_ref(), 0, from, |r| {
            let Some(key) = r.key.as_deref().and_then(SettingKey::decode) else {
                tracing::warn!(offset = r.offset, "skipping a settings record without a setting key");
                return Ok(());
            };
            if r.payload.is_empty() {
                if values.remove(&key).is_some() {
                    *revision += 1;
                }
            } else if values.get(&key).map(|v| v.as_slice()) != Some(r.payload.as_slice()) {
                values.insert(key, Arc::new(r.payload.clone()));
                *revision += 1;
            }
            Ok(())
        })
        .map_err(|e| SettingsError::Read { topic: self.topic.name().to_owned(), source: Box::new(e) })?;
        loaded.next = next;
        Ok(loaded.revision)
    }

    /// Writes a setting (an empty `value` deletes it), then reads it back.
    pub fn put(&self, key: &SettingKey, value: &[u8]) -> Result<u64, SettingsError> {
        if value.len() > MAX_SETTING_BYTES {
            return Err(SettingsError::TooLarge { size: value.len() });
        }
        let k = key.encode();
        self.topic
            .append(0, &[Append { key: Some(k.as_bytes()), payload: value, headers: &[] }])
            .map_err(|e| SettingsError::Write { topic: self.topic.name().to_owned(), source: Box::new(e) })?;
        self.catch_up()
    }

    /// Deletes a setting.
    pub fn delete(&self, key: &SettingKey) -> Result<u64, SettingsError> {
        self.put(key, &[])
    }

    /// The current settings of a kind, by name.
    pub fn all(&self, kind: SettingKind) -> BTreeMap<String, Arc<Vec<u8>>> {
        self.loaded
            .lock()
            .values
            .iter()
            .filter(|(k, _)| k.kind == kind)
            .map(|(k, v)| (k.name.clone(), v.clone()))
            .collect()
    }

    pub fn get(&self, key: &SettingKey) -> Option<Arc<Vec<u8>>> {
        self.loaded.lock().values.get(key).cloned()
    }

    pub fn revision(&self) -> u64 {
        self.loaded.lock().revision
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::EmbeddedLog;

    #[test]
    fn settings_are_read_back_replaced_and_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let topic = log.topic("settings", 1).unwrap();
        let a = SettingsLog::open(topic.clone()).unwrap();
        let b = SettingsLog::open(topic.clone()).unwrap();
        let key = SettingKey::new(SettingKind::Pipeline, "giants");
        let r1 = a.put(&key, b"processors: []").unwrap();
        assert_eq!(a.get(&key).unwrap().as_slice(), b"processors: []");
        assert!(b.get(&key).is_none(), "b has not read yet");
        let rb = b.catch_up().unwrap();
        assert_eq!(b.all(SettingKind::Pipeline).len(), 1);
        assert!(b.all(SettingKind::Watchlist).is_empty());
        // The same value again changes nothing.
        assert_eq!(a.put(&key, b"processors: []").unwrap(), r1);
        a.delete(&key).unwrap();
        assert!(b.catch_up().unwrap() > rb);
        assert!(b.get(&key).is_none());
        topic.append(0, &[Append { key: Some(b"junk"), payload: b"x", headers: &[] }]).unwrap();
        b.catch_up().unwrap();
        assert!(matches!(a.put(&key, &vec![b'x'; MAX_SETTING_BYTES + 1]), Err(SettingsError::TooLarge { .. })));
    }
}
