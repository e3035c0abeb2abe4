//! The contract, written once as code and checked at the end of a soak (the subscribers and
//! readers check their parts as they go, in `observers`):
//!
//! 1. every record of the input topic is materialized ([`wait_materialized`]);
//! 2. every replica of every partition equals the independent reference — the ledger of what
//!    the broker acknowledged — object by object: every acknowledged alert is there (else it
//!    is *lost*), nothing is there that was never sent, and the version is the number of
//!    alerts applied ([`check_replicas`]);
//! 3. every subscriber saw every version of its objects once, in order, up to the last one
//!    (gaps and duplicates are flagged as they arrive; [`ReplicaCheck::versions`] gives the last).

use super::history::History;
use super::producer::Ledger;
use lightkeeper_clients::api::cluster::{ClusterView, Role};
use lightkeeper_storage::partitioner::partition_for;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// High watermark of every partition of `topic`.
fn watermarks(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<Vec<u64>> {
    let c: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "soak-ends").create()?;
    (0..partitions).map(|p| Ok(c.fetch_watermarks(topic, p as i32, Duration::from_secs(10))?.1.max(0) as u64)).collect()
}

/// Waits until, for every partition, some node reports the master has consumed the whole
/// input partition, and every replica of it has applied the whole changelog. Returns the
/// nodes' views at that moment, or an error saying what was still behind.
pub async fn wait_materialized(
    target: &super::faults::Target,
    topic: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, ClusterView>, String> {
    let partitions = target.cluster.partitions;
    let bootstrap = target.broker.bootstrap.clone();
    let ends = tokio::task::block_in_place(|| watermarks(&bootstrap, topic, partitions))
        .map_err(|e| format!("reading the input topic's ends: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        let views = target.views().await;
        let mut behind = Vec::new();
        for p in 0..partitions {
            let hosted: Vec<(&String, _)> = views
                .iter()
                .filter_map(|(id, v)| v.partition(p).filter(|pv| pv.role != Role::NotHosted).map(|pv| (id, pv)))
                .collect();
            let consumed = hosted.iter().map(|(_, pv)| pv.input_next).max().unwrap_or(0);
            if consumed < ends[p as usize] {
                behind.push(format!("partition {p}: input {consumed} of {}", ends[p as usize]));
            }
            let applied: BTreeSet<u64> = hosted.iter().map(|(_, pv)| pv.applied_changelog_offset).collect();
            if hosted.iter().any(|(_, pv)| pv.changelog_lag > 0 || !pv.ready) || applied.len() != 1 {
                behind.push(format!(
                    "partition {p}: replicas {:?}",
                    hosted
                        .iter()
                        .map(|(id, pv)| format!(
                            "{id} {:?} ready={} applied={} lag={}",
                            pv.role, pv.ready, pv.applied_changelog_offset, pv.changelog_lag
                        ))
                        .collect::<Vec<_>>()
                ));
            }
        }
        if behind.is_empty() {
            return Ok(views);
        }
        if Instant::now() > deadline {
            return Err(format!("not materialized after {timeout:?}: {behind:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What [`check_replicas`] found.
#[derive(Debug, Default, Clone)]
pub struct ReplicaCheck {
    /// (node, partition) replicas read.
    pub replicas: usize,
    /// Replicas with at least one object unlike the reference.
    pub divergent: BTreeSet<(String, u32)>,
    /// Acknowledged alerts missing from some replica (counted once per alert).
    pub lost: BTreeSet<(String, i64)>,
    /// Objects read (summary and light curve), over every replica.
    pub objects_read: usize,
    /// Each object's version as its replicas hold it (the highest, if they differ): what every
    /// subscriber must have reached.
    pub versions: BTreeMap<String, u64>,
}

/// Reads every object of `keys` from every replica that hosts it (`?max_lag=0`, checking the
/// replica itself answered) and compares it with `ledger`.
pub async fn check_replicas(
    target: &super::faults::Target,
    views: &BTreeMap<String, ClusterView>,
    keys: &[String],
    ledger: &Ledger,
    history: &History,
) -> ReplicaCheck {
    let partitions = target.cluster.partitions;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client");
    let mut out = ReplicaCheck::default();
    let empty_acked = BTreeMap::new();
    let empty_unknown = BTreeSet::new();
    for (node, view) in views {
        let url = target.cluster.url(node);
        let hosted: BTreeSet<u32> = view
            .partitions
            .iter()
            .filter(|p| matches!(p.role, Role::Master | Role::Standby))
            .map(|p| p.partition)
            .collect();
        out.replicas += hosted.len();
        for key in keys {
            let p = partition_for(key.as_bytes(), partitions);
            if !hosted.contains(&p) {
                continue;
            }
            out.objects_read += 1;
            let acked = ledger.acked.get(key).unwrap_or(&empty_acked);
            let unknown = ledger.unknown.get(key).unwrap_or(&empty_unknown);
            let problem = match read_replica(&http, &url, node, key).await {
                Err(e) => Some(e),
                Ok((version, n_alerts, detections)) => {
                    let v = out.versions.entry(key.clone()).or_default();
                    *v = (*v).max(version);
                    let missing: Vec<i64> = acked.keys().filter(|c| !detections.contains_key(c)).copied().collect();
                    for c in &missing {
                        out.lost.insert((key.clone(), *c));
                    }
                    let foreign: Vec<i64> =
                        detections.keys().filter(|c| !acked.contains_key(c) && !unknown.contains(c)).copied().collect();
                    let wrong_mag: Vec<i64> = detections
                        .iter()
                        .filter(|(c, m)| acked.get(c).is_some_and(|want| (*want - **m).abs() > 1e-4))
                        .map(|(c, _)| *c)
                        .collect();
                    if !missing.is_empty() || !foreign.is_empty() || !wrong_mag.is_empty() {
                        Some(format!(
                            "{key} on {node}: missing acknowledged {missing:?}, never sent {foreign:?}, wrong magnitude {wrong_mag:?}"
                        ))
                    } else if n_alerts != detections.len() as u64 || version != n_alerts {
                        Some(format!(
                            "{key} on {node}: version {version} and {n_alerts} alerts for {} detections",
                            detections.len()
                        ))
                    } else {
                        None
                    }
                }
            };
            if let Some(problem) = problem {
                history.violation(problem);
                out.divergent.insert((node.clone(), p));
            }
        }
    }
    out
}

/// (version, n_alerts, candid → magnitude of each detection) of `key` as the replica on `node`
/// holds it.
async fn read_replica(
    http: &reqwest::Client,
    url: &str,
    node: &str,
    key: &str,
) -> Result<(u64, u64, BTreeMap<i64, f64>), String> {
    let get = |path: String| async move {
        let r =
            http.get(format!("{url}{path}?max_lag=0")).send().await.map_err(|e| format!("{path} on {node}: {e}"))?;
        let served_by =
            r.headers().get("x-lightkeeper-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let status = r.status();
        let body: Value = r.json().await.map_err(|e| format!("{path} on {node}: {e}"))?;
        if !status.is_success() {
            return Err(format!("{path} on {node}: {status} {body}"));
        }
        if served_by != node {
            return Err(format!("{path} asked of {node}'s replica was served by {served_by:?}"));
        }
        Ok(body)
    };
    let summary = get(format!("/v1/objects/{key}")).await?;
    let lc = get(format!("/v1/objects/{key}/lightcurve")).await?;
    let detections = lc["points"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["kind"] == "detection")
                .filter_map(|p| Some((p["source_id"].as_str()?.parse().ok()?, p["mag"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    Ok((summary["version"].as_u64().unwrap_or(0), summary["n_alerts"].as_u64().unwrap_or(0), detections))
}
