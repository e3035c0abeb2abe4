//! Matching each partition's live changes against every filter subscription on this node, once.
//!
//! A filter subscription follows every partition (`routes::ws::filter`). With one reader of the
//! partition's feed per subscription, each worker batch woke every subscription and every
//! subscription tested every change: with a thousand filters that cost about a fifth of the
//! ingest rate (BENCHMARKS.md). Here one task per followed partition reads the feed, asks a
//! [`FilterSet`] which filters a change can match at all (one guard per filter, tested against
//! the change's summary before and after), evaluates only those, and sends each subscription
//! just the changes that concern it — a subscription that nothing concerns is not woken.
//!
//! What a subscription's partition task keeps from the old design is its position: a
//! [`Delivery`] carries the batch's end, so the follower moves its cursor past changes that
//! did not concern it; once a [`TICK`], every follower that got nothing gets an empty delivery,
//! so a quiet filter's cursor does not fall far behind (a resume from an old cursor only replays more
//! changes that send nothing, but it replays them).
//!
//! Bounds and failure: each registration has a bounded queue ([`QUEUE`] deliveries). A follower
//! whose queue is full, or all followers when this task falls behind the hub's bounded feed,
//! are dropped with [`End::Lagged`]; they replay what they missed from the changelog and
//! register again — the same rule as a lagged hub receiver. When the replica leaves the node
//! the feed closes, and every follower gets [`End::Closed`] and carries on from another node.
//! The task ends when its last follower leaves, the feed closes or the node shuts down.

use lightkeeper_api::filter::{Filter, FilterSet};
use lightkeeper_api::ws::FeedPosition;
use lightkeeper_partition::hub::{Feed, Hub};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

/// Deliveries queued for one follower before it counts as lagging.
pub const QUEUE: usize = 64;
/// A follower that nothing concerned for this long is sent the position it has reached.
pub const TICK: Duration = Duration::from_secs(1);

/// Why a registration's queue closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// It fell behind (its queue was full, or the matcher fell behind the feed): replay from
    /// the changelog, then register again.
    Lagged,
    /// The partition's replica left this node (or the node is shutting down).
    Closed,
}

/// One batch's changes that concern a follower.
pub struct Delivery {
    pub batch: Feed,
    /// Indexes into `batch` of the changes to send, in order, and whether the object matches
    /// after the change (`true`: an update) or only matched before it (`false`: a leave).
    pub changes: Vec<(u32, bool)>,
    /// The position after the batch's last change.
    pub end: FeedPosition,
}

/// A follower's place at a partition's matcher; dropping it leaves.
pub struct Registration {
    pub rx: mpsc::Receiver<Delivery>,
    ended: Arc<OnceLock<End>>,
    id: u64,
    partition: u32,
    matchers: Arc<Matchers>,
}

impl Registration {
    /// Why the queue closed (call once `rx` has returned `None`).
    pub fn end(&self) -> End {
        self.ended.get().copied().unwrap_or(End::Closed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.matchers.leave(self.partition, self.id);
    }
}

struct Follower {
    filter: Filter,
    tx: mpsc::Sender<Delivery>,
    ended: Arc<OnceLock<End>>,
}

impl Follower {
    fn end(self, why: End) {
        let _ = self.ended.set(why);
    }
}

struct Followers {
    by_id: HashMap<u64, Follower>,
    set: FilterSet<u64>,
    /// When every follower was last sent its position.
    last_tick: Instant,
}

impl Default for Followers {
    fn default() -> Self {
        Followers { by_id: HashMap::new(), set: FilterSet::default(), last_tick: Instant::now() }
    }
}

impl Followers {
    fn end_all(&mut self, why: End) {
        self.set = FilterSet::default();
        for (_, f) in self.by_id.drain() {
            f.end(why);
        }
    }
}

/// One partition's matcher: its followers, and the token that stops its task.
struct PartitionMatcher {
    followers: Arc<Mutex<Followers>>,
    stop: CancellationToken,
}

/// Every partition's matcher on this node.
pub struct Matchers {
    hub: Arc<Hub>,
    partitions: Mutex<HashMap<u32, PartitionMatcher>>,
    next_id: std::sync::atomic::AtomicU64,
    shutdown: CancellationToken,
}

impl Matchers {
    pub fn new(hub: Arc<Hub>, shutdown: CancellationToken) -> Arc<Matchers> {
        Arc::new(Matchers { hub, partitions: Mutex::new(HashMap::new()), next_id: 0.into(), shutdown })
    }

