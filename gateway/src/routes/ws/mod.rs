//! `GET /v1/ws`: live object subscriptions.
//!
//! Per connection: a writer task owns the socket's send half and drains one bounded queue; the
//! session loop reads client ops; each (subscription, object) pair has a forwarder task. The
//! forwarder subscribes to the object's hub channel *before* reading the current state, so no
//! update falls between snapshot and stream; it sends each version exactly once, in order:
//! - a version gap (an update missed) is filled from the stored history;
//! - a lagged hub receiver resynchronizes from history, or sends a fresh snapshot when the
//!   history no longer reaches back that far;
//! - a client whose queue is full is too slow: it gets an error message and a close with code
//!   4008 — never a silent drop.
//!
//! Filter subscriptions (`"filter": "…"`) follow every partition's feed instead: see [`filter`].
//!
//! Objects of partitions this node does not host are subscribed through a [`relay`] to a node
//! that does; it follows the partition to its new master across a failover or handover. When
//! placement moves a partition's replica off this node, its hub channels close and each local
//! stream moves to a relay, resuming after the last version it delivered.

mod filter;
mod forward;
mod relay;

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use forward::{forward, StreamCtx};
use futures::{SinkExt, StreamExt};
use lightkeeper_api::ws::{ClientOp, ServerMsg};
use lightkeeper_storage::model::validate_key;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Close code for a client that cannot keep up (application range 4000–4999).
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
const CLOSE_GOING_AWAY: u16 = 1001;
const MAX_MESSAGE_BYTES: usize = 64 << 10;
/// Initial capacity of a connection's read buffer. tungstenite's default (128 KiB, allocated up
/// front) was most of an idle subscriber's memory — ~139 KiB each, 7,400 per GiB; client
/// messages are small, and the buffer grows for a large one (up to [`MAX_MESSAGE_BYTES`]).
const READ_BUFFER_BYTES: usize = 4 << 10;
/// Bytes of queued frames written with one syscall. A fan-out sends each connection one frame
/// per change, so a larger buffer saves nothing there, and the buffer keeps its capacity for the
/// connection's life.
const WRITE_BUFFER_BYTES: usize = 4 << 10;
/// Most queued messages written with one flush.
const WRITE_BATCH: usize = 64;

/// Live object subscriptions over a WebSocket.
///
/// A `GET` with the WebSocket upgrade headers; the connection then carries JSON text frames:
/// client ops `subscribe` (objects, optional `from_version`) and `unsubscribe`; server messages
/// `snapshot`, `update` and `error` (with the same `{code, message}` as HTTP errors). A client
/// too slow to keep up gets an error message, then close code 4008. The protocol is described in
/// API.md, "WebSocket: GET /v1/ws".
#[utoipa::path(get, path = "/v1/ws", tag = "websocket", operation_id = "websocket",
    responses((status = 101, description = "switching protocols: the connection is now a WebSocket (see API.md)")))]
pub async fn upgrade(State(state): State<AppState>, headers: HeaderMap, ws: WebSocketUpgrade) -> Response {
    // A relay's connection from another node: serve what is hosted here, never relay again.
    let forwarded = headers.contains_key(crate::routing::FORWARDED);
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| session(socket, state, forwarded))
}

/// The connection's bounded outbound queue, plus the "too slow" signal.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<String>,
    slow: CancellationToken,
}

