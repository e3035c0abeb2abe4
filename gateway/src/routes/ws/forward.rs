//! One (subscription, object) stream served from this node's replica: a snapshot (or the
//! history after the client's version), then every update from the hub, each version exactly
//! once and in order.
//!
//! The forwarder subscribes to the object's hub channel *before* reading the current state, so
//! no update falls between snapshot and stream; a version gap is filled from the stored
//! history; a lagged receiver resynchronizes from history, or sends a fresh snapshot when the
//! history no longer reaches back; when placement moves the partition off this node the hub
//! closes the channel and the stream reports where it stopped, so the session moves it to a
//! relay.

use super::{error_msg, Moved, Outbox};
use crate::error::ApiError;
use crate::state::AppState;
use lightkeeper_api::ws::{self, ServerMsg};
use lightkeeper_storage::state::HistoryEntry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

/// What a forwarder needs besides its hub receiver.
pub(super) struct StreamCtx {
    pub(super) state: AppState,
    pub(super) outbox: Outbox,
    pub(super) sub: String,
    pub(super) key: String,
    pub(super) id: u64,
    pub(super) moved_flag: Arc<AtomicBool>,
    pub(super) moved: mpsc::Sender<Moved>,
}

impl StreamCtx {
    async fn report_moved(self, last: Option<u64>) {
        self.moved_flag.store(true, Ordering::Release);
        let _ = self.moved.send(Moved { id: self.id, sub: self.sub, key: self.key, last }).await;
    }
}

/// Whether this node hosts `key`'s partition.
pub(super) fn hosted(state: &AppState, key: &str) -> bool {
    state.replicas.contains(lightkeeper_storage::partitioner::partition_for(key.as_bytes(), state.partition_count))
}

fn update_msg(sub: &str, e: &HistoryEntry) -> String {
    ws::update_text(sub, e.version, &e.summary, &e.new_points, None)
}

/// Sends a snapshot of the current state; returns its version, or `None` (nothing sent) when
/// the partition is no longer hosted here (its state may be being deleted).
async fn snapshot(state: &AppState, outbox: &Outbox, sub: &str, key: &str) -> Result<Option<u64>, ApiError> {
    let store = state.store.clone();
    let k = key.to_owned();
    let obj = tokio::task::spawn_blocking(move || store.get(&k)).await??;
    if !hosted(state, key) {
        return Ok(None);
    }
    let version = obj.as_ref().map_or(0, |o| o.version);
    let summary = obj.map(|o| o.summary());
    outbox.send(
        ServerMsg::Snapshot { sub: sub.to_owned(), key: key.to_owned(), version, object: summary, cursor: None }
            .to_text(),
    );
    Ok(Some(version))
}

/// Sends every version after `last` up to `upto` from history, or a snapshot if history does not
/// reach back. Returns the version the client now has, or `None` (nothing sent) when the
/// partition is no longer hosted here.
async fn catch_up(
    state: &AppState,
    outbox: &Outbox,
    sub: &str,
    key: &str,
    last: u64,
    upto: Option<u64>,
) -> Result<Option<u64>, ApiError> {
    if !hosted(state, key) {
        return Ok(None);
    }
    let store = state.store.clone();
    let k = key.to_owned();
    let current = match upto {
        Some(v) => v,
        None => {
            let s = store.clone();
            let k2 = k.clone();
            tokio::task::spawn_blocking(move || s.get(&k2)).await??.map_or(0, |o| o.version)
        }
    };
    if current == last {
        return Ok(Some(last));
    }
    if current < last {
        let p = lightkeeper_storage::partitioner::partition_for(key.as_bytes(), state.partition_count);
        match state.replicas.get(p) {
            // A standby (or a master still catching up) behind a version the client got from
            // the old master: the stream will bring this replica past it; send nothing until then.
            Some(r) if !r.status.is_serving_master() => return Ok(Some(last)),
            Some(_) => {}
            None => return Ok(None),
        }
        // The master itself never reached that version: the client's claim is wrong; start over.
        return snapshot(state, outbox, sub, key).await;
    }
    let history = tokio::task::spawn_blocking(move || store.history_after(&k, last, current)).await??;
    if !hosted(state, key) {
        return Ok(None);
    }
    match history {
        Some(entries) => {
            let mut v = last;
            for e in &entries {
                outbox.send(update_msg(sub, e));
                v = e.version;
            }
            Ok(Some(v))
        }
        None => snapshot(state, outbox, sub, key).await,
    }
}

pub(super) async fn forward(ctx: StreamCtx, from_version: Option<u64>, mut rx: broadcast::Receiver<Arc<HistoryEntry>>) {
    let (state, outbox, sub, key) = (&ctx.state, &ctx.outbox, ctx.sub.as_str(), ctx.key.as_str());
    let start = match from_version {
        Some(v) => catch_up(state, outbox, sub, key, v, None).await,
        None => snapshot(state, outbox, sub, key).await,
    };
    let mut last = match start {
        Ok(Some(v)) => v,
        Ok(None) => return ctx.report_moved(from_version).await,
        Err(e) => {
            outbox.send(error_msg(Some(sub), &e));
            return;
        }
    };
    loop {
        if outbox.slow.is_cancelled() {
            return;
        }
        let result = match rx.recv().await {
            Ok(u) if u.version <= last => continue,
            Ok(u) if u.version == last + 1 => {
                if !outbox.send(update_msg(sub, &u)) {
                    return;
                }
                last = u.version;
                continue;
            }
            // A gap: fill it (and this update) from history.
            Ok(u) => catch_up(state, outbox, sub, key, last, Some(u.version)).await,
            Err(broadcast::error::RecvError::Lagged(_)) => catch_up(state, outbox, sub, key, last, None).await,
            // The hub closes a key's channel when this node stops hosting its partition.
            Err(broadcast::error::RecvError::Closed) => return ctx.report_moved(Some(last)).await,
        };
        match result {
            Ok(Some(v)) => last = v,
            Ok(None) => return ctx.report_moved(Some(last)).await,
            Err(e) => {
                outbox.send(error_msg(Some(sub), &e));
                return;
            }
        }
    }
}
