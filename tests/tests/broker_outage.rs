//! Broker outage (issue 14, part 2): the broker stops answering for 30 s under load (SIGSTOP:
//! it hangs with every connection open, the harder case for clients than a refused one). The
//! node keeps serving reads, marked `x-lightkeeper-stale`; `/readyz` says which partitions
//! cannot reach their logs and why; the node does not spin; and when the broker answers again,
//! ingest resumes by itself and every alert is materialized — nothing lost.
//!
//! One test in this binary, on a broker of its own (`OwnBroker`): the shared broker is never
//! paused.

use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::Cluster;
use lightkeeper_tests::kafka::OwnBroker;
use lightkeeper_tests::load::{cluster_input_next, finish, producer, wait_cluster_input, Workload};
use lightkeeper_tests::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const OUTAGE: Duration = Duration::from_secs(30);

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

async fn degraded(http: &reqwest::Client, url: &str) -> Option<Vec<String>> {
    let r = http.get(format!("{url}/readyz")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let ready: serde_json::Value = r.json().await.ok()?;
    Some(ready["degraded"].as_array()?.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_broker_outage_under_load_keeps_reads_served_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let broker = OwnBroker::start(&tmp.path().join("broker.log"));
    // Every helper below (the cluster's config, the producer) reads KAFKA_BOOTSTRAP; this is the
    // binary's only test, so nothing else sees the change.
    std::env::set_var("KAFKA_BOOTSTRAP", &broker.bootstrap);
    let c = Cluster::new("outage", &["a"], 2, tmp.path());
    let w = Workload::new(&tmp.path().join("synthetic"), 900, 3, 4_000_000_000_000_000_000);
    let nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    let url = urls[0].clone();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls, w.real.len() as u64, WAIT).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    assert_eq!(degraded(&http, &url).await, Some(Vec::new()), "nothing is degraded before the outage");

    // Load: 50 alerts/s for 18 s of producing, which the outage interrupts.
    let produce = producer(&c.topics.input, &w.synthetic, Some(50));
    eventually(WAIT, "the stream to be flowing", || async {
        (cluster_input_next(&urls).await > w.real.len() as u64 + 50).then_some(())
    })
    .await
    .unwrap();

    broker.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    let why = eventually(WAIT, "/readyz to say the logs cannot be reached", || async {
        degraded(&http, &url).await.filter(|d| !d.is_empty())
    })
    .await
    .unwrap();
    eprintln!("{} ms after the broker stopped, /readyz: {why:?}", stopped.elapsed().as_millis());

    let pid = nodes[0].child.id();
    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    let keys = w.real_keys();
    let (mut reads, mut stale) = (0u64, 0u64);
    while stopped.elapsed() < OUTAGE {
        for key in keys.iter().take(5) {
            let r = http.get(format!("{url}/v1/objects/{key}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "a read during the outage: {:?}", r.text().await);
            stale += u64::from(r.headers().contains_key("x-lightkeeper-stale"));
            reads += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_time(pid) - cpu_before;
    let wall = wall_before.elapsed();
    eprintln!("during the outage: {reads} reads, {stale} marked stale; node CPU {cpu:?} in {wall:?}");
    assert!(stale > 0 && stale == reads, "every read during the outage is marked stale ({stale} of {reads})");
    assert!(cpu < wall / 4, "the node must not spin while the broker is down: {cpu:?} of CPU in {wall:?}");

    broker.signal(libc::SIGCONT);
    let resumed = Instant::now();
    finish(produce).await;
    wait_cluster_input(&urls, w.total(), WAIT).await;
    eprintln!("all input materialized {} ms after the broker returned", resumed.elapsed().as_millis());
    eventually(WAIT, "/readyz to be clean again", || async { degraded(&http, &url).await.filter(|d| d.is_empty()) })
        .await
        .unwrap();
    let client = Client::new(&url).unwrap();
    reference::check(&client, &w.reference, "").await.unwrap();
    let r = http.get(format!("{url}/v1/objects/{}", keys[0])).send().await.unwrap();
    assert!(!r.headers().contains_key("x-lightkeeper-stale"), "fresh again after the outage");
}
