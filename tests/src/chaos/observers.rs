//! The soak's clients, each behaving as a careful user of the API would, and each checking its
//! part of the contract as it goes:
//!
//! - [`reader`]: closed-loop reads of random objects, trying the next node when one refuses
//!   the connection, hangs (a paused node), or answers 503 — for up to [`READ_BUDGET`] per
//!   read. Any other answer than 200, or no answer within the budget, is a failed read.
//! - [`object_subscriber`]: one WebSocket following a set of objects, which on any trouble
//!   (closed, silent for [`SILENCE`], a `slow_consumer` error) reconnects to the next node and
//!   resumes each object `from_version` its last version. Every version must arrive exactly
//!   once, in order.
//! - [`filter_subscriber`]: the same for a filter subscription matching every object of the
//!   pool, resumed from the last `cursor`.

use super::history::{History, Task};
use lightkeeper_clients::api::ws::{ClientOp, ServerMsg};
use lightkeeper_clients::{Client, Subscription};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The longest a read may take, across nodes and retries, before it counts as failed.
pub const READ_BUDGET: Duration = Duration::from_secs(15);
/// One attempt on one node (a paused node's connection hangs rather than fails).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// A subscription silent this long while alerts flow is treated as dead and resumed elsewhere.
pub const SILENCE: Duration = Duration::from_secs(3);
/// A subscriber's pause before it reconnects (a node that refuses now, say during a broker
/// outage, would otherwise be asked again at once, hundreds of times a second).
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// What the readers saw.
#[derive(Debug, Default, Clone)]
pub struct ReadStats {
    pub ok: u64,
    pub failed: u64,
    /// Attempts passed to another node.
    pub retried: u64,
    pub slowest: Duration,
}

/// Reads random objects of `keys` through `urls` until `stop`.
pub fn reader(
    urls: Vec<String>,
    keys: Vec<String>,
    seed: u64,
    stats: Arc<Mutex<ReadStats>>,
    task: Task,
) -> tokio::task::JoinHandle<()> {
    let Task { history, stop } = task;
    tokio::spawn(async move {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let http = reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build().expect("client");
        let mut next_node = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let key = &keys[rng.random_range(0..keys.len())];
            let started = Instant::now();
            let mut last = String::new();
            let mut answer = None;
            let mut retried = 0;
            while started.elapsed() < READ_BUDGET {
                let url = &urls[next_node % urls.len()];
                match http.get(format!("{url}/v1/objects/{key}")).send().await {
                    Ok(r) if r.status() != 503 => {
                        answer = Some((r.status().as_u16(), url.clone(), r.text().await.unwrap_or_default()));
                        break;
                    }
                    Ok(r) => last = format!("{url}: 503 {}", r.text().await.unwrap_or_default()),
                    Err(e) => last = format!("{url}: {e}"),
                }
                retried += 1;
                next_node += 1;
                if retried % urls.len() == 0 {
                    // Every node refused: back off a little before the next round.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            next_node += 1;
            let took = started.elapsed();
            let mut s = stats.lock().unwrap();
            s.retried += retried as u64;
            s.slowest = s.slowest.max(took);
            match answer {
                Some((200, _, _)) => s.ok += 1,
                Some((status, url, body)) => {
                    s.failed += 1;
                    history.violation(format!("read of {key} from {url}: {status} {body}"));
                }
                None => {
                    s.failed += 1;
                    history.violation(format!("read of {key}: no node answered in {took:?} (last: {last})"));
                }
            }
        }
    })
}

/// What a subscriber has seen, shared with the harness (which waits on it at the end).
#[derive(Debug, Default)]
pub struct Seen {
    /// Object key → last version delivered.
    pub last: BTreeMap<String, u64>,
    pub updates: u64,
    pub reconnects: u64,
    pub gaps: u64,
    pub duplicates: u64,
}

/// Which kind of subscriber checks a version (a filter subscription's gap is recorded apart:
/// [`History::filter_gap`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stream {
    Objects,
    Filter,
}

/// Checks `version` of `key` against what `seen` had: it must be the next one.
fn accept(seen: &mut Seen, stream: Stream, who: &str, key: &str, version: u64, history: &History) {
    let last = seen.last.get(key).copied().unwrap_or(0);
    seen.updates += 1;
    if version == last + 1 {
        seen.last.insert(key.to_owned(), version);
    } else if version <= last {
        seen.duplicates += 1;
        history.violation(format!("{who}: {key} version {version} again (had {last})"));
    } else {
        seen.gaps += 1;
        let what = format!("{who}: {key} jumped from version {last} to {version}");
        match stream {
            Stream::Objects => history.violation(what),
            Stream::Filter => history.filter_gap(what),
        }
        seen.last.insert(key.to_owned(), version);
    }
}

