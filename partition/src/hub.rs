//! Live-update fan-out: one bounded broadcast channel per subscribed object key.
//!
//! A channel exists only while someone listens, so publishing an update for an object nobody
//! watches costs one map lookup. Each channel is bounded; a receiver that falls behind gets
//! `RecvError::Lagged` and must resynchronize from the stored history (the gateway does), so no
//! update is ever skipped silently.

use lightkeeper_storage::state::HistoryEntry;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// One object update as pushed to subscribers.
pub type Update = Arc<HistoryEntry>;

/// Called with the object key of every published update (the gateway's response cache uses
/// it to drop stale renderings).
pub type ChangeListener = Box<dyn Fn(&str) + Send + Sync>;

pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Update>>>,
    capacity: usize,
    on_change: Option<ChangeListener>,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub { channels: Mutex::new(HashMap::new()), capacity, on_change: None }
    }

    /// A hub that also tells `listener` about every change.
    pub fn with_listener(capacity: usize, listener: ChangeListener) -> Hub {
        Hub { on_change: Some(listener), ..Hub::new(capacity) }
    }

    /// Subscribes to updates of `key`. Subscribe before reading the current state, so that no
    /// update can fall between the read and the subscription.
    pub fn subscribe(&self, key: &str) -> broadcast::Receiver<Update> {
        let mut channels = self.channels.lock();
        match channels.get(key) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(self.capacity);
                channels.insert(key.to_owned(), tx);
                rx
            }
        }
    }

    /// Drops the channel of `key` if nobody listens any more. Call after dropping a receiver.
    pub fn release(&self, key: &str) {
        let mut channels = self.channels.lock();
        if channels.get(key).is_some_and(|tx| tx.receiver_count() == 0) {
            channels.remove(key);
        }
    }

    pub fn publish(&self, update: Update) {
        if let Some(listener) = &self.on_change {
            listener(&update.summary.key);
        }
        let channels = self.channels.lock();
        if let Some(tx) = channels.get(&update.summary.key) {
            // An error means no receiver is left; `release` will remove the channel.
            let _ = tx.send(update);
        }
    }

    /// Closes the channels of the keys `doomed` selects (a partition this node stops hosting):
    /// their receivers get every update already sent, then `RecvError::Closed`.
    pub fn close(&self, doomed: impl Fn(&str) -> bool) {
        self.channels.lock().retain(|key, _| !doomed(key));
    }

    /// Number of objects with at least one live subscription channel.
    pub fn watched_objects(&self) -> usize {
        self.channels.lock().len()
    }
}
