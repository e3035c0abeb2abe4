//! Filter subscriptions: `{"op":"subscribe","sub":"f1","filter":"…"}` on any node.
//!
//! One task per partition follows the partition's feed (`lightkeeper_partition::feed`) and
//! tells the client about every change after which an object matches (`update`) and every
//! change that makes a matching object stop matching (`leave`):
//! - a partition this node hosts (in any role: every replica publishes the feed) is followed
//!   through the node's [`crate::matcher`], which reads the feed once for every subscription
//!   and hands each only the changes that concern it; a resume, or a follower that fell
//!   behind, first replays the missed changes from the changelog;
//! - any other partition is followed through an internal WebSocket to a node hosting it (the
//!   same protocol, restricted to that partition, marked forwarded), which moves to the
//!   partition's next master or replica when its node goes away, resuming from the last
//!   position it delivered.
//!
//! Every message carries the subscription's cursor — each partition's position (the next
//! changelog offset and the fence's epoch there, [`FeedCursor`]) after that message — and every
//! partition's position only advances, one change at a time, so subscribing again `from` a
//! cursor replays exactly the changes after it: no gap, no duplicate, across reconnects,
//! handovers and failovers (the changelog, replayed behind the same fence, is what every
//! replica applied). Nothing is sent until every partition's starting position is known; then
//! `subscribed` (with a complete cursor) comes first, then the snapshot if one was asked for.

use super::relay::{connect, upstreams, Upstream};
use super::{error_msg, Outbox};
use crate::error::ApiError;
use crate::matcher::{End, Registration};
use crate::state::AppState;
use futures::{SinkExt, StreamExt};
use lightkeeper_api::filter::Filter;
use lightkeeper_api::ws::{ClientOp, FeedCursor, FeedPosition, ServerMsg};
use lightkeeper_partition::feed;
use lightkeeper_partition::hub::FeedItem;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// Filter subscriptions one connection may hold.
pub const MAX_FILTERS_PER_CONNECTION: usize = 16;
/// Objects a snapshot sends per partition at most; beyond, an error says it was cut.
pub const MAX_SNAPSHOT_PER_PARTITION: usize = 10_000;
const PING_EVERY: Duration = Duration::from_millis(300);
const UPSTREAM_SILENCE: Duration = Duration::from_millis(1_000);
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(250);

/// A filter subscription; dropping it stops every task it has.
pub(super) struct FilterSub {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FilterSub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a subscription's partition tasks share.
struct Shared {
    sub: String,
    filter: Filter,
    outbox: Outbox,
    /// Every partition's position: the cursor of the next message.
    cursor: Mutex<FeedCursor>,
    /// Partitions whose starting position is not known yet; at zero, `subscribed` is sent and
    /// the gate opens.
    pending: AtomicUsize,
    gate: watch::Sender<bool>,
}

impl Shared {
    /// Records `partition`'s new position and sends the message `make` builds with the cursor
    /// (under one lock, so cursors only move forward in the order messages are queued).
    fn emit(&self, partition: u32, pos: FeedPosition, make: impl FnOnce(String) -> Option<String>) -> bool {
        let mut cursor = self.cursor.lock();
        cursor.0.insert(partition, pos);
        match make(cursor.encode()) {
            Some(text) => self.outbox.send(text),
            None => !self.outbox.slow.is_cancelled(),
        }
    }

    /// `partition`'s starting position is known.
    fn established(&self, partition: u32, pos: FeedPosition) {
        let cursor = {
            let mut c = self.cursor.lock();
            c.0.insert(partition, pos);
            c.encode()
        };
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.outbox.send(ServerMsg::Subscribed { sub: self.sub.clone(), cursor }.to_text());
            self.gate.send_replace(true);
        }
    }

