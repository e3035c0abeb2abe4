//! Failure detection, automatic failover and rebalancing.
//!
//! **Detection runs on every member**, not only the leader: every [`POLL`] each node asks every
//! node for its `/v1/cluster` view (with a short timeout). That is both the liveness probe and the
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
//!   its `POST /v1/admin/partitions/{p}/promote` — the slice-2 protocol: drain the old master if
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

use super::placement::{self, Step};
use super::types::{ClusterState, Request};
use super::Coordinator;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const POLL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);
const SILENCE: Duration = Duration::from_millis(1_000);
/// How long a returning node must stay up before masters are moved back to it.
const REJOIN_HOLD: Duration = Duration::from_secs(3);
/// Time limit of one promotion call (it may have to catch up a standby).
const PROMOTE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a partition may have a live master that does not serve it (a handover in flight
/// takes milliseconds) before a standby is promoted.
const MASTERLESS_GRACE: Duration = Duration::from_secs(3);
/// How long a partition may wait for its preferred master's first start, when that node is
/// down, before a standby starts the partition's first epoch instead.
const FIRST_MASTER_GRACE: Duration = Duration::from_secs(10);
/// How often a failover that cannot proceed is logged again.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// One replica as its node reported it.
#[derive(Debug, Clone, PartialEq)]
struct Replica {
    role: String,
    ready: bool,
    lag: u64,
}

#[derive(Debug, Default)]
struct NodeHealth {
    last_ok: Option<Instant>,
    /// The last probe's connection was refused.
    refused: bool,
    /// Since when the node has answered without a death in between.
    up_since: Option<Instant>,
    draining: bool,
    partitions: BTreeMap<u32, Replica>,
}

impl NodeHealth {
    fn dead(&self, watching_since: Instant, now: Instant) -> bool {
        self.refused || now.duration_since(self.last_ok.unwrap_or(watching_since)) > SILENCE
    }

    fn standby_within(&self, partition: u32, max_lag: u64) -> Option<u64> {
        match self.partitions.get(&partition) {
            Some(r) if r.role == "standby" && r.ready && r.lag <= max_lag => Some(r.lag),
            _ => None,
        }
    }

    /// The node's replica of `partition` is ready: a master, or a standby within `max_lag`.
    fn replica_within(&self, partition: u32, max_lag: u64) -> bool {
        self.partitions.get(&partition).is_some_and(|r| r.ready && (r.role == "master" || r.lag <= max_lag))
    }
}

enum Probe {
    Ok(Value),
    Refused,
    Silent,
}

async fn probe(client: &reqwest::Client, url: &str) -> Probe {
    match client.get(format!("{url}/v1/cluster")).timeout(PROBE_TIMEOUT).send().await {
        Ok(r) => match r.json::<Value>().await {
            Ok(v) => Probe::Ok(v),
            Err(_) => Probe::Silent,
        },
        Err(e) if refused(&e) => Probe::Refused,
        Err(_) => Probe::Silent,
    }
}

/// Whether the connection was actively refused (not a timeout or a name lookup failure, which
/// reqwest also reports as connect errors).
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// What this member knows of the cluster from its own probes.
struct View {
    since: Instant,
    nodes: BTreeMap<String, NodeHealth>,
    /// Partition → (epoch, master): the newest epoch any replica reports, with the master that
    /// started it (replicas learn it from the changelog's epoch markers, so a master that died
    /// before anyone probed it as master is still known).
    masters: BTreeMap<u32, (u64, String)>,
}

impl View {
    fn new() -> View {
        View { since: Instant::now(), nodes: BTreeMap::new(), masters: BTreeMap::new() }
    }

    fn record(&mut self, name: &str, result: Probe, now: Instant) {
        let h = self.nodes.entry(name.to_owned()).or_default();
        match result {
            Probe::Ok(v) => {
                if h.up_since.is_none() || h.dead(self.since, now) {
                    h.up_since = Some(now);
                }
                h.last_ok = Some(now);
                h.refused = false;
                h.draining = v["draining"] == true;
                h.partitions.clear();
                let mut masters = Vec::new();
                for p in v["partitions"].as_array().into_iter().flatten() {
                    let (Some(id), Some(role)) = (p["partition"].as_u64(), p["role"].as_str()) else { continue };
                    let ready = p["ready"] == true;
                    let lag = p["changelog_lag"].as_u64().unwrap_or(u64::MAX);
                    h.partitions.insert(id as u32, Replica { role: role.to_owned(), ready, lag });
                    if let (Some(epoch), Some(master)) = (p["epoch"].as_u64(), p["master"].as_str()) {
                        masters.push((id as u32, epoch, master));
                    }
                }
                for (p, epoch, master) in masters {
                    self.learn(p, epoch, master);
                }
            }
            Probe::Refused | Probe::Silent => {
                h.refused = matches!(result, Probe::Refused);
                if h.dead(self.since, now) {
                    h.up_since = None;
                }
            }
        }
    }

    /// Learns of an (epoch, master) of `partition`, from a replica or the replicated table; the
    /// newest epoch wins.
    fn learn(&mut self, partition: u32, epoch: u64, master: &str) {
        if master.is_empty() || self.masters.get(&partition).is_some_and(|(e, _)| *e >= epoch) {
            return;
        }
        self.masters.insert(partition, (epoch, master.to_owned()));
    }

    fn dead(&self, node: &str, now: Instant) -> bool {
        self.nodes.get(node).is_some_and(|h| h.dead(self.since, now))
    }

    /// The standby to promote when `partition`'s master is dead: one of `hosts` (the partition's
    /// placed replicas), live, ready, least lag within `max_lag`, preferring nodes that are not
    /// draining.
    fn failover_target(
        &self,
        partition: u32,
        master: &str,
        hosts: &[String],
        max_lag: u64,
        now: Instant,
    ) -> Option<(u64, String)> {
        self.nodes
            .iter()
            .filter(|(n, h)| *n != master && hosts.contains(n) && !h.dead(self.since, now))
            .filter_map(|(n, h)| Some((h.draining, h.standby_within(partition, max_lag)?, n.clone())))
            .min()
            .map(|(_, lag, n)| (lag, n))
    }

    /// Whether some live node serves `partition` as its ready master.
    fn has_serving_master(&self, partition: u32, now: Instant) -> bool {
        self.nodes.values().any(|h| {
            !h.dead(self.since, now) && h.partitions.get(&partition).is_some_and(|r| r.role == "master" && r.ready)
        })
    }

    /// Whether `partition`, mastered by a live `master`, should move back to `preferred`.
    fn should_rebalance(&self, partition: u32, master: &str, preferred: &str, max_lag: u64, now: Instant) -> bool {
        // A dead master is failover's business, a draining one the drain's.
        if master == preferred || self.dead(master, now) || self.nodes.get(master).is_some_and(|h| h.draining) {
            return false;
        }
        let Some(h) = self.nodes.get(preferred) else { return false };
        !h.dead(self.since, now)
            && !h.draining
            && h.up_since.is_some_and(|t| now.duration_since(t) >= REJOIN_HOLD)
            && h.standby_within(partition, max_lag).is_some()
    }
}

pub(super) async fn watch(c: Arc<Coordinator>, stop: CancellationToken) {
    let mut view = View::new();
    // Partition → (node being promoted, its task): one promotion per partition at a time.
    let mut in_flight: BTreeMap<u32, (String, tokio::task::AbortHandle)> = BTreeMap::new();
    let mut promotions: JoinSet<(u32, String, Result<(), String>)> = JoinSet::new();
    let mut leading = false;
    // When each partition's "no standby to promote" was last logged.
    let mut warned: BTreeMap<u32, Instant> = BTreeMap::new();
    // Since when each partition has had a live master that does not serve it.
    let mut masterless_since: BTreeMap<u32, Instant> = BTreeMap::new();
    // Since when each partition has had no master at all (nothing in the changelog yet).
    let mut unmastered_since: BTreeMap<u32, Instant> = BTreeMap::new();
    let mut liveness: Option<tokio::task::JoinHandle<()>> = None;
    // The placement write in flight (one at a time).
    let mut placing: Option<tokio::task::JoinHandle<()>> = None;
    let mut metrics = c.raft.metrics();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Tick, or at once when this member's Raft role changes: a new leader acts on its first
        // tick, which matters when the old leader died with a master.
        tokio::select! {
            () = stop.cancelled() => {
                for t in [liveness.take(), placing.take()].into_iter().flatten() {
                    t.abort();
                }
                return;
            }
            _ = tick.tick() => {}
            changed = metrics.changed() => {
                if changed.is_err() {
                    return;
                }
                let became_leader = metrics.borrow_and_update().state == openraft::ServerState::Leader && !leading;
                if !became_leader {
                    continue;
                }
            }
        }
        // Probe every node at once.
        let nodes = c.nodes();
        let mut probes = JoinSet::new();
        for (name, url) in nodes.clone() {
            let client = c.client.clone();
            probes.spawn(async move { (name, probe(&client, &url).await) });
        }
        while let Some(Ok((name, result))) = probes.join_next().await {
            view.record(&name, result, Instant::now());
        }
        if !c.is_leader() {
            leading = false;
            continue;
        }
        if !leading {
            tracing::info!("coordinator leader: watching nodes for failover");
            leading = true;
        }
        let now = Instant::now();
        // A promotion whose target died meanwhile would hold its partition for the call's
        // whole timeout: give it up, so another standby can be chosen now.
        in_flight.retain(|p, (to, task)| {
            let keep = !view.dead(to, now);
            if !keep {
                tracing::warn!(partition = p, to = %to, "promotion target died; choosing another standby");
                task.abort();
            }
            keep
        });
        while let Some(done) = promotions.try_join_next() {
            if let Ok((p, to, result)) = done {
                if in_flight.get(&p).is_some_and(|(t, _)| *t == to) {
                    in_flight.remove(&p);
                }
                match result {
                    Ok(()) => tracing::info!(partition = p, to = %to, "promoted"),
                    Err(e) => tracing::warn!(partition = p, to = %to, error = %e, "promotion failed"),
                }
            }
        }
        let state = c.state();
        // Recorded in the background: a Raft write must not delay a failover.
        if liveness.as_ref().is_none_or(|l| l.is_finished()) {
            let changes = liveness_changes(&view, &state, now);
            if !changes.is_empty() {
                liveness = Some(tokio::spawn(record_liveness(c.clone(), changes)));
            }
        }
        for (p, info) in &state.partitions {
            view.learn(*p, info.epoch, &info.master);
        }
        let placing_idle = placing.as_ref().is_none_or(|t| t.is_finished());
        // First bring-up: the table is seeded with the configured placement.
        let unplaced: Vec<(u32, Vec<String>)> = (0..c.partitions)
            .filter(|p| state.partitions.get(p).is_none_or(|i| i.replicas.is_empty()))
            .map(|p| (p, c.cluster.replicas(p)))
            .filter(|(_, r)| !r.is_empty())
            .collect();
        if !unplaced.is_empty() && placing_idle {
            tracing::info!(partitions = unplaced.len(), "placement: seeding the partition table from configuration");
            placing = Some(tokio::spawn(write_placement(c.clone(), unplaced)));
        }
        // First bring-up: a partition no replica has seen a master of, whose preferred master
        // has not come up for a while, is given to a standby (by then it is not just slow).
        let unmastered: std::collections::BTreeSet<u32> = view
            .nodes
            .values()
            .flat_map(|h| h.partitions.keys().copied())
            .filter(|p| !view.masters.contains_key(p))
            .collect();
        unmastered_since.retain(|p, _| unmastered.contains(p));
        for p in unmastered {
            let since = *unmastered_since.entry(p).or_insert(now);
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
                masterless_since.remove(&p);
                false
            } else {
                now.duration_since(*masterless_since.entry(p).or_insert(now)) > MASTERLESS_GRACE
            };
            if !view.dead(master, now) && !masterless {
                continue;
            }
            failing_over = true;
            if in_flight.contains_key(&p) {
                continue;
            }
            let Some((lag, to)) = view.failover_target(p, master, &c.replicas_of(p), max_lag, now) else {
                if warned.get(&p).is_none_or(|t| now.duration_since(*t) > WARN_EVERY) {
                    warned.insert(p, now);
                    tracing::warn!(partition = p, master = %master, max_lag, "failover: no master serves the partition and no standby is alive, ready and within the promotion bound");
                }
                continue;
            };
            tracing::warn!(partition = p, master = %master, master_dead = !masterless, to = %to, lag, "failover: no master serves the partition; promoting a standby");
            let task = promotions.spawn(promote(c.clone(), p, to.clone(), !masterless));
            in_flight.insert(p, (to, task));
        }
        if failing_over || !in_flight.is_empty() {
            continue;
        }
        if let Some((p, step)) = placement_step(&c, &view, &state, now) {
            match step {
                Step::Write(replicas) if placing_idle => {
                    let from = state.partitions.get(&p).map(|i| i.replicas.clone()).unwrap_or_default();
                    tracing::info!(partition = p, ?from, to = ?replicas, "placement: moving replicas");
                    placing = Some(tokio::spawn(write_placement(c.clone(), vec![(p, replicas)])));
                }
                Step::Handover(to) => {
                    tracing::info!(partition = p, to = %to, "placement: handing mastership off a replica being removed");
                    let task = promotions.spawn(promote(c.clone(), p, to.clone(), false));
                    in_flight.insert(p, (to, task));
                }
                _ => {}
            }
            // Masters return to their preferred replicas once the replicas are in place.
            continue;
        }
        if !c.cluster.rebalance || nodes.len() < 2 {
            continue;
        }
        for (&p, (_, master)) in &view.masters {
            let Some(preferred) = c.replicas_of(p).into_iter().next() else { continue };
            if view.should_rebalance(p, master, &preferred, max_lag, now) {
                tracing::info!(partition = p, from = %master, to = %preferred, "rebalance: moving the master back to its preferred replica");
                let task = promotions.spawn(promote(c.clone(), p, preferred.clone(), false));
                in_flight.insert(p, (preferred, task));
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
    if members.iter().eq(c.peers.keys()) {
        return None;
    }
    let seen_alive = |n: &str| view.nodes.get(n).is_some_and(|h| h.up_since.is_some() && !h.dead(view.since, now));
    let alive: BTreeSet<String> = members.iter().filter(|n| seen_alive(n)).cloned().collect();
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

/// Promotes `to` for `p`; `master_down`: the old master is dead, so no drain is attempted.
async fn promote(c: Arc<Coordinator>, p: u32, to: String, master_down: bool) -> (u32, String, Result<(), String>) {
    let Some(url) = c.url_of(&to) else {
        return (p, to, Err("not a known node".into()));
    };
    let r = c
        .client
        .post(format!("{url}/v1/admin/partitions/{p}/promote?skip_drain={master_down}"))
        .bearer_auth(&c.token)
        .timeout(PROMOTE_TIMEOUT)
        .send()
        .await;
    let result = match r {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    };
    (p, to, result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A node's answer; every replica reports epoch 1 under master "a" unless it is the master.
    fn answer(partitions: &[(u32, &str, bool, u64)], draining: bool) -> Probe {
        let ps: Vec<Value> = partitions
            .iter()
            .map(|(p, role, ready, lag)| {
                json!({"partition": p, "role": role, "ready": ready, "changelog_lag": lag, "epoch": 1, "master": "a"})
            })
            .collect();
        Probe::Ok(json!({ "partitions": ps, "draining": draining }))
    }

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_listener_is_not() {
        let client = reqwest::Client::new();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = client.get(format!("http://127.0.0.1:{port}/")).send().await.unwrap_err();
        assert!(refused(&e), "{e:?}");
        // A listener that never answers (a paused process): a timeout, not a refusal.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", silent.local_addr().unwrap());
        let e = client.get(url).timeout(Duration::from_millis(100)).send().await.unwrap_err();
        assert!(!refused(&e), "{e:?}");
    }

    #[test]
    fn a_refused_master_fails_over_to_the_least_lagging_standby_within_the_bound() {
        let mut v = View::new();
        let t = Instant::now();
        v.record("a", answer(&[(0, "master", true, 0)], false), t);
        v.record("b", answer(&[(0, "standby", true, 7)], false), t);
        v.record("c", answer(&[(0, "standby", true, 3)], false), t);
        assert_eq!(v.masters[&0], (1, "a".to_owned()));
        // A newer epoch learned from the replicated table wins; an older one does not.
        v.learn(0, 0, "b");
        assert_eq!(v.masters[&0].1, "a");
        assert!(!v.dead("a", t));
        v.record("a", Probe::Refused, t);
        assert!(v.dead("a", t), "a refused connection: nothing listens");
        let hosts = ["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(v.failover_target(0, "a", &hosts, 100, t), Some((3, "c".into())));
        assert_eq!(v.failover_target(0, "a", &hosts, 5, t), Some((3, "c".into())));
        assert_eq!(v.failover_target(0, "a", &hosts, 2, t), None, "nobody within the promotion bound");
        assert_eq!(v.failover_target(0, "a", &hosts[..2], 100, t), Some((7, "b".into())), "c is not placed there");
        // A draining node is the last resort.
        v.record("c", answer(&[(0, "standby", true, 3)], true), t);
        assert_eq!(v.failover_target(0, "a", &hosts, 100, t), Some((7, "b".into())));
    }

    #[test]
    fn silence_is_death_and_a_return_restarts_the_rejoin_hold() {
        let mut v = View::new();
        let t0 = Instant::now();
        v.record("a", answer(&[(0, "standby", true, 0)], false), t0);
        v.record("b", answer(&[(0, "master", true, 0)], false), t0);
        let t1 = t0 + SILENCE + Duration::from_millis(1);
        v.record("a", Probe::Silent, t1);
        assert!(v.dead("a", t1), "a paused process is dead after the silence limit");
        let t2 = t1 + Duration::from_millis(100);
        v.record("a", answer(&[(0, "standby", true, 0)], false), t2);
        assert!(!v.dead("a", t2));
        assert!(!v.should_rebalance(0, "b", "a", 10, t2), "just back: wait");
        let mut t = t2;
        while t < t2 + REJOIN_HOLD {
            t += POLL;
            v.record("a", answer(&[(0, "standby", true, 0)], false), t);
            v.record("b", answer(&[(0, "master", true, 0)], false), t);
        }
        assert!(v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
        // Not onto a lagging or draining node, and never away from a dead master (failover's job).
        v.record("a", answer(&[(0, "standby", true, 50)], false), t2 + REJOIN_HOLD);
        assert!(!v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
        v.record("a", answer(&[(0, "standby", true, 0)], true), t2 + REJOIN_HOLD);
        assert!(!v.should_rebalance(0, "b", "a", 10, t2 + REJOIN_HOLD));
    }
}
