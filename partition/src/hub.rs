//! Live-update fan-out: one bounded broadcast channel per subscribed object key, and one per
//! partition for filter subscriptions (the partition's *feed*).
//!
//! A channel exists only while someone listens, so publishing an update for an object nobody
//! watches costs one map lookup, and a partition nobody follows with a filter costs nothing
//! more (the worker does not even build its feed items, see [`Hub::follows`]). Each channel is
//! bounded; a receiver that falls behind gets `RecvError::Lagged` and must resynchronize — from
//! the stored history for an object, from the changelog for a feed (the gateway does both) — so
//! no update is ever skipped silently.

use lightkeeper_storage::object::ObjectSummary;
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

/// One change of a partition, in changelog order, as filter subscriptions see it.
#[derive(Debug)]
pub struct FeedItem {
    pub partition: u32,
    /// The changelog offset of the change's record.
    pub offset: u64,
    /// The epoch the record was admitted in.
    pub epoch: u64,
    /// The object's summary before the change (`None`: the change created it). A filter
    /// subscription sends `leave` when this matched and the new one does not.
    pub before: Option<ObjectSummary>,
    pub update: Update,
    /// The `update` message's shared part, rendered by the first subscription that sends it
    /// (see [`FeedItem::update_body`]).
    pub body: std::sync::OnceLock<String>,
}

impl FeedItem {
    pub fn new(partition: u32, offset: u64, epoch: u64, before: Option<ObjectSummary>, update: Update) -> FeedItem {
        FeedItem { partition, offset, epoch, before, update, body: std::sync::OnceLock::new() }
    }

    /// The JSON of the change that every subscription's `update` message shares
    /// ([`lightkeeper_api::ws::update_body`]), rendered once however many filters match it.
    pub fn update_body(&self) -> &str {
        self.body.get_or_init(|| {
            lightkeeper_api::ws::update_body(self.update.version, &self.update.summary, &self.update.new_points)
        })
    }
}

/// A worker batch's changes, published at once: a follower wakes once per batch, not per change
/// (with a thousand filter subscriptions, per-change wake-ups would cost more than the ingest).
pub type Feed = Arc<Vec<FeedItem>>;

pub struct Hub {
    channels: Mutex<HashMap<String, broadcast::Sender<Update>>>,
    feeds: Mutex<HashMap<u32, broadcast::Sender<Feed>>>,
    capacity: usize,
    on_change: Option<ChangeListener>,
}

impl Hub {
    pub fn new(capacity: usize) -> Hub {
        Hub { channels: Mutex::new(HashMap::new()), feeds: Mutex::new(HashMap::new()), capacity, on_change: None }
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

    /// Follows `partition`'s feed. Subscribe before reading the partition's position, so no
    /// change can fall between the read and the subscription.
    pub fn follow(&self, partition: u32) -> broadcast::Receiver<Feed> {
        let mut feeds = self.feeds.lock();
        match feeds.get(&partition) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = broadcast::channel(self.capacity);
                feeds.insert(partition, tx);
                rx
            }
        }
    }

    /// Drops `partition`'s feed if nobody follows it any more. Call after dropping a receiver.
    pub fn unfollow(&self, partition: u32) {
        let mut feeds = self.feeds.lock();
        if feeds.get(&partition).is_some_and(|tx| tx.receiver_count() == 0) {
            feeds.remove(&partition);
        }
    }

    /// Whether anyone follows `partition` (the worker builds feed items only then).
    pub fn follows(&self, partition: u32) -> bool {
        self.feeds.lock().get(&partition).is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Publishes a partition's changes to its feed, in changelog order.
    pub fn publish_feed(&self, partition: u32, items: Vec<FeedItem>) {
        let feeds = self.feeds.lock();
        if let Some(tx) = feeds.get(&partition) {
            let _ = tx.send(Arc::new(items));
        }
    }

    /// Closes `partition`'s feed (the node stops hosting it): followers get what was sent, then
    /// `RecvError::Closed`, and carry on from another node.
    pub fn close_feed(&self, partition: u32) {
        self.feeds.lock().remove(&partition);
    }

    /// Number of objects with at least one live subscription channel.
    pub fn watched_objects(&self) -> usize {
        self.channels.lock().len()
    }
}