    async fn wait_gate(&self) {
        let mut rx = self.gate.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// Tells the client about one change if it concerns the filter (a replayed change; live
    /// ones come evaluated from the node's matcher, see [`Shared::send_change`]). A change it
    /// is not told about does not move the shared cursor (no lock, no encoding — most changes
    /// match none of a connection's filters): a cursor a little behind only means a resume
    /// replays changes that send nothing. [`Shared::advance`] moves it once per batch.
    fn deliver(&self, item: &FeedItem) -> bool {
        let matches = self.filter.matches(&item.update.summary);
        if !matches && !item.before.as_ref().is_some_and(|b| self.filter.matches(b)) {
            return !self.outbox.slow.is_cancelled();
        }
        self.send_change(item, matches)
    }

    /// Sends an `update` (the object matches after the change) or a `leave` (it matched only
    /// before), with the cursor just after the change.
    fn send_change(&self, item: &FeedItem, matches: bool) -> bool {
        let after = &item.update.summary;
        let pos = FeedPosition { next: item.offset + 1, epoch: item.epoch };
        self.emit(item.partition, pos, |cursor| {
            Some(if matches {
                lightkeeper_api::ws::update_text_with(&self.sub, item.update_body(), Some(&cursor))
            } else {
                let version = item.update.version;
                ServerMsg::Leave { sub: self.sub.clone(), key: after.key.clone(), version, cursor }.to_text()
            })
        })
    }

    /// Records `partition`'s position without sending anything.
    fn advance(&self, partition: u32, pos: FeedPosition) {
        self.cursor.lock().0.insert(partition, pos);
    }
}

/// Starts (or replaces) filter subscription `sub`.
#[allow(clippy::too_many_arguments)]
pub(super) fn subscribe(
    state: &AppState,
    outbox: &Outbox,
    subs: &mut super::Subscriptions,
    sub: &str,
    text: &str,
    from: Option<String>,
    snapshot: bool,
    partitions: Option<Vec<u32>>,
) -> Result<(), ApiError> {
    let filter = lightkeeper_api::filter::Filter::parse(text)
        .map_err(|e| ApiError::bad_request("bad_filter", format!("filter: {e}")))?;
    let from = from
        .map(|c| lightkeeper_api::ws::FeedCursor::decode(&c))
        .transpose()
        .map_err(|m| ApiError::bad_request("invalid_cursor", format!("from: {m}; pass a cursor the server sent")))?;
    if let Some(c) = &from {
        if let Some(p) = c.0.keys().find(|p| **p >= state.partition_count) {
            return Err(ApiError::bad_request(
                "invalid_cursor",
                format!("from names partition {p}, which does not exist"),
            ));
        }
    }
    let partitions: Vec<u32> = match partitions {
        // Node to node: only what this node hosts, never relayed again.
        Some(ps) if subs.forwarded => {
            if let Some(p) = ps.iter().find(|p| !state.replicas.contains(**p)) {
                return Err(ApiError::bad_request(
                    "partition_not_hosted",
                    format!("partition {p} is not hosted on node {}", state.node_id),
                ));
            }
            // A replica that has not read its stored progress cannot say where its feed
            // starts: the relaying node tries again (here or elsewhere) in a moment.
            let starting = |p: &&u32| state.replicas.get(**p).is_none_or(|r| r.status.feed_position().is_none());
            if let Some(p) = ps.iter().find(starting) {
                return Err(ApiError::Unavailable(format!(
                    "partition {p} on node {} is still reading its stored progress",
                    state.node_id
                )));
            }
            ps
        }
        Some(_) => {
            return Err(ApiError::bad_request("bad_message", "partitions is for node-to-node subscriptions only"))
        }
        None => (0..state.partition_count).collect(),
    };
    if !subs.filters.contains_key(sub) && subs.filters.len() >= MAX_FILTERS_PER_CONNECTION {
        return Err(ApiError::bad_request(
            "too_many_subscriptions",
            format!("a connection may hold at most {} filter subscriptions", MAX_FILTERS_PER_CONNECTION),
        ));
    }
    let started = start(state, outbox, sub, filter, from, snapshot, &partitions);
    if subs.filters.insert(sub.to_owned(), started).is_none() {
        state.metrics.ws_subscriptions.inc();
    }
    Ok(())
}

/// Where one partition starts.
enum Start {
    /// Here, this node's replica's changes (already registered with the node's matcher) from a
    /// position.
    Local { live: Live, from: Option<FeedPosition> },
    /// Another node's.
    Remote { from: Option<FeedPosition> },
}

/// A place at this node's matcher for one partition, and where its deliveries start.
struct Live {
    reg: Registration,
    /// The partition's position read just after registering: every change at or above it
    /// reaches `reg`, so only changes below it ever need a replay from the changelog.
    from: FeedPosition,
}

/// Registers `filter` with the matcher of `p`'s replica here (`None`: not hosted here, or the
/// replica has not read its stored progress yet, so where its feed will start is unknown).
fn register_local(state: &AppState, p: u32, filter: &Filter) -> Option<Live> {
    let replica = state.replicas.get(p)?;
    // Register first, then read the position (`lightkeeper_partition::feed`: a replica records
    // its position before publishing the batch that reaches it). Dropping the registration
    // (no position yet) leaves the matcher.
    let reg = state.matchers.register(p, filter.clone());
    let (next, epoch) = replica.status.feed_position()?;
    Some(Live { reg, from: FeedPosition { next, epoch } })
}

/// Starts subscription `sub` over `partitions` (`from`: the positions to resume after).
/// Local feeds are followed here, before anything is read, so nothing falls between.
fn start(
    state: &AppState,
    outbox: &Outbox,
    sub: &str,
    filter: Filter,
    from: Option<FeedCursor>,
    snapshot: bool,
    partitions: &[u32],
) -> FilterSub {
    let (gate, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        sub: sub.to_owned(),
        filter: filter.clone(),
        outbox: outbox.clone(),
        cursor: Mutex::new(FeedCursor::default()),
        pending: AtomicUsize::new(partitions.len()),
        gate,
    });
    let mut tasks = Vec::with_capacity(partitions.len());
    for &p in partitions {
        let from = from.as_ref().and_then(|c| c.0.get(&p).copied());
        let start = match register_local(state, p, &filter) {
            Some(live) => Start::Local { live, from },
            None => Start::Remote { from },
        };
        let (state, shared) = (state.clone(), shared.clone());
        tasks.push(tokio::spawn(async move {
            follow(&state, &shared, p, start, snapshot && from.is_none()).await;
        }));
    }
    FilterSub { tasks }
}

