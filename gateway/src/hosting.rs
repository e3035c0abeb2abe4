//! Hosting what the coordinator places here: a cluster node starts a standby for each
//! partition the replicated table places on it, and stops (then deletes) each replica placed
//! elsewhere once it no longer masters the partition.
//!
//! Why apart from [`crate::replicas`]: the set of replicas is a plain container the handlers
//! read; following the placement needs the whole node (hub, cache, store, coordinator). Keeping
//! the two apart keeps the dependency one-way: `hosting` → `state` → `replicas`.

use crate::coordinator::Coordinator;
use crate::state::AppState;
use lightkeeper_partition::worker::StartRole;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How often a cluster node compares what it hosts with the coordinator's placement.
const FOLLOW_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Keeps this node's replicas equal to what the coordinator's table places on it, until `stop`.
///
/// The table is read from the local Raft state machine — on a restart, the copy persisted here,
/// so a node serves what it hosted even before the coordinator has a leader. A new replica
/// starts as a standby (the configured-master rule of [`StartRole`] applies only where the
/// changelog has no master among the replicas). A replica that is no longer placed here is
/// stopped once it is not the serving master (placement hands mastership off first); its
/// WebSocket subscribers are moved to a relay, the response cache is cleared, and its local
/// state is deleted.
pub async fn follow_placement(state: AppState, coordinator: Arc<Coordinator>, stop: CancellationToken) {
    let me = state.node_id.clone();
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let table = coordinator.read(|s| s.placement());
        let placed = (0..state.partition_count).all(|p| table.contains_key(&p));
        let first = !state.replicas.is_placed();
        if first && !placed {
            continue; // the leader has not seeded the table yet
        }
        let hosted = state.replicas.snapshot();
        for (p, replicas) in table.iter().filter(|(_, rs)| rs.contains(&me)) {
            if !hosted.contains_key(p) {
                host(&state, *p, replicas, !first);
            }
        }
        for (p, r) in hosted.iter() {
            if table.get(p).is_none_or(|rs| rs.contains(&me)) {
                continue; // placed here (or not placed yet)
            }
            if r.status.is_serving_master() {
                tracing::debug!(
                    partition = p,
                    "not placed here any more, but still the master: waiting for a handover"
                );
                continue;
            }
            // The follower waits for the purge, so the partition cannot be hosted here again
            // while its old state is being deleted.
            if release(&state, *p).await {
                purge(&state, *p).await;
            }
        }
        if first {
            state.replicas.mark_placed();
            purge_leftovers(&state, &table).await;
        }
    }
}

/// Selects the object keys of partition `p` (of `n`).
fn owned_by(n: u32, p: u32) -> impl Fn(&str) -> bool + Copy {
    move |key: &str| lightkeeper_storage::partitioner::partition_for(key.as_bytes(), n) == p
}

/// Starts a standby of `p` here (see [`follow_placement`]).
fn host(state: &AppState, p: u32, replicas: &[String], background: bool) {
    let start = StartRole {
        single_node: false,
        configured_master: replicas.first() == Some(&state.node_id),
        replicas: replicas.to_vec(),
    };
    match state.replicas.host(p, start, background) {
        Ok(()) => {
            state.cache.clear();
            tracing::info!(partition = p, ?replicas, "hosting a replica of the partition");
        }
        Err(e) => tracing::error!(partition = p, error = %e, "could not start a replica thread"),
    }
}

/// Stops this node's replica of `p`; its subscribers move to relays (the hub closes its
/// channels) and the response cache forgets what it rendered. False if its thread could not be
/// confirmed stopped (its state must then not be deleted).
async fn release(state: &AppState, p: u32) -> bool {
    let s = state.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || s.replicas.release(p)).await {
        tracing::warn!(partition = p, error = %e, "stopping the replica failed");
        return false;
    }
    state.hub.close(owned_by(state.partition_count, p));
    state.hub.close_feed(p);
    state.cache.clear();
    tracing::info!(partition = p, "stopped this node's replica: the partition is placed on other nodes");
    true
}

/// Deletes partition `p`'s local state, off the async runtime.
async fn purge(state: &AppState, p: u32) {
    let (store, owned, started) = (state.store.clone(), owned_by(state.partition_count, p), std::time::Instant::now());
    match tokio::task::spawn_blocking(move || store.purge_partition(p, &owned)).await {
        Ok(Ok(objects)) => tracing::info!(
            partition = p,
            objects,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "deleted the partition's local state"
        ),
        Ok(Err(e)) => tracing::warn!(
            partition = p,
            error = %e,
            "could not delete the partition's local state; a replica started here again restores from scratch"
        ),
        Err(e) => tracing::warn!(partition = p, error = %e, "the state deletion task failed"),
    }
}

/// Deletes what a purge cut short by a shutdown left: the state of partitions placed elsewhere
/// that still have progress here (nothing will read it again).
async fn purge_leftovers(state: &AppState, table: &std::collections::BTreeMap<u32, Vec<String>>) {
    let elsewhere: Vec<u32> = table.iter().filter(|(_, rs)| !rs.contains(&state.node_id)).map(|(p, _)| *p).collect();
    let store = state.store.clone();
    let find =
        move || elsewhere.into_iter().filter(|p| store.progress(*p).is_ok_and(|pr| pr != Default::default())).collect();
    let leftovers: Vec<u32> = tokio::task::spawn_blocking(find).await.unwrap_or_default();
    for p in leftovers {
        purge(state, p).await;
    }
}