/// Connects to the first node of `urls` from `*next` that accepts, advancing `*next`.
async fn connect(urls: &[String], next: &mut usize, stop: &AtomicBool) -> Option<(String, Client)> {
    while !stop.load(Ordering::Relaxed) {
        let url = urls[*next % urls.len()].clone();
        *next += 1;
        if let Ok(c) = Client::new(&url) {
            // Only nodes that answer at all: a paused node would hold the handshake.
            if tokio::time::timeout(ATTEMPT_TIMEOUT, c.healthz()).await.is_ok_and(|r| r.is_ok()) {
                return Some((url, c));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Follows `keys` from node `first` on; see the module docs.
pub fn object_subscriber(
    name: String,
    urls: Vec<String>,
    first: usize,
    keys: Vec<String>,
    seen: Arc<Mutex<Seen>>,
    task: Task,
) -> tokio::task::JoinHandle<()> {
    let Task { history, stop } = task;
    tokio::spawn(async move {
        let mut next = first;
        let mut connections = 0u64;
        'connect: while let Some((url, client)) = connect(&urls, &mut next, &stop).await {
            connections += 1;
            // Resume each object after its last version (0: from the start), one subscribe
            // operation per distinct version.
            let mut by_version: BTreeMap<u64, Vec<String>> = BTreeMap::new();
            {
                let s = seen.lock().unwrap();
                for k in &keys {
                    by_version.entry(s.last.get(k).copied().unwrap_or(0)).or_default().push(k.clone());
                }
            }
            let mut sub: Option<Subscription> = None;
            for (i, (version, objects)) in by_version.into_iter().enumerate() {
                let sub_name = format!("c{connections}-{i}");
                let r = match &mut sub {
                    None => {
                        let refs: Vec<&str> = objects.iter().map(String::as_str).collect();
                        client.subscribe(&sub_name, &refs, Some(version)).await.map(|s| sub = Some(s))
                    }
                    Some(s) => s.send(&ClientOp::subscribe_objects(sub_name, objects, Some(version))).await,
                };
                if let Err(e) = r {
                    history.record("sub_connect_failed", json!({ "who": name, "node": url, "error": e.to_string() }));
                    continue 'connect;
                }
            }
            let Some(mut sub) = sub else { return };
            history.record("sub_connected", json!({ "who": name, "node": url, "connection": connections }));
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let why = match sub.next(SILENCE).await {
                    Ok(Some(ServerMsg::Update { key, version, .. })) => {
                        accept(&mut seen.lock().unwrap(), Stream::Objects, &name, &key, version, &history);
                        continue;
                    }
                    Ok(Some(ServerMsg::Snapshot { key, version, .. })) => {
                        let last = seen.lock().unwrap().last.get(&key).copied().unwrap_or(0);
                        if version > last {
                            // Resuming gives the changes after `from_version`; a snapshot of a
                            // newer version means the history between was not available.
                            accept(&mut seen.lock().unwrap(), Stream::Objects, &name, &key, version, &history);
                        }
                        continue;
                    }
                    Ok(Some(ServerMsg::Error { error, .. })) => format!("error {}: {}", error.code, error.message),
                    Ok(Some(other)) => {
                        history.violation(format!("{name}: unexpected message {other:?}"));
                        continue;
                    }
                    Ok(None) => "closed or silent".to_owned(),
                    Err(e) => e.to_string(),
                };
                seen.lock().unwrap().reconnects += 1;
                history.record("sub_reconnect", json!({ "who": name, "node": url, "why": why }));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue 'connect;
            }
        }
    })
}

/// What a filter subscriber has seen besides versions.
#[derive(Debug, Default)]
pub struct FilterSeen {
    pub seen: Seen,
    pub cursor: Option<String>,
}

/// Follows the filter `filter` (it must match every object of the pool from its first alert
/// on) from node `first` on; see the module docs.
pub fn filter_subscriber(
    name: String,
    urls: Vec<String>,
    first: usize,
    filter: String,
    state: Arc<Mutex<FilterSeen>>,
    subscribed: tokio::sync::oneshot::Sender<()>,
    task: Task,
) -> tokio::task::JoinHandle<()> {
    let Task { history, stop } = task;
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed);
        let mut next = first;
        let mut connections = 0u64;
        'connect: while let Some((url, client)) = connect(&urls, &mut next, &stop).await {
            connections += 1;
            let from = state.lock().unwrap().cursor.clone();
            let mut sub =
                match client.subscribe_filter(&format!("f{connections}"), &filter, from.as_deref(), false).await {
                    Ok(s) => s,
                    Err(e) => {
                        history
                            .record("sub_connect_failed", json!({ "who": name, "node": url, "error": e.to_string() }));
                        continue 'connect;
                    }
                };
            history.record("sub_connected", json!({ "who": name, "node": url, "from": from }));
            loop {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let why = match sub.next(SILENCE).await {
                    Ok(Some(ServerMsg::Subscribed { cursor, .. })) => {
                        state.lock().unwrap().cursor = Some(cursor);
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                        continue;
                    }
                    Ok(Some(ServerMsg::Update { key, version, cursor, .. })) => {
                        let mut s = state.lock().unwrap();
                        let (gaps, duplicates) = (s.seen.gaps, s.seen.duplicates);
                        accept(&mut s.seen, Stream::Filter, &name, &key, version, &history);
                        if (s.seen.gaps, s.seen.duplicates) != (gaps, duplicates) {
                            // Where the stream was and where it went: which partition's
                            // position moved past the missing change.
                            history.record(
                                "filter_jump",
                                json!({ "who": name, "key": key, "node": url, "before": s.cursor, "after": cursor }),
                            );
                        }
                        if cursor.is_some() {
                            s.cursor = cursor;
                        }
                        continue;
                    }
                    Ok(Some(ServerMsg::Error { error, .. })) => format!("error {}: {}", error.code, error.message),
                    Ok(Some(other)) => {
                        history.violation(format!("{name}: unexpected message {other:?}"));
                        continue;
                    }
                    Ok(None) => "closed or silent".to_owned(),
                    Err(e) => e.to_string(),
                };
                state.lock().unwrap().seen.reconnects += 1;
                history.record("sub_reconnect", json!({ "who": name, "node": url, "why": why }));
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue 'connect;
            }
        }
    })
}

/// Keys of `seen` whose last version is not the one `want` gives (absent counts as 0).
pub fn behind(seen: &Seen, want: &BTreeMap<String, u64>, keys: &BTreeSet<String>) -> Vec<String> {
    keys.iter()
        .filter(|k| seen.last.get(*k).copied().unwrap_or(0) != want.get(*k).copied().unwrap_or(0))
        .cloned()
        .collect()
}
