//! `bench membership`: the cost to clients of changing the cluster's membership — three
//! nodes, four partitions with two replicas, N alerts; two closed-loop readers through the
//! founding nodes that stay, each read trying the next node on a refusal or a 503 (as behind a
//! load balancer). A fourth node joins, done when the placement is balanced and it masters one
//! partition with both its replicas caught up; then the Raft leader is decommissioned, done
//! when nothing is placed on it, it has left the Raft group and it hosts nothing. Reports each
//! phase's duration and the read latency in it (p50, p99, max, failures).
//!
//! Baseline: the same readers in the 5 s before the join, in the same run; the table's last
//! column is each phase's p99 over the baseline p99. Moving replicas and masters should be
//! invisible to readers apart from a slower tail, so the ratio — and failed reads, which should
//! be none — is the figure to watch, not the absolute latency of this shared machine.

use crate::common::{discard_run_dir, drop_topics, load_input, machine};
use crate::stats::{percentile, sorted};
use lightkeeper_clients::api::cluster::Role;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::broker;
use lightkeeper_tests::cluster::{cluster_view, decommission, hosted_by, partitions, placement, Cluster};
use lightkeeper_tests::load::cluster_input_next;
use lightkeeper_tests::synth::object_id;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(n: usize, per_object: usize) -> anyhow::Result<()> {
    const PARTITIONS: u32 = 4;
    // Kept when the run fails or BENCH_KEEP is set, for the nodes' logs (`<id>.stderr.log`).
    let tmp = tempfile::tempdir()?.keep();
    eprintln!("membership bench: node data and logs in {}", tmp.display());
    let mut cluster = Cluster::new("bench-membership", &["a", "b", "c"], PARTITIONS, &tmp);
    cluster.replication_factor = Some(2);
    let kafka = KafkaConfig::new(&broker());
    let mut nodes = cluster.start_all(Duration::from_secs(120)).await;
    let bytes = {
        let (kafka, topics) = (kafka.clone(), cluster.topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, n, per_object, PARTITIONS)).await??
    };
    let urls = cluster.urls();
    let within = |started: Instant, what: &str| {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(600), "{what}: not done after 600 s");
        Ok(())
    };
    let started = Instant::now();
    while cluster_input_next(&urls).await < n as u64 {
        within(started, "materializing the input")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = cluster_view(&urls[0]).await?.coordinator.and_then(|c| c.leader).unwrap_or_default();
    let keys: Vec<String> = (0..n / per_object).map(|i| format!("ztf:{}", object_id(i))).collect();
    // Readers through the founders that stay (the leader is decommissioned later).
    let read_urls: Vec<String> = ["a", "b", "c"].iter().filter(|id| **id != leader).map(|id| cluster.url(id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> =
        (0..2).map(|r| timed_reader(read_urls.clone(), keys.clone(), r * 997, stop.clone())).collect();
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // Join.
    let t_join = Instant::now();
    let d_url = cluster.add_joiner("d");
    let d = cluster.start("d");
    loop {
        within(t_join, "the join")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(placed) = placement(&urls[0], PARTITIONS).await else { continue };
        let balanced =
            ["a", "b", "c", "d"].iter().all(|m| hosted_by(&placed, m, false) == 2 && hosted_by(&placed, m, true) == 1);
        let d_parts = partitions(&d_url).await.unwrap_or_default();
        let d_masters = d_parts.iter().filter(|p| p.role == Role::Master && p.ready).count();
        let d_ready = d_parts.iter().filter(|p| p.ready && p.changelog_lag == 0).count();
        if balanced && d_masters == 1 && d_ready == 2 {
            break;
        }
    }
    let joined = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Decommission the Raft leader.
    let t_leave = Instant::now();
    // 202 and the report; an error with the status and the body otherwise.
    let report = decommission(&read_urls[0], &leader).await?;
    eprintln!("decommission of {leader}: {report:?}");
    loop {
        within(t_leave, "the decommission")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (Some(placed), Ok(view)) = (placement(&read_urls[0], PARTITIONS).await, cluster_view(&read_urls[0]).await)
        else {
            continue;
        };
        let names = |ns: Option<&Vec<String>>| ns.is_some_and(|ns| ns.contains(&leader));
        let coordinator = view.coordinator.as_ref();
        let gone = placed.values().all(|rs| !rs.contains(&leader))
            && !names(coordinator.map(|c| &c.voters))
            && !names(coordinator.map(|c| &c.learners));
        let hosted = partitions(&cluster.url(&leader)).await.unwrap_or_default();
        if gone && hosted.iter().all(|p| p.role == Role::NotHosted) {
            break;
        }
    }
    let left = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let mut reads = Vec::new();
    for r in readers {
        reads.extend(r.await?);
    }
    drop_topics(&kafka, &cluster.topics).await?;
    nodes.push(d);
    drop(nodes);
    discard_run_dir(&tmp);
    // Reads started in `[from, to)`: successful ones, failed ones, and the successful ones'
    // p50, p99 and max (0 when none succeeded).
    let phase = |from: Instant, to: Instant| {
        let ms = sorted(reads.iter().filter(|r| r.at >= from && r.at < to && !r.failed).map(|r| r.ms).collect());
        let failed = reads.iter().filter(|r| r.at >= from && r.at < to && r.failed).count();
        let q = |q: f64| if ms.is_empty() { 0.0 } else { percentile(&ms, q) };
        (ms.len(), failed, q(0.5), q(0.99), q(1.0))
    };
    let (_, _, _, base99, _) = phase(t0, t_join);
    println!(
        "## membership: 3 nodes + 1 joining, 4 partitions × 2 replicas, {n} alerts ({:.0} MB) — {}",
        bytes as f64 / 1e6,
        machine()
    );
    println!("| phase | duration | reads ok | failed | p50 | p99 | max | p99 / baseline p99 |\n|---|---|---|---|---|---|---|---|");
    for (name, from, to) in [
        ("baseline (before the join)", t0, t_join),
        ("join: start d → balanced, d masters 1 and hosts 2 caught up", t_join, joined),
        ("decommission of the Raft leader → it hosts nothing and left the group", t_leave, left),
    ] {
        let (ok, failed, p50, p99, max) = phase(from, to);
        println!(
            "| {name} | {:.2} s | {ok} | {failed} | {p50:.1} ms | {p99:.1} ms | {max:.1} ms | {:.2} |",
            (to - from).as_secs_f64(),
            p99 / base99.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}

/// Latency of one read, when it started, and whether it failed on every node.
struct Timed {
    at: Instant,
    ms: f64,
    failed: bool,
}

/// Reads `keys` in a closed loop through `urls` (the next node when one refuses or answers
/// 503, as behind a load balancer) until `stop`; every read's start and latency.
///
/// Routed like the library's `load::balanced_reader`, which only counts reads; this one keeps
/// each read's start and latency (body included) for the per-phase percentiles.
fn timed_reader(
    urls: Vec<String>,
    keys: Vec<String>,
    offset: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Timed>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        let mut out = Vec::new();
        let mut i = offset;
        while !stop.load(Ordering::Relaxed) {
            let at = Instant::now();
            let mut ok = false;
            for attempt in 0..urls.len() {
                let url = format!("{}/v1/objects/{}", urls[(i + attempt) % urls.len()], keys[i % keys.len()]);
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 503 => continue,
                    Ok(r) => {
                        ok = r.status().is_success() && r.bytes().await.is_ok();
                        break;
                    }
                    Err(_) => continue,
                }
            }
            out.push(Timed { at, ms: at.elapsed().as_secs_f64() * 1e3, failed: !ok });
            i += 1;
        }
        out
    })
}