    /// Registers `filter` for `partition`'s changes from now on (start the partition's task if
    /// needed). Register before reading the partition's position: every change at or above it
    /// is then delivered.
    pub fn register(self: &Arc<Matchers>, partition: u32, filter: Filter) -> Registration {
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE);
        let ended = Arc::new(OnceLock::new());
        let mut partitions = self.partitions.lock();
        let matcher = partitions.entry(partition).or_insert_with(|| self.start(partition));
        let mut followers = matcher.followers.lock();
        followers.set.insert(id, &filter);
        followers.by_id.insert(id, Follower { filter, tx, ended: ended.clone() });
        drop(followers);
        Registration { rx, ended, id, partition, matchers: self.clone() }
    }

    /// Starts `partition`'s task, following the hub's feed from now.
    fn start(self: &Arc<Matchers>, partition: u32) -> PartitionMatcher {
        let followers = Arc::new(Mutex::new(Followers::default()));
        let stop = self.shutdown.child_token();
        let feed = self.hub.follow(partition);
        tokio::spawn(run(self.clone(), partition, feed, followers.clone(), stop.clone()));
        PartitionMatcher { followers, stop }
    }

    /// Removes follower `id`; the partition's task stops when it was the last.
    fn leave(&self, partition: u32, id: u64) {
        let mut partitions = self.partitions.lock();
        let Some(matcher) = partitions.get(&partition) else { return };
        let mut followers = matcher.followers.lock();
        followers.set.remove(id);
        followers.by_id.remove(&id);
        if followers.by_id.is_empty() {
            drop(followers);
            if let Some(m) = partitions.remove(&partition) {
                m.stop.cancel();
            }
        }
    }

    /// Drops `partition`'s matcher if it is still the one with these followers.
    fn forget(&self, partition: u32, followers: &Arc<Mutex<Followers>>) {
        let mut partitions = self.partitions.lock();
        if partitions.get(&partition).is_some_and(|m| Arc::ptr_eq(&m.followers, followers)) {
            partitions.remove(&partition);
        }
    }

    /// Partitions with a running matcher.
    #[cfg(test)]
    fn running(&self) -> usize {
        self.partitions.lock().len()
    }

    /// Followers registered for `partition` now.
    #[cfg(test)]
    fn followers(&self, partition: u32) -> usize {
        self.partitions.lock().get(&partition).map_or(0, |m| m.followers.lock().by_id.len())
    }
}