impl Outbox {
    /// Queues a message; a full queue marks the client too slow. Returns false once closed.
    fn send(&self, text: String) -> bool {
        if self.slow.is_cancelled() {
            return false;
        }
        match self.tx.try_send(text) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.slow.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

fn error_msg(sub: Option<&str>, e: &ApiError) -> String {
    ServerMsg::Error { sub: sub.map(str::to_owned), error: e.body() }.to_text()
}

/// How one (subscription, object) pair is served.
enum Stream {
    /// By a forwarder task reading this node's replica.
    Local(Local),
    /// By the relay of this partition.
    Relayed(u32),
}

/// A forwarder task; `moved` is set when it ended because its partition left this node (a
/// [`Moved`] report follows, and the stream is carried on elsewhere).
struct Local {
    id: u64,
    task: JoinHandle<()>,
    moved: Arc<AtomicBool>,
}

/// A local stream whose partition stopped being hosted here (its channel closed, or it found
/// the replica gone): carry it on from `last`, the last version it sent (`None`: nothing yet).
struct Moved {
    id: u64,
    sub: String,
    key: String,
    last: Option<u64>,
}

/// A connection's subscriptions: (sub, key) → how it is served, and the relays by partition.
struct Subscriptions {
    streams: HashMap<(String, String), Stream>,
    /// Filter subscriptions by `sub`.
    filters: HashMap<String, filter::FilterSub>,
    relays: HashMap<u32, relay::Relay>,
    next_id: u64,
    moved: mpsc::Sender<Moved>,
    /// The connection is another node's relay: what is not hosted here is refused, not relayed.
    forwarded: bool,
}

impl Subscriptions {
    fn new(moved: mpsc::Sender<Moved>, forwarded: bool) -> Subscriptions {
        Subscriptions {
            streams: HashMap::new(),
            filters: HashMap::new(),
            relays: HashMap::new(),
            next_id: 0,
            moved,
            forwarded,
        }
    }

    /// Starts a forwarder of `key` from this node's replica.
    fn spawn_local(&mut self, state: &AppState, outbox: &Outbox, sub: &str, key: &str, from_version: Option<u64>) {
        let rx = state.hub.subscribe(key);
        self.next_id += 1;
        let moved_flag = Arc::new(AtomicBool::new(false));
        let ctx = StreamCtx {
            state: state.clone(),
            outbox: outbox.clone(),
            sub: sub.to_owned(),
            key: key.to_owned(),
            id: self.next_id,
            moved_flag: moved_flag.clone(),
            moved: self.moved.clone(),
        };
        let task = tokio::spawn(forward(ctx, from_version, rx));
        let local = Local { id: self.next_id, task, moved: moved_flag };
        self.streams.insert((sub.to_owned(), key.to_owned()), Stream::Local(local));
    }

    /// Ends one stream (its relay, if any, is told by the caller).
    async fn end(&mut self, state: &AppState, k: &(String, String)) {
        if let Some(s) = self.streams.remove(k) {
            if let Stream::Local(l) = s {
                l.task.abort();
                let _ = l.task.await;
                state.hub.release(&k.1);
            }
            state.metrics.ws_subscriptions.dec();
        }
    }

    async fn unsubscribe(&mut self, state: &AppState, sub: &str) {
        if self.filters.remove(sub).is_some() {
            state.metrics.ws_subscriptions.dec();
        }
        let ended: Vec<(String, String)> = self.streams.keys().filter(|(s, _)| s == sub).cloned().collect();
        let mut partitions = std::collections::BTreeSet::new();
        for k in ended {
            if let Some(Stream::Relayed(p)) = self.streams.get(&k) {
                partitions.insert(*p);
            }
            self.end(state, &k).await;
        }
        for p in partitions {
            if let Some(r) = self.relays.get(&p) {
                let _ = r.tx.send(relay::Command::Unsubscribe { sub: sub.to_owned() }).await;
            }
        }
    }

    /// Drops local forwarders that have ended for good, so the map stays bounded by live
    /// streams (one that moved is carried on by [`Subscriptions::relocate`]).
    fn reap(&mut self, state: &AppState) {
        self.streams.retain(|(_, key), s| {
            let done = matches!(s, Stream::Local(l) if l.task.is_finished() && !l.moved.load(Ordering::Acquire));
            if done {
                state.hub.release(key);
                state.metrics.ws_subscriptions.dec();
            }
            !done
        });
    }

    /// Carries on a stream whose local replica went away: from a relay (or locally again, if
    /// the partition came back meanwhile), after the last version it delivered.
    async fn relocate(&mut self, state: &AppState, outbox: &Outbox, m: Moved) {
        let k = (m.sub.clone(), m.key.clone());
        // The client may have replaced or ended the stream since.
        if !matches!(self.streams.get(&k), Some(Stream::Local(l)) if l.id == m.id) {
            return;
        }
        let Some(Stream::Local(l)) = self.streams.remove(&k) else { return };
        let _ = l.task.await;
        state.hub.release(&m.key);
        let p = lightkeeper_storage::partitioner::partition_for(m.key.as_bytes(), state.partition_count);
        if state.replicas.contains(p) {
            self.spawn_local(state, outbox, &m.sub, &m.key, m.last);
            return;
        }
        if self.forwarded {
            // The client is another node's relay: it moves on to a node that hosts the partition.
            let e = ApiError::bad_request(
                "partition_not_hosted",
                format!("{} is in partition {p}, which node {} no longer hosts", m.key, state.node_id),
            );
            outbox.send(error_msg(Some(&m.sub), &e));
            state.metrics.ws_subscriptions.dec();
            return;
        }
        self.streams.insert(k, Stream::Relayed(p));
        let relay = self.relays.entry(p).or_insert_with(|| relay::Relay::start(state.clone(), outbox.clone(), p));
        let cmd = relay::Command::Subscribe { sub: m.sub, keys: vec![m.key], from_version: m.last };
        let _ = relay.tx.send(cmd).await;
    }

    async fn close(mut self, state: &AppState) {
        let keys: Vec<(String, String)> = self.streams.keys().cloned().collect();
        for k in keys {
            self.end(state, &k).await;
        }
        for _ in self.filters.drain() {
            state.metrics.ws_subscriptions.dec();
        }
        self.relays.clear();
    }
}

async fn session(socket: WebSocket, state: AppState, forwarded: bool) {
    state.metrics.ws_connections.inc();
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::channel::<String>(state.limits.ws_send_queue);
    let outbox = Outbox { tx, slow: CancellationToken::new() };
    let shutdown = state.shutdown.clone();

    let slow = outbox.slow.clone();
    let metrics = state.metrics.clone();
    let writer_shutdown = shutdown.clone();
    let writer = tokio::spawn(async move {
        let close = |code: u16, reason: &'static str| {
            Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
        };
        loop {
            tokio::select! {
                biased;
                () = slow.cancelled() => {
                    metrics.ws_slow_closed.inc();
                    let e = ApiError::bad_request("slow_consumer", "the client did not read updates fast enough; reconnect and resume with from_version");
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        sink.send(Message::Text(error_msg(None, &e).into())).await?;
                        sink.send(close(CLOSE_SLOW_CONSUMER, "slow consumer")).await
                    }).await;
                    break;
                }
                () = writer_shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), sink.send(close(CLOSE_GOING_AWAY, "server shutting down"))).await;
                    break;
                }
                msg = rx.recv() => match msg {
                    // Everything already queued goes out with one flush: a burst of filter
                    // matches costs one write, not one per message.
                    Some(t) => {
                        let mut batch = vec![t];
                        while batch.len() < WRITE_BATCH {
                            match rx.try_recv() {
                                Ok(t) => batch.push(t),
                                Err(_) => break,
                            }
                        }
                        let mut items = futures::stream::iter(batch.into_iter().map(|t| Ok(Message::Text(t.into()))));
                        if sink.send_all(&mut items).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
            }
        }
    });

    let (moved_tx, mut moved_rx) = mpsc::channel::<Moved>(state.limits.max_subscriptions_per_connection.max(1));
    let mut subs = Subscriptions::new(moved_tx, forwarded);
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            () = outbox.slow.cancelled() => break,
            Some(m) = moved_rx.recv() => {
                subs.relocate(&state, &outbox, m).await;
                continue;
            }
            msg = stream.next() => msg,
        };
        let text = match msg {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Binary(_))) => {
                outbox.send(error_msg(
                    None,
                    &ApiError::bad_request("bad_message", "binary frames are not accepted; send JSON text"),
                ));
                continue;
            }
            Some(Ok(_)) => continue, // ping/pong are answered by the library
        };
        match serde_json::from_str::<ClientOp>(&text) {
            Err(e) => {
                outbox.send(error_msg(None, &ApiError::bad_request("bad_message", format!("not a valid op: {e}"))));
            }
            Ok(ClientOp::Unsubscribe { sub }) => subs.unsubscribe(&state, &sub).await,
            Ok(ClientOp::Subscribe { sub, objects, from_version, filter, from, snapshot, partitions }) => {
                let op = SubscribeOp { sub: &sub, objects, from_version, filter, from, snapshot, partitions };
                if let Err(e) = subscribe(&state, &outbox, &mut subs, op).await {
                    outbox.send(error_msg(Some(&sub), &e));
                }
            }
        }
        subs.reap(&state);
    }

    subs.close(&state).await;
    drop(outbox);
    let _ = writer.await;
    state.metrics.ws_connections.dec();
}

