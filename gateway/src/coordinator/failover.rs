//! Automatic failover, run by the coordinator's leader.
//!
//! Every [`POLL`] the leader asks every node for its `/v1/cluster` view (with a short timeout):
//! that is both the liveness probe and the source of each replica's role and lag. A node is
//! dead when its connection is refused twice in a row (the process is gone: the kernel answers
//! for it at once) or when it has not answered for [`SILENCE`] (a hung or paused process). For
//! every partition whose last seen master is dead, the leader picks the live, ready standby
//! with the least changelog lag (at most [`MAX_LAG`]) and calls its
//! `POST /v1/admin/partitions/{p}/promote`, which runs the slice-2 protocol: drain the old master
//! if it answers, else read the changelog to its end and start a new epoch that fences it.
//! A leader change loses nothing: the next leader rebuilds this view from its own polls.

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
const MAX_LAG: u64 = 100_000;

#[derive(Default)]
struct NodeHealth {
    last_ok: Option<Instant>,
    refused_in_a_row: u32,
    /// Partition → (role, ready, changelog lag) from the last answer.
    partitions: BTreeMap<u32, (String, bool, u64)>,
}

impl NodeHealth {
    fn dead(&self, since_leading: Instant) -> bool {
        self.refused_in_a_row >= 2 || self.last_ok.unwrap_or(since_leading).elapsed() > SILENCE
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
        Err(e) if e.is_connect() => Probe::Refused,
        Err(_) => Probe::Silent,
    }
}

pub(super) async fn watch(c: Arc<Coordinator>, stop: CancellationToken) {
    let mut health: BTreeMap<String, NodeHealth> = BTreeMap::new();
    // Partition → node last seen as its master.
    let mut masters: BTreeMap<u32, String> = BTreeMap::new();
    let mut in_flight: BTreeSet<u32> = BTreeSet::new();
    let mut promotions: JoinSet<(u32, String, Result<(), String>)> = JoinSet::new();
    let mut leading_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(POLL) => {}
        }
        if !c.is_leader() {
            leading_since = None;
            health.clear();
            masters.clear();
            continue;
        }
        let since = *leading_since.get_or_insert_with(|| {
            tracing::info!("coordinator leader: watching nodes for failover");
            Instant::now()
        });
        while let Some(done) = promotions.try_join_next() {
            if let Ok((p, to, result)) = done {
                in_flight.remove(&p);
                match result {
                    Ok(()) => {
                        tracing::info!(partition = p, to = %to, "failover: promoted");
                        masters.insert(p, to);
                    }
                    Err(e) => tracing::warn!(partition = p, to = %to, error = %e, "failover: promotion failed"),
                }
            }
        }
        // Probe every node at once.
        let mut probes = JoinSet::new();
        for (name, url) in c.peers.clone() {
            let client = c.client.clone();
            probes.spawn(async move { (name, probe(&client, &url).await) });
        }
        while let Some(Ok((name, result))) = probes.join_next().await {
            let h = health.entry(name.clone()).or_default();
            match result {
                Probe::Ok(v) => {
                    h.last_ok = Some(Instant::now());
                    h.refused_in_a_row = 0;
                    h.partitions.clear();
                    for p in v["partitions"].as_array().into_iter().flatten() {
                        let (Some(id), Some(role)) = (p["partition"].as_u64(), p["role"].as_str()) else { continue };
                        let lag = p["changelog_lag"].as_u64().unwrap_or(u64::MAX);
                        h.partitions.insert(id as u32, (role.to_owned(), p["ready"] == true, lag));
                        if role == "master" && p["ready"] == true {
                            masters.insert(id as u32, name.clone());
                        }
                    }
                }
                Probe::Refused => h.refused_in_a_row += 1,
                Probe::Silent => {}
            }
        }
        // A partition's master is whoever the replicated table names (it survives a change of
        // leader, so a new leader knows the master that died with the old one), or, newer, a
        // live node answering as master.
        for (p, info) in c.state().partitions {
            masters.entry(p).or_insert(info.master);
        }
        tracing::debug!(?masters, dead = ?health.iter().filter(|(_, h)| h.dead(since)).map(|(n, _)| n).collect::<Vec<_>>(), "failover watch");
        // Promote for every partition whose master is dead.
        for (&p, master) in &masters {
            if in_flight.contains(&p) || !health.get(master).is_some_and(|h| h.dead(since)) {
                continue;
            }
            let candidate = health
                .iter()
                .filter(|(n, h)| *n != master && !h.dead(since))
                .filter_map(|(n, h)| match h.partitions.get(&p) {
                    Some((role, true, lag)) if role == "standby" && *lag <= MAX_LAG => Some((*lag, n.clone())),
                    _ => None,
                })
                .min();
            let Some((lag, to)) = candidate else {
                tracing::warn!(partition = p, master = %master, "failover: master is down and no caught-up standby is alive");
                continue;
            };
            tracing::warn!(partition = p, master = %master, to = %to, lag, "failover: master is down; promoting a standby");
            in_flight.insert(p);
            let (client, token) = (c.client.clone(), c.token.clone());
            let url = c.peers[&to].clone();
            promotions.spawn(async move {
                let r = client
                    .post(format!("{url}/v1/admin/partitions/{p}/promote"))
                    .bearer_auth(token)
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let result = match r {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("{}: {}", r.status(), r.text().await.unwrap_or_default())),
                    Err(e) => Err(e.to_string()),
                };
                (p, to, result)
            });
        }
    }
}
