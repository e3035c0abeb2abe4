//! Subscriptions to partitions this node does not host, relayed from a node that does.
//!
//! Only a replica of a partition sees its updates, so a subscription to an object whose
//! partition lives elsewhere is carried by a *relay*: one task per (client connection,
//! partition) holding one internal WebSocket to a node hosting the partition — its master when
//! the coordinator's table names one, else the configured replicas in turn. The relay speaks the
//! public protocol upstream (marked `x-lightkeeper-forwarded`, so the upstream serves it itself
//! and never relays again) and passes the upstream's messages to the client unchanged.
//!
//! It remembers the last version it delivered of every object. When the upstream goes away — its
//! node was killed, drained or restarted — the relay connects to the partition's next master (or
//! another replica) and resubscribes each object `from_version` = that last version, so the
//! client sees neither a gap nor a duplicate, and no error, across a failover. Anything at or
//! below the last delivered version is dropped; an update that skips versions makes the relay
//! ask again from the last one. Only when no replica has answered for the route deadline does
//! the client get an `unavailable` error (and the relay keeps trying).

use super::{error_msg, Outbox};
use crate::error::ApiError;
use crate::routing::FORWARDED;
use crate::state::AppState;
use futures::{SinkExt, StreamExt};
use lightkeeper_api::ws::{ClientOp, Envelope, MsgType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

/// Commands queued per relay before the client's session waits.
const COMMANDS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const BACKOFF_START: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(250);
/// How often the relay pings its upstream; an upstream silent for [`UPSTREAM_SILENCE`] (a paused
/// or cut-off node never closes its socket) is given up for the partition's next master.
const PING_EVERY: Duration = Duration::from_millis(300);
const UPSTREAM_SILENCE: Duration = Duration::from_millis(1_000);
/// Longest wait to hand the upstream one frame.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);
/// An upstream that stayed up this long was good: the next loss starts over from the best
/// candidate with no back-off; one that dropped sooner moves on to the next with back-off.
const GOOD_CONNECTION: Duration = Duration::from_secs(1);

pub(super) enum Command {
    Subscribe { sub: String, keys: Vec<String>, from_version: Option<u64> },
    Unsubscribe { sub: String },
}

/// The session's handle on one relay; dropping it ends the relay.
pub(super) struct Relay {
    pub tx: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

impl Relay {
    pub fn start(state: AppState, outbox: Outbox, partition: u32) -> Relay {
        let (tx, rx) = mpsc::channel(COMMANDS);
        let task = tokio::spawn(run(state, outbox, partition, rx));
        Relay { tx, task }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// (sub, key) → the last version delivered to the client (`None`: nothing yet, a snapshot is due).
type Streams = BTreeMap<(String, String), Option<u64>>;

fn apply(streams: &mut Streams, cmd: &Command) {
    match cmd {
        Command::Subscribe { sub, keys, from_version } => {
            for k in keys {
                streams.insert((sub.clone(), k.clone()), *from_version);
            }
        }
        Command::Unsubscribe { sub } => streams.retain(|(s, _), _| s != sub),
    }
}

fn subscribe_op(sub: &str, key: &str, last: Option<u64>) -> String {
    ClientOp::subscribe_objects(sub, vec![key.to_owned()], last).to_text()
}

/// Base URLs of the nodes to try for `partition`, the likeliest master first.
pub(super) fn upstreams(state: &AppState, partition: u32) -> Vec<String> {
    crate::routing::hosting_nodes(state, partition).into_iter().filter_map(|n| state.peer_url(&n)).collect()
}

/// Why a connection to an upstream ended.
enum Ended {
    /// The client is gone or too slow: the relay ends.
    Client,
    /// The upstream went away or cannot serve the partition: try the next one.
    Upstream(String),
}

async fn run(state: AppState, outbox: Outbox, partition: u32, mut rx: mpsc::Receiver<Command>) {
    let mut streams = Streams::new();
    let mut attempt = 0usize;
    let mut backoff = BACKOFF_START;
    let mut down_since: Option<Instant> = None;
    let deadline = Duration::from_millis(state.cluster.route_deadline_ms);
    loop {
        if streams.is_empty() {
            match rx.recv().await {
                Some(cmd) => apply(&mut streams, &cmd),
                None => return,
            }
            continue;
        }
        let candidates = upstreams(&state, partition);
        let why = match candidates.get(attempt % candidates.len().max(1)) {
            None => format!("partition {partition} has no replica among the configured peers"),
            Some(base) => match connect(&state, base).await {
                Err(e) => e,
                Ok(ws) => {
                    tracing::debug!(partition, upstream = %base, "relaying subscriptions");
                    let connected = Instant::now();
                    match pump(&outbox, ws, &mut streams, &mut rx).await {
                        Ended::Client => return,
                        Ended::Upstream(why) if connected.elapsed() >= GOOD_CONNECTION => {
                            // Start over from the best candidate: the table may name a new master.
                            tracing::debug!(partition, upstream = %base, reason = %why, "relay upstream lost");
                            attempt = 0;
                            backoff = BACKOFF_START;
                            down_since = None;
                            continue;
                        }
                        Ended::Upstream(why) => why,
                    }
                }
            },
        };
        attempt += 1;
        let since = *down_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= deadline {
            let e = ApiError::Unavailable(format!(
                "no replica of partition {partition} has accepted the subscription for {} ms ({why}); still trying",
                deadline.as_millis()
            ));
            tracing::warn!(partition, reason = %why, "relayed subscription has no upstream");
            if !outbox.send(error_msg(None, &e)) {
                return;
            }
            down_since = Some(Instant::now());
        }
        // Wait before the next attempt, still taking the client's commands.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                () = outbox.slow.cancelled() => return,
                cmd = rx.recv() => match cmd {
                    Some(cmd) => apply(&mut streams, &cmd),
                    None => return,
                },
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

pub(super) type Upstream = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket to another node, as a node: with the cluster token (`crate::access`).
pub(super) async fn connect(state: &AppState, base: &str) -> Result<Upstream, String> {
    let url = format!("{}/v1/ws", base.replacen("http", "ws", 1));
    let mut req = url.as_str().into_client_request().map_err(|e| format!("{url}: {e}"))?;
    req.headers_mut().insert(FORWARDED, HeaderValue::from_static("relay"));
    let bearer = format!("Bearer {}", state.access.node_token());
    let value = HeaderValue::from_str(&bearer).map_err(|e| format!("the cluster token: {e}"))?;
    req.headers_mut().insert(axum::http::header::AUTHORIZATION, value);
    let tls = state.peer_tls.clone().map(tokio_tungstenite::Connector::Rustls);
    let connect = tokio_tungstenite::connect_async_tls_with_config(req, None, true, tls);
    match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("connecting to {url}: {e}")),
        Err(_) => Err(format!("connecting to {url}: timed out")),
    }
}

/// Sends one frame to the upstream, giving up after [`SEND_TIMEOUT`].
async fn send_up(ws: &mut Upstream, msg: Message) -> Result<(), Ended> {
    match tokio::time::timeout(SEND_TIMEOUT, ws.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Ended::Upstream(format!("sending to the upstream: {e}"))),
        Err(_) => Err(Ended::Upstream("the upstream does not take frames".into())),
    }
}

/// Carries the subscriptions over one upstream connection until it or the client ends.
async fn pump(outbox: &Outbox, mut ws: Upstream, streams: &mut Streams, rx: &mut mpsc::Receiver<Command>) -> Ended {
    match carry(outbox, &mut ws, streams, rx).await {
        Ok(never) => match never {},
        Err(ended) => {
            let _ = tokio::time::timeout(Duration::from_millis(100), ws.close(None)).await;
            ended
        }
    }
}

async fn carry(
    outbox: &Outbox,
    ws: &mut Upstream,
    streams: &mut Streams,
    rx: &mut mpsc::Receiver<Command>,
) -> Result<std::convert::Infallible, Ended> {
    for ((sub, key), last) in streams.iter() {
        send_up(ws, Message::text(subscribe_op(sub, key, *last))).await?;
    }
    let mut heard = Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            () = outbox.slow.cancelled() => return Err(Ended::Client),
            _ = ping.tick() => {
                if heard.elapsed() > UPSTREAM_SILENCE {
                    return Err(Ended::Upstream(format!("the upstream has been silent for {} ms", heard.elapsed().as_millis())));
                }
                send_up(ws, Message::Ping(Default::default())).await?;
                continue;
            }
            cmd = rx.recv() => {
                let Some(cmd) = cmd else { return Err(Ended::Client) };
                apply(streams, &cmd);
                let op = match &cmd {
                    Command::Subscribe { sub, keys, from_version } => {
                        ClientOp::subscribe_objects(sub.clone(), keys.clone(), *from_version)
                    }
                    Command::Unsubscribe { sub } => ClientOp::Unsubscribe { sub: sub.clone() },
                };
                send_up(ws, Message::text(op.to_text())).await?;
                continue;
            }
            msg = ws.next() => msg,
        };
        heard = Instant::now();
        let text = match msg {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(f))) => return Err(Ended::Upstream(format!("the upstream closed ({f:?})"))),
            None | Some(Err(_)) => return Err(Ended::Upstream("the upstream connection broke".into())),
            Some(Ok(_)) => continue, // pong, ping (answered by the library)
        };
        let Ok(envelope) = serde_json::from_str::<Envelope>(text.as_str()) else {
            return Err(Ended::Upstream("the upstream sent a frame that is not a server message".into()));
        };
        match deliver(outbox, streams, envelope, text.as_str().to_owned()) {
            Delivery::Sent | Delivery::Dropped => {}
            Delivery::ClientGone => return Err(Ended::Client),
            Delivery::Resync(op) => send_up(ws, Message::text(op)).await?,
            Delivery::NotHosted(why) => return Err(Ended::Upstream(why)),
        }
    }
}