struct SubscribeOp<'a> {
    sub: &'a str,
    objects: Option<Vec<String>>,
    from_version: Option<u64>,
    filter: Option<String>,
    from: Option<String>,
    snapshot: Option<bool>,
    partitions: Option<Vec<u32>>,
}

async fn subscribe(
    state: &AppState,
    outbox: &Outbox,
    subs: &mut Subscriptions,
    op: SubscribeOp<'_>,
) -> Result<(), ApiError> {
    let forwarded = subs.forwarded;
    let SubscribeOp { sub, objects, from_version, filter, from, snapshot, partitions } = op;
    if sub.is_empty() || sub.len() > 128 {
        return Err(ApiError::bad_request("bad_message", "sub must be 1–128 characters"));
    }
    if let Some(text) = filter {
        if objects.is_some() || from_version.is_some() {
            return Err(ApiError::bad_request(
                "bad_message",
                "a subscription has either \"objects\" (with from_version) or a \"filter\" (with from), not both",
            ));
        }
        return filter::subscribe(state, outbox, subs, sub, &text, from, snapshot.unwrap_or(false), partitions);
    }
    if from.is_some() || snapshot.is_some() || partitions.is_some() {
        return Err(ApiError::bad_request(
            "bad_message",
            "from, snapshot and partitions belong to filter subscriptions; objects resume with from_version",
        ));
    }
    let objects = objects
        .filter(|o| !o.is_empty())
        .ok_or_else(|| ApiError::bad_request("bad_message", "subscribe needs a non-empty \"objects\" list"))?;
    // Every replica (master or standby) publishes the changes it applies, so any node that
    // hosts the partition serves its subscriptions; for the others a relay does.
    let mut placed = Vec::with_capacity(objects.len());
    for key in objects {
        validate_key(&key).map_err(|m| ApiError::bad_request("invalid_key", m))?;
        let p = lightkeeper_storage::partitioner::partition_for(key.as_bytes(), state.partition_count);
        let hosted = state.replicas.contains(p);
        if !hosted && (forwarded || state.cluster.is_single_node()) {
            return Err(ApiError::bad_request(
                "partition_not_hosted",
                format!("{key} is in partition {p}, which node {} does not host", state.node_id),
            ));
        }
        placed.push((key, p, hosted));
    }
    let new = placed.iter().filter(|(k, ..)| !subs.streams.contains_key(&(sub.to_owned(), k.clone()))).count();
    if subs.streams.len() + new > state.limits.max_subscriptions_per_connection {
        return Err(ApiError::bad_request(
            "too_many_subscriptions",
            format!(
                "a connection may hold at most {} object subscriptions",
                state.limits.max_subscriptions_per_connection
            ),
        ));
    }
    let mut relayed: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (key, p, hosted) in placed {
        // Re-subscribing replaces the stream (a client resuming after a gap).
        let k = (sub.to_owned(), key.clone());
        match subs.streams.remove(&k) {
            Some(Stream::Local(old)) => {
                old.task.abort();
                state.hub.release(&key);
            }
            Some(Stream::Relayed(_)) => {}
            None => {
                state.metrics.ws_subscriptions.inc();
            }
        }
        if !hosted {
            subs.streams.insert(k, Stream::Relayed(p));
            relayed.entry(p).or_default().push(key);
            continue;
        }
        subs.spawn_local(state, outbox, sub, &key, from_version);
    }
    for (p, keys) in relayed {
        let relay = subs.relays.entry(p).or_insert_with(|| relay::Relay::start(state.clone(), outbox.clone(), p));
        let cmd = relay::Command::Subscribe { sub: sub.to_owned(), keys, from_version };
        if relay.tx.send(cmd).await.is_err() {
            return Err(ApiError::internal("the subscription relay has stopped"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_marks_the_client_slow_and_stops_sending() {
        let (tx, mut rx) = mpsc::channel(2);
        let outbox = Outbox { tx, slow: CancellationToken::new() };
        assert!(outbox.send("1".into()));
        assert!(outbox.send("2".into()));
        assert!(!outbox.slow.is_cancelled());
        // The third message does not fit: the client is too slow, nothing is dropped silently.
        assert!(!outbox.send("3".into()));
        assert!(outbox.slow.is_cancelled());
        // Once slow, nothing more is queued (the writer sends the error and the 4008 close).
        let _ = rx.try_recv();
        assert!(!outbox.send("4".into()));
    }

    #[test]
    fn client_ops_parse_strictly() {
        let op: ClientOp =
            serde_json::from_str(r#"{"op":"subscribe","sub":"s","objects":["ztf:A"],"from_version":3}"#).unwrap();
        assert!(matches!(op, ClientOp::Subscribe { from_version: Some(3), .. }));
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"subscribe","sub":"s","objcts":[]}"#).is_err());
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"unsubscribe"}"#).is_err());
    }
}