async fn follow(state: &AppState, shared: &Arc<Shared>, p: u32, start: Start, snapshot: bool) {
    let mut established = false;
    let pos = match start {
        Start::Local { live, from } => {
            match follow_local(state, shared, p, live, from, snapshot, &mut established).await {
                Some(pos) => Some(pos),
                None => return,
            }
        }
        Start::Remote { from } => from,
    };
    // Not (or no longer) hosted here: from another node, after `pos`.
    follow_remote(state, shared, p, pos, snapshot && pos.is_none(), established).await;
}

/// Follows `p` from this node's replica, through the node's matcher. Returns the position
/// reached when the replica left this node (the feed closed), to carry on remotely; `None` when
/// the subscription is over.
async fn follow_local(
    state: &AppState,
    shared: &Arc<Shared>,
    p: u32,
    mut live: Live,
    from: Option<FeedPosition>,
    snapshot: bool,
    established: &mut bool,
) -> Option<FeedPosition> {
    let mut pos = match (from, snapshot) {
        (Some(pos), _) => pos,
        (None, true) => {
            // The snapshot's own position is where the feed continues.
            let (store, filter) = (state.store.clone(), shared.filter.clone());
            let scanned = tokio::task::spawn_blocking(move || {
                let mut matching = Vec::new();
                let mut more = false;
                let progress = store.snapshot_scan(p, &mut |s| {
                    if filter.matches(&s) {
                        if matching.len() == MAX_SNAPSHOT_PER_PARTITION {
                            more = true;
                            return false;
                        }
                        matching.push(s);
                    }
                    true
                });
                progress.map(|pr| (FeedPosition { next: pr.changelog_next, epoch: pr.epoch }, matching, more))
            })
            .await;
            let Ok(Ok((pos, matching, more))) = scanned else {
                let e = ApiError::internal(format!("partition {p}: the snapshot could not be read"));
                shared.outbox.send(error_msg(Some(&shared.sub), &e));
                return None;
            };
            shared.established(p, pos);
            *established = true;
            shared.wait_gate().await;
            for s in matching {
                let ok = shared.emit(p, pos, |cursor| {
                    let msg = ServerMsg::Snapshot {
                        sub: shared.sub.clone(),
                        key: s.key.clone(),
                        version: s.version,
                        object: Some(s),
                        cursor: Some(cursor),
                    };
                    Some(msg.to_text())
                });
                if !ok {
                    return None;
                }
            }
            if more {
                let e = ApiError::bad_request(
                    "snapshot_truncated",
                    format!("partition {p}: more than {MAX_SNAPSHOT_PER_PARTITION} objects match; the snapshot was cut there (updates are complete)"),
                );
                shared.outbox.send(error_msg(Some(&shared.sub), &e));
            }
            pos
        }
        // From now on: the matcher delivers all of it.
        (None, false) => live.from,
    };
    if !*established {
        shared.established(p, pos);
        *established = true;
        shared.wait_gate().await;
    }
    loop {
        // Catch up from the changelog to where the matcher's deliveries start. (Not to what
        // the replica has applied by now: that moves on while this waits, and a thousand
        // fresh subscriptions would each open a changelog reader for changes the matcher
        // delivers anyway.)
        if pos.next < live.from.next {
            pos = match replay(state, shared, p, pos, live.from.next).await {
                Ok(reached) => {
                    shared.advance(p, reached);
                    reached
                }
                Err(e) => {
                    shared.outbox.send(error_msg(Some(&shared.sub), &e));
                    return None;
                }
            };
        }
        loop {
            let Some(delivery) = live.reg.rx.recv().await else { break };
            let before = pos;
            for &(i, matches) in &delivery.changes {
                let Some(item) = delivery.batch.get(i as usize) else { continue };
                // Already replayed from the changelog.
                if item.offset < pos.next {
                    continue;
                }
                if !shared.send_change(item, matches) {
                    return None;
                }
                pos = FeedPosition { next: item.offset + 1, epoch: item.epoch };
            }
            if delivery.end.next > pos.next {
                pos = delivery.end;
            }
            if pos != before {
                shared.advance(p, pos);
            }
        }
        match live.reg.end() {
            // Fell behind: register again, then replay what was missed (the loop's top).
            End::Lagged => {
                state.metrics.filter_lagged.inc();
                match register_local(state, p, &shared.filter) {
                    Some(again) => live = again,
                    // Gone from this node meanwhile: carry on from another.
                    None => return Some(pos),
                }
            }
            // The replica left this node.
            End::Closed => return Some(pos),
        }
    }
}

