//! Run-time settings on a node: the pipelines and watch lists in the settings topic, compiled
//! (watch lists indexed) and installed where the partition masters pick them up.
//!
//! Every node follows the topic (every [`FOLLOW_EVERY`], and at once after its own writes), so a
//! definition put at any node runs on every master of every node without a restart. A stored
//! definition that no longer compiles (written by a newer version, say) is skipped with a
//! warning; the others run.

use lightkeeper_partition::pipeline::writers::TopicOpener;
use lightkeeper_partition::pipeline::{Pipeline, Pipelines};
use lightkeeper_partition::watchlist::{WatchEntry, WatchIndex};
use lightkeeper_storage::log::{EmbeddedLog, KafkaConfig, KafkaTopic, LogError, Topic};
use lightkeeper_storage::settings::{SettingKey, SettingKind, SettingsError, SettingsLog};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often a node reads the settings topic for changes made at other nodes.
pub const FOLLOW_EVERY: Duration = Duration::from_secs(1);

/// The settings log and what was compiled from it.
pub struct LiveSettings {
    pub log: Arc<SettingsLog>,
    pub pipelines: Arc<Pipelines>,
    /// The log revision last installed.
    installed: Mutex<Option<u64>>,
}

impl LiveSettings {
    pub fn new(log: Arc<SettingsLog>, pipelines: Arc<Pipelines>) -> LiveSettings {
        LiveSettings { log, pipelines, installed: Mutex::new(None) }
    }

    /// Reads the topic and installs what changed. Blocking (a log read).
    pub fn refresh(&self) -> Result<(), SettingsError> {
        let revision = self.log.catch_up()?;
        self.install(revision);
        Ok(())
    }

    /// Writes a setting (an empty `value` deletes it) and installs the result on this node, off
    /// the async runtime; what `PUT` and `DELETE` of pipelines and watch lists share.
    pub async fn store(self: &Arc<Self>, key: SettingKey, value: Vec<u8>) -> Result<(), StoreSettingError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let revision = me.log.put(&key, &value)?;
            me.install(revision);
            Ok(())
        })
        .await?
    }

    /// Compiles and installs the pipelines of `revision` if it is newer than what runs.
    pub fn install(&self, revision: u64) {
        let mut installed = self.installed.lock();
        if *installed == Some(revision) {
            return;
        }
        let mut compiled = BTreeMap::new();
        for (name, text) in self.log.all(SettingKind::Pipeline) {
            let text = String::from_utf8_lossy(&text);
            match Pipeline::compile(&name, &text) {
                Ok(p) => {
                    compiled.insert(name, Arc::new(p));
                }
                Err(e) => {
                    tracing::warn!(pipeline = %name, error = %e, "a stored pipeline does not compile; it is not run")
                }
            }
        }
        let mut lists = BTreeMap::new();
        let mut digest = std::collections::hash_map::DefaultHasher::new();
        for (name, bytes) in self.log.all(SettingKind::Watchlist) {
            match serde_json::from_slice::<Vec<WatchEntry>>(&bytes) {
                Ok(entries) => {
                    (&name, bytes.as_slice()).hash(&mut digest);
                    lists.insert(name, entries);
                }
                Err(e) => {
                    tracing::warn!(watchlist = %name, error = %e, "a stored watch list does not read; it is not used")
                }
            }
        }
        tracing::info!(
            pipelines = ?compiled.keys().collect::<Vec<_>>(),
            watchlists = ?lists.keys().collect::<Vec<_>>(),
            revision,
            "pipelines and watch lists installed"
        );
        self.pipelines.replace(compiled, Arc::new(WatchIndex::new(lists)), digest.finish());
        *installed = Some(revision);
    }

    /// Follows the topic until `stop`.
    pub async fn follow(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(FOLLOW_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let me = self.clone();
            match tokio::task::spawn_blocking(move || me.refresh()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the settings topic failed; retrying"),
                Err(e) => tracing::warn!(error = %e, "the settings task failed"),
            }
        }
    }
}

/// Pipeline output topics on Kafka: created (delete policy) when missing, opened once.
pub struct KafkaOpener {
    kafka: KafkaConfig,
    open: Mutex<HashMap<String, Arc<dyn Topic>>>,
}

impl KafkaOpener {
    pub fn new(kafka: KafkaConfig) -> KafkaOpener {
        KafkaOpener { kafka, open: Mutex::new(HashMap::new()) }
    }
}

impl TopicOpener for KafkaOpener {
    fn open(&self, name: &str, partitions: u32) -> Result<Arc<dyn Topic>, LogError> {
        if let Some(t) = self.open.lock().get(name) {
            return Ok(t.clone());
        }
        self.kafka.ensure_topic(name, partitions, None)?;
        let t: Arc<dyn Topic> = Arc::new(KafkaTopic::open(&self.kafka, name)?);
        Ok(self.open.lock().entry(name.to_owned()).or_insert(t).clone())
    }
}

/// Pipeline output topics on the embedded log.
pub struct EmbeddedOpener {
    log: Arc<EmbeddedLog>,
    open: Mutex<HashMap<String, Arc<dyn Topic>>>,
}

impl EmbeddedOpener {
    pub fn new(log: Arc<EmbeddedLog>) -> EmbeddedOpener {
        EmbeddedOpener { log, open: Mutex::new(HashMap::new()) }
    }
}

impl TopicOpener for EmbeddedOpener {
    fn open(&self, name: &str, partitions: u32) -> Result<Arc<dyn Topic>, LogError> {
        let mut open = self.open.lock();
        if let Some(t) = open.get(name) {
            return Ok(t.clone());
        }
        let t: Arc<dyn Topic> = self.log.topic(name, partitions)?;
        open.insert(name.to_owned(), t.clone());
        Ok(t)
    }
}

/// Why [`LiveSettings::store`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreSettingError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("the settings task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}