/// One partition's task: reads the feed and dispatches each batch off the runtime.
async fn run(
    matchers: Arc<Matchers>,
    partition: u32,
    mut feed: broadcast::Receiver<Feed>,
    followers: Arc<Mutex<Followers>>,
    stop: CancellationToken,
) {
    loop {
        let batch = tokio::select! {
            () = stop.cancelled() => break,
            batch = feed.recv() => batch,
        };
        match batch {
            Ok(batch) => {
                let followers = followers.clone();
                // Evaluating a batch against the filters is CPU work of up to milliseconds.
                if tokio::task::spawn_blocking(move || dispatch(&followers, &batch)).await.is_err() {
                    break;
                }
            }
            // Batches were lost for everyone following now: they replay and register again.
            Err(broadcast::error::RecvError::Lagged(_)) => followers.lock().end_all(End::Lagged),
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
    // The feed closed, the node is shutting down, or nobody follows: whoever is left carries
    // on elsewhere (a cancelled matcher has no followers left).
    matchers.forget(partition, &followers);
    followers.lock().end_all(End::Closed);
    drop(feed);
    matchers.hub.unfollow(partition);
}

/// Sends each follower the changes of `batch` that concern it.
fn dispatch(followers: &Mutex<Followers>, batch: &Feed) {
    let Some(last) = batch.last() else { return };
    let end = FeedPosition { next: last.offset + 1, epoch: last.epoch };
    let mut f = followers.lock();
    if f.by_id.is_empty() {
        return;
    }
    // (follower, change index, matches after) for every change that concerns a follower.
    let mut hits: Vec<(u64, u32, bool)> = Vec::new();
    let mut candidates = Vec::new();
    for (i, item) in batch.iter().enumerate() {
        candidates.clear();
        let after = &item.update.summary;
        f.set.candidates(after, item.before.as_ref(), &mut candidates);
        for id in &candidates {
            let Some(follower) = f.by_id.get(id) else { continue };
            if follower.filter.matches(after) {
                hits.push((*id, i as u32, true));
            } else if item.before.as_ref().is_some_and(|b| follower.filter.matches(b)) {
                hits.push((*id, i as u32, false));
            }
        }
    }
    // By follower, each follower's changes still in log order (the sort is stable).
    hits.sort_by_key(|h| h.0);
    let now = Instant::now();
    let tick = now.duration_since(f.last_tick) >= TICK;
    let mut sent: Vec<u64> = Vec::new();
    let mut dropped = Vec::new();
    for run in hits.chunk_by(|a, b| a.0 == b.0) {
        let id = run[0].0;
        let changes = run.iter().map(|h| (h.1, h.2)).collect();
        if let Some(follower) = f.by_id.get(&id) {
            match follower.tx.try_send(Delivery { batch: batch.clone(), changes, end }) {
                Ok(()) => sent.push(id),
                Err(mpsc::error::TrySendError::Full(_)) => dropped.push(id),
                // The registration is being dropped: it leaves by itself.
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }
    // Once a TICK, everyone else learns the position it has reached.
    if tick {
        f.last_tick = now;
        for (id, follower) in &f.by_id {
            if sent.binary_search(id).is_ok() {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) =
                follower.tx.try_send(Delivery { batch: batch.clone(), changes: Vec::new(), end })
            {
                dropped.push(*id);
            }
        }
    }
    for id in dropped {
        f.set.remove(id);
        if let Some(follower) = f.by_id.remove(&id) {
            follower.end(End::Lagged);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_api::model::Survey;
    use lightkeeper_api::object::ObjectState;
    use lightkeeper_partition::hub::FeedItem;
    use lightkeeper_storage::state::HistoryEntry;

    /// A change of object `key` at `offset` moving it from `ra_before` (`None`: created) to `ra`.
    fn change(key: &str, offset: u64, ra_before: Option<f64>, ra: f64) -> FeedItem {
        let mut s = ObjectState::empty(key.into(), Survey::Ztf, key.into());
        s.ra = Some(ra);
        s.version = 2;
        let before = ra_before.map(|r| {
            let mut b = s.clone();
            b.ra = Some(r);
            b.version = 1;
            b.summary()
        });
        let update = Arc::new(HistoryEntry { version: 2, summary: s.summary(), new_points: vec![] });
        FeedItem::new(0, offset, 1, before, update)
    }

    fn filter(text: &str) -> Filter {
        Filter::parse(text).unwrap()
    }

    /// Waits (5 s at most) until `done` holds: the matcher's task runs on its own.
    async fn until(what: &str, done: impl Fn() -> bool) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !done() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{what}"));
    }

    #[tokio::test]
    async fn each_follower_gets_only_its_changes_and_the_last_one_out_stops_the_task() {
        let hub = Arc::new(Hub::new(16));
        let matchers = Matchers::new(hub.clone(), CancellationToken::new());
        let mut low = matchers.register(0, filter("ra < 10"));
        let mut high = matchers.register(0, filter("ra > 100 and ra < 200"));
        let mut none = matchers.register(0, filter("ra > 300"));
        assert!(hub.follows(0));
        hub.publish_feed(
            0,
            vec![change("a", 5, None, 1.0), change("b", 6, Some(5.0), 150.0), change("c", 7, None, 50.0)],
        );
        let got = low.rx.recv().await.unwrap();
        assert_eq!(got.changes, vec![(0, true), (1, false)], "a enters; b leaves (it matched before)");
        assert_eq!(got.end, FeedPosition { next: 8, epoch: 1 });
        let got = high.rx.recv().await.unwrap();
        assert_eq!(got.changes, vec![(1, true)]);
        // Nothing concerned the third follower: not woken (no tick is due yet).
        assert!(none.rx.try_recv().is_err());
        drop((low, high));
        assert_eq!(matchers.running(), 1);
        drop(none);
        assert_eq!(matchers.running(), 0);
        // The task unfollows the feed once it has stopped.
        until("the feed is unfollowed", || !hub.follows(0)).await;
    }

    #[tokio::test]
    async fn a_follower_that_does_not_read_lags_and_a_closed_feed_closes_the_rest() {
        let hub = Arc::new(Hub::new(1024));
        let matchers = Matchers::new(hub.clone(), CancellationToken::new());
        let mut slow = matchers.register(0, filter("ra >= 0"));
        let mut quiet = matchers.register(0, filter("ra > 300"));
        for i in 0..(QUEUE as u64 + 1) {
            hub.publish_feed(0, vec![change("a", i, None, 1.0)]);
        }
        // Nothing is read until the matcher has dropped the follower whose queue filled.
        until("the unread follower is dropped", || matchers.followers(0) == 1).await;
        // The queue held QUEUE deliveries; the next one dropped the follower as lagging.
        let mut read = 0;
        while slow.rx.recv().await.is_some() {
            read += 1;
        }
        assert_eq!(read, QUEUE);
        assert_eq!(slow.end(), End::Lagged);
        hub.close_feed(0);
        assert!(quiet.rx.recv().await.is_none());
        assert_eq!(quiet.end(), End::Closed);
    }
}