enum Delivery {
    Sent,
    /// A duplicate, or a message for a subscription already ended.
    Dropped,
    ClientGone,
    /// Versions were skipped: ask the upstream again from the last one delivered.
    Resync(String),
    /// The upstream cannot serve (the partition is not hosted there, or it reported a
    /// connection-level error): move to another one.
    NotHosted(String),
}

/// Passes one upstream message (`text`, read as `msg`) to the client untouched, exactly once
/// and in version order.
fn deliver(outbox: &Outbox, streams: &mut Streams, msg: Envelope, text: String) -> Delivery {
    let Some(sub) = msg.sub else {
        // About the relay's connection as a whole (it was too slow, the node is shutting
        // down…): not the client's business; the relay moves to another upstream.
        let code = msg.error.map(|e| e.code).unwrap_or_default();
        return Delivery::NotHosted(format!("the upstream reported {code:?}"));
    };
    if msg.kind == MsgType::Error {
        if let Some(e) = msg.error.filter(|e| e.code == "partition_not_hosted") {
            return Delivery::NotHosted(e.message);
        }
        return if outbox.send(text) { Delivery::Sent } else { Delivery::ClientGone };
    }
    let (Some(key), Some(version)) = (msg.key, msg.version) else {
        return if outbox.send(text) { Delivery::Sent } else { Delivery::ClientGone };
    };
    let Some(last) = streams.get_mut(&(sub.clone(), key.clone())) else { return Delivery::Dropped };
    let snapshot = msg.kind == MsgType::Snapshot;
    match (snapshot, *last) {
        // A fresh subscription starts with its snapshot; anything before it is a leftover of a
        // replaced stream.
        (true, None) => {}
        (false, None) => return Delivery::Dropped,
        // A snapshot never takes the client back to a version older than it has.
        (true, Some(l)) if version <= l => return Delivery::Dropped,
        (true, _) => {}
        (false, Some(l)) if version <= l => return Delivery::Dropped,
        (false, Some(l)) if version > l + 1 => return Delivery::Resync(subscribe_op(&sub, &key, Some(l))),
        _ => {}
    }
    *last = Some(version);
    if outbox.send(text) {
        Delivery::Sent
    } else {
        Delivery::ClientGone
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_api::error::ErrorBody;
    use lightkeeper_api::ws::ServerMsg;
    use tokio_util::sync::CancellationToken;

    fn outbox() -> (Outbox, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(16);
        (Outbox { tx, slow: CancellationToken::new() }, rx)
    }

    /// A message as the upstream sends it (the object left out: the relay never reads it).
    fn msg(text: String) -> (Envelope, String) {
        (serde_json::from_str(&text).unwrap(), text)
    }

    fn update(v: u64) -> (Envelope, String) {
        msg(format!(r#"{{"type":"update","sub":"s","key":"ztf:A","version":{v}}}"#))
    }

    fn error(sub: Option<&str>, code: &str) -> (Envelope, String) {
        let error = ErrorBody { code: code.into(), message: "m".into() };
        msg(ServerMsg::Error { sub: sub.map(str::to_owned), error }.to_text())
    }

    fn send(out: &Outbox, streams: &mut Streams, (env, text): (Envelope, String)) -> Delivery {
        deliver(out, streams, env, text)
    }

    #[test]
    fn each_version_is_delivered_once_in_order_across_upstreams() {
        let (out, mut rx) = outbox();
        let mut streams = Streams::new();
        apply(&mut streams, &Command::Subscribe { sub: "s".into(), keys: vec!["ztf:A".into()], from_version: None });
        let snap = || {
            msg(ServerMsg::Snapshot { sub: "s".into(), key: "ztf:A".into(), version: 3, object: None, cursor: None }
                .to_text())
        };
        assert!(matches!(send(&out, &mut streams, snap()), Delivery::Sent));
        assert!(matches!(send(&out, &mut streams, update(4)), Delivery::Sent));
        // The old upstream dies; the new one replays 4 and a stale snapshot: both are dropped.
        assert!(matches!(send(&out, &mut streams, update(4)), Delivery::Dropped));
        assert!(matches!(send(&out, &mut streams, snap()), Delivery::Dropped));
        assert_eq!(
            subscribe_op("s", "ztf:A", streams[&("s".into(), "ztf:A".into())]),
            r#"{"op":"subscribe","sub":"s","objects":["ztf:A"],"from_version":4}"#
        );
        // A skipped version asks again from the last delivered one instead of passing the gap on.
        match send(&out, &mut streams, update(7)) {
            Delivery::Resync(op) => assert!(op.contains("\"from_version\":4"), "{op}"),
            _ => panic!("a gap must resync"),
        }
        assert!(matches!(send(&out, &mut streams, update(5)), Delivery::Sent));
        let sent: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|t| serde_json::from_str::<Envelope>(&t).unwrap().version.unwrap())
            .collect();
        assert_eq!(sent, vec![3, 4, 5]);
    }

    #[test]
    fn not_hosted_moves_on_and_other_errors_reach_the_client() {
        let (out, mut rx) = outbox();
        let mut streams = Streams::new();
        assert!(matches!(send(&out, &mut streams, error(Some("s"), "partition_not_hosted")), Delivery::NotHosted(_)));
        assert!(matches!(send(&out, &mut streams, error(Some("s"), "invalid_key")), Delivery::Sent));
        assert!(rx.try_recv().unwrap().contains("invalid_key"));
        // An update for a subscription the client has ended is not delivered.
        assert!(matches!(send(&out, &mut streams, update(1)), Delivery::Dropped));
        // A connection-level error of the upstream is not passed on: the relay moves on.
        assert!(matches!(send(&out, &mut streams, error(None, "slow_consumer")), Delivery::NotHosted(_)));
        // Until its snapshot, a fresh subscription takes no update (a leftover of a replaced stream).
        apply(&mut streams, &Command::Subscribe { sub: "s".into(), keys: vec!["ztf:A".into()], from_version: None });
        assert!(matches!(send(&out, &mut streams, update(9)), Delivery::Dropped));
    }
}
