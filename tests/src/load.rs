//! Load for multi-node tests: the real external producer (Python confluent-kafka) as a child
//! process, and a reader that behaves like a client behind a load balancer.

use crate::{avro_files, broker, eventually, lsst_schemas, reference, shared_data, synth, workspace};
use lightkeeper_clients::api::ws::ServerMsg;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The shared ZTF packets (the simulator's night and ZTF21abiuvdk's light curve) plus
/// `synthetic` re-issued ones written to `dir`, and their independent (fastavro) reference state.
pub struct Workload {
    pub real: Vec<PathBuf>,
    pub synthetic: Vec<PathBuf>,
    pub reference: BTreeMap<String, Value>,
}

impl Workload {
    /// `per_object` synthetic alerts per object; `candid_base` keeps each test's candids apart.
    pub fn new(dir: &Path, synthetic: usize, per_object: usize, candid_base: i64) -> Workload {
        let data = shared_data().join("ztf/alerts");
        let mut real = avro_files(&data.join("fink-alert-simulator/datasim_20181129"));
        real.extend(avro_files(&data.join("pitt-google-broker/lightcurve_ZTF21abiuvdk")));
        let synthetic = synth::write_alerts(dir, synthetic, per_object, 0, candid_base);
        let all: Vec<PathBuf> = real.iter().chain(&synthetic).cloned().collect();
        Workload { reference: reference::compute(&all), real, synthetic }
    }

    pub fn total(&self) -> u64 {
        (self.real.len() + self.synthetic.len()) as u64
    }

    /// The real packets' objects (they exist once the real packets are in; synthetic objects
    /// are `ztf:ZTF99…`).
    pub fn real_keys(&self) -> Vec<String> {
        self.reference.keys().filter(|k| !k.starts_with("ztf:ZTF99")).cloned().collect()
    }
}

/// Starts `tests/py/produce.py` on `files`, at most `rate` packets per second if given.
pub fn producer(topic: &str, files: &[PathBuf], rate: Option<u32>) -> Child {
    producer_on(&broker(), topic, files, rate)
}

/// [`producer`] to the broker at `bootstrap`.
pub fn producer_on(bootstrap: &str, topic: &str, files: &[PathBuf], rate: Option<u32>) -> Child {
    let mut cmd = Command::new("python3");
    cmd.arg(workspace().join("tests/py/produce.py")).args([
        bootstrap.to_owned(),
        topic.to_owned(),
        lsst_schemas().display().to_string(),
    ]);
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    cmd.args(files).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("python3 produce.py")
}

/// Waits for a producer started by [`producer`]; panics if it did not deliver everything.
pub async fn finish(child: Child) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "producer failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Input records materialized, summed over the partitions the node at `url` reports.
pub async fn input_next(url: &str) -> u64 {
    match lightkeeper_clients::Client::new(url) {
        Ok(c) => crate::consumed(&c).await.unwrap_or(0),
        Err(_) => 0,
    }
}

/// Waits until the node at `url` reports `total` input records materialized; on timeout the
/// panic shows the node's last partition view (roles, epochs, input and changelog positions),
/// so a stall says where it stalled.
pub async fn wait_input(url: &str, total: u64, timeout: Duration) {
    let last = std::sync::Mutex::new(None);
    let r = eventually(timeout, &format!("{url} to materialize {total} input records"), || async {
        let view = lightkeeper_clients::Client::new(url).ok()?.cluster().await.ok()?;
        let done = view.partitions.iter().map(|p| p.input_next).sum::<u64>() == total;
        *last.lock().unwrap() = Some(view.partitions);
        done.then_some(())
    })
    .await;
    if let Err(e) = r {
        panic!("{e}; last seen: {:#?}", last.lock().unwrap());
    }
}

/// What a [`balanced_reader`] saw.
#[derive(Debug, Default)]
pub struct Reads {
    pub ok: u64,
    /// Key and final status (`None`: no node answered) of every read that failed.
    pub failed: Vec<(String, Option<u16>)>,
    /// Attempts passed to another node (connection refused, or 503).
    pub retried: u64,
}

/// Reads the objects `keys` in turn until `stop`, sending each read to the nodes in turn and
/// trying the next node when one refuses connections or answers 503 — as a client behind a
/// load balancer would. A read fails only if no node answers it with something other than 503,
/// or the answer is not 200.
pub fn balanced_reader(urls: Vec<String>, keys: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
        let mut reads = Reads::default();
        let mut i = 0usize;
        while !stop.load(Ordering::Relaxed) {
            let key = &keys[i % keys.len()];
            let mut answer = None;
            for attempt in 0..urls.len() {
                let url = format!("{}/v1/objects/{key}", urls[(i + attempt) % urls.len()]);
                match http.get(&url).send().await {
                    Ok(r) if r.status() != 503 => {
                        answer = Some(r.status().as_u16());
                        break;
                    }
                    _ => reads.retried += 1,
                }
            }
            match answer {
                Some(200) => reads.ok += 1,
                other => reads.failed.push((key.clone(), other)),
            }
            i += 1;
        }
        reads
    })
}

/// Input records materialized by the cluster: per partition, the furthest any of the nodes at
/// `urls` reports (a partition's replicas are on some of them only), summed.
pub async fn cluster_input_next(urls: &[String]) -> u64 {
    let mut furthest: std::collections::BTreeMap<u32, u64> = std::collections::BTreeMap::new();
    for u in urls {
        for p in crate::cluster::partitions(u).await.unwrap_or_default() {
            let f = furthest.entry(p.partition).or_default();
            *f = (*f).max(p.input_next);
        }
    }
    furthest.values().sum()
}

/// Waits until the cluster at `urls` has materialized `total` input records.
pub async fn wait_cluster_input(urls: &[String], total: u64, timeout: Duration) {
    eventually(timeout, &format!("the cluster to materialize {total} input records"), || async {
        (cluster_input_next(urls).await == total).then_some(())
    })
    .await
    .unwrap();
}

/// Every version a subscription delivers, per object (snapshots of absent objects, version 0,
/// left out), until each of `objects` objects has reached version `last` or 20 s pass without
/// a message. Panics on anything but a snapshot or an update (an error, say).
pub fn watch_versions(
    mut sub: lightkeeper_clients::Subscription,
    objects: usize,
    last: u64,
) -> tokio::task::JoinHandle<std::collections::BTreeMap<String, Vec<u64>>> {
    tokio::spawn(async move {
        let mut seen: std::collections::BTreeMap<String, Vec<u64>> = std::collections::BTreeMap::new();
        while let Ok(Some(m)) = sub.next(Duration::from_secs(20)).await {
            match m {
                ServerMsg::Snapshot { version: 0, .. } => {}
                ServerMsg::Snapshot { key, version, .. } | ServerMsg::Update { key, version, .. } => {
                    seen.entry(key).or_default().push(version)
                }
                other => panic!("unexpected message: {other:?}"),
            }
            if seen.len() == objects && seen.values().all(|vs| vs.last() == Some(&last)) {
                break;
            }
        }
        seen
    })
}