/// Replays `p`'s changes in `[pos, to)` from the changelog, delivering each; the new position.
async fn replay(
    state: &AppState,
    shared: &Arc<Shared>,
    p: u32,
    pos: FeedPosition,
    to: u64,
) -> Result<FeedPosition, ApiError> {
    state.metrics.filter_replays.inc();
    let (changelog, store, shared) = (state.changelog.clone(), state.store.clone(), shared.clone());
    tokio::task::spawn_blocking(move || {
        let slow = shared.outbox.slow.clone();
        let mut emit = |item: FeedItem| shared.deliver(&item);
        feed::replay(changelog.as_ref(), store.as_ref(), p, pos, to, &|| slow.is_cancelled(), &mut emit)
    })
    .await?
    .map_err(|e| ApiError::Unavailable(format!("partition {p}: replaying the changelog: {e}")))
}

/// Follows `p` through a node that hosts it, resuming after `pos` on every new connection.
async fn follow_remote(
    state: &AppState,
    shared: &Arc<Shared>,
    p: u32,
    mut pos: Option<FeedPosition>,
    mut snapshot: bool,
    mut established: bool,
) {
    let mut attempt = 0usize;
    let mut backoff = BACKOFF_START;
    let mut down_since: Option<Instant> = None;
    let deadline = Duration::from_millis(state.cluster.route_deadline_ms);
    loop {
        if shared.outbox.slow.is_cancelled() {
            return;
        }
        let candidates = upstreams(state, p);
        let why = match candidates.get(attempt % candidates.len().max(1)) {
            None => format!("partition {p} has no replica among the known nodes"),
            Some(base) => match connect(state, base).await {
                Err(e) => e,
                Ok(ws) => {
                    let connected = Instant::now();
                    let why = carry(shared, p, ws, &mut pos, &mut snapshot, &mut established).await;
                    match why {
                        None => return,
                        Some(why) if connected.elapsed() >= Duration::from_secs(1) => {
                            tracing::debug!(partition = p, upstream = %base, reason = %why, "filter upstream lost");
                            attempt = 0;
                            backoff = BACKOFF_START;
                            down_since = None;
                            continue;
                        }
                        Some(why) => why,
                    }
                }
            },
        };
        attempt += 1;
        let since = *down_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= deadline {
            let e = ApiError::Unavailable(format!(
                "no replica of partition {p} has accepted the filter subscription for {} ms ({why}); still trying",
                deadline.as_millis()
            ));
            tracing::warn!(partition = p, reason = %why, "filter subscription has no upstream");
            if !shared.outbox.send(error_msg(Some(&shared.sub), &e)) {
                return;
            }
            down_since = Some(Instant::now());
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Whether a relayed message at `at` was passed on already, `last` being the position of the
/// last one passed on. Positions only move forward, so a change at or below `last` was; an
/// upstream that sends one anyway is not believed — the subscriber gets each change once, and
/// the log says so. (The chaos soak saw an upstream go back to offset 24 when a master had
/// taken a broker's offset-less acknowledgement for offsets; `storage::log::kafka` no longer
/// does, and this stays as the relay's own guarantee.) A snapshot's objects all carry the
/// snapshot's one position, so they are never judged this way.
fn passed_on_already(last: Option<FeedPosition>, at: FeedPosition, snapshot: bool) -> bool {
    !snapshot && last.is_some_and(|last| at.next <= last.next)
}

/// One upstream connection: subscribes to `p` after `pos` and passes its messages on with the
/// whole cursor. `None` when the subscription is over; else why the upstream was given up.
async fn carry(
    shared: &Arc<Shared>,
    p: u32,
    mut ws: Upstream,
    pos: &mut Option<FeedPosition>,
    snapshot: &mut bool,
    established: &mut bool,
) -> Option<String> {
    let from = pos.map(|at| FeedCursor([(p, at)].into_iter().collect()).encode());
    let op = ClientOp::Subscribe {
        sub: shared.sub.clone(),
        objects: None,
        from_version: None,
        filter: Some(shared.filter.to_string()),
        from,
        snapshot: snapshot.then_some(true),
        partitions: Some(vec![p]),
    };
    if ws.send(Message::Text(op.to_text().into())).await.is_err() {
        return Some("the upstream did not take the subscription".into());
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    let mut heard = Instant::now();
    loop {
        let msg = tokio::select! {
            () = shared.outbox.slow.cancelled() => return None,
            _ = ping.tick() => {
                if heard.elapsed() >= UPSTREAM_SILENCE {
                    return Some("the upstream went silent".into());
                }
                if ws.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return Some("the upstream closed".into());
                }
                continue;
            }
            msg = ws.next() => msg,
        };
        heard = Instant::now();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(_))) | None => return Some("the upstream closed".into()),
            Some(Err(e)) => return Some(format!("the upstream failed: {e}")),
            Some(Ok(_)) => continue,
        };
        let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else {
            return Some("the upstream sent a message that does not decode".into());
        };
        let at = |cursor: &str| FeedCursor::decode(cursor).ok().and_then(|c| c.0.get(&p).copied());
        match msg {
            ServerMsg::Subscribed { cursor, .. } => {
                let Some(at) = at(&cursor) else { return Some("the upstream's cursor lacks the partition".into()) };
                *pos = Some(at);
                *snapshot = false;
                if !*established {
                    *established = true;
                    shared.established(p, at);
                    shared.wait_gate().await;
                }
            }
            ServerMsg::Error { error, .. } => return Some(format!("{}: {}", error.code, error.message)),
            mut m => {
                let cursor = match &m {
                    ServerMsg::Update { cursor: Some(c), .. } | ServerMsg::Snapshot { cursor: Some(c), .. } => {
                        c.clone()
                    }
                    ServerMsg::Leave { cursor, .. } => cursor.clone(),
                    _ => return Some("the upstream sent a message without a cursor".into()),
                };
                let Some(at) = at(&cursor) else { return Some("the upstream's cursor lacks the partition".into()) };
                if passed_on_already(*pos, at, matches!(m, ServerMsg::Snapshot { .. })) {
                    tracing::warn!(partition = p, at = at.next, last = ?pos, "an upstream sent a change the relay had passed on; not sent again");
                    continue;
                }
                let ok = shared.emit(p, at, |full| {
                    match &mut m {
                        ServerMsg::Update { sub, cursor, .. } | ServerMsg::Snapshot { sub, cursor, .. } => {
                            *sub = shared.sub.clone();
                            *cursor = Some(full);
                        }
                        ServerMsg::Leave { sub, cursor, .. } => {
                            *sub = shared.sub.clone();
                            *cursor = full;
                        }
                        _ => {}
                    }
                    Some(m.to_text())
                });
                *pos = Some(at);
                if !ok {
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relay_never_passes_on_a_change_at_or_below_the_last_one() {
        let at = |next, epoch| FeedPosition { next, epoch };
        // The first message after a subscription: nothing passed on yet.
        assert!(!passed_on_already(None, at(5, 1), false));
        // Forward: passed on.
        assert!(!passed_on_already(Some(at(56_560, 15)), at(56_561, 15), false));
        // The same change again, or one further back (the soak's offset 24): dropped.
        assert!(passed_on_already(Some(at(56_560, 15)), at(56_560, 15), false));
        assert!(passed_on_already(Some(at(56_560, 15)), at(24, 15), false));
        // A snapshot's objects share one position: never dropped for it.
        assert!(!passed_on_already(Some(at(900, 2)), at(900, 2), true));
    }
}
