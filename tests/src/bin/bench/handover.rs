//! `bench handover`: the unavailability a client sees while a partition's master is handed
//! over — two nodes, one partition of 200 objects, a closed-loop reader through each node, and
//! K drained handovers back and forth (`POST /v1/admin/partitions/0/promote`: drain, catch-up,
//! new epoch). Per handover: the longest gap between two successful reads overlapping the
//! promote call, over both readers (a client that can use either node) and per node. Then the
//! master is SIGKILLed and the standby promoted by hand: the time to its first successful read.
//!
//! Baseline: the longest gap between successful reads in an equally long (300 ms) window with
//! no handover, in the same run. Readers never answer back to back, so a gap of zero is not the
//! reference; the quiet window's gap is what the machine's scheduling and the HTTP round trip
//! cost by themselves.

use crate::common::{drop_topics, load_input, machine};
use crate::stats::{percentile, sorted};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::cluster::{promote, Cluster};
use lightkeeper_tests::synth::object_id;
use lightkeeper_tests::{broker, consumed};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(handovers: usize) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let cluster = Cluster::new("bench-handover", &["a", "b"], 1, tmp.path()).fixed_masters();
    let kafka = KafkaConfig::new(&broker());
    let mut a = cluster.start("a");
    let mut b = cluster.start("b");
    a.wait_ready(Duration::from_secs(120)).await?;
    b.wait_ready(Duration::from_secs(120)).await?;
    // 200 objects in the one partition.
    {
        let (kafka, topics) = (kafka.clone(), cluster.topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, 1000, 5, 1)).await??;
    }
    let keys: Vec<String> = (0..200).map(|i| format!("ztf:{}", object_id(i))).collect();
    let client = Client::new(&a.url)?;
    while consumed(&client).await.unwrap_or(0) < 1000 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let urls = |node: &str| keys.iter().map(|k| format!("{node}/v1/objects/{k}")).collect::<Vec<_>>();
    let readers = [reader(urls(&a.url), stop.clone()), reader(urls(&b.url), stop.clone())];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut windows = Vec::new();
    let mut promote_ms = Vec::new();
    for i in 0..handovers {
        let target = if i % 2 == 0 { &b.url } else { &a.url };
        let started = Instant::now();
        let report = promote(target, 0).await?;
        let ended = Instant::now();
        anyhow::ensure!(report.drain_error.is_none(), "handover {i} was not drained: {report:?}");
        promote_ms.push(report.elapsed_ms as f64);
        eprintln!(
            "handover {i}: drain {:.1} ms, catch-up {:.1} ms, marker append {:.1} ms, apply to marker {:.1} ms",
            report.drain_ms,
            report.promoted.catch_up_ms,
            report.promoted.marker_append_ms,
            report.promoted.marker_apply_ms
        );
        windows.push((started, ended));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // A baseline window of the same length with no handover.
    let quiet_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet_to = Instant::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stop.store(true, Ordering::Relaxed);
    let mut done = Vec::new();
    let mut failed = 0;
    for r in readers {
        let r = r.await?;
        failed += r.failed;
        done.push(r.done);
    }
    // A client's view: both readers together (either node answers).
    let mut all: Vec<Instant> = done.concat();
    all.sort();
    let gaps: Vec<f64> = windows.iter().map(|(f, t)| longest_gap(&all, *f, *t).as_secs_f64() * 1e3).collect();
    let quiet = longest_gap(&all, quiet_from, quiet_to).as_secs_f64() * 1e3;
    let per_node: Vec<f64> = windows
        .iter()
        .map(|(f, t)| done.iter().map(|d| longest_gap(d, *f, *t)).max().unwrap_or_default().as_secs_f64() * 1e3)
        .collect();

    // Failover: SIGKILL the master (a after an even number of handovers), promote b, first read.
    let (master, standby_url, master_id) =
        if handovers.is_multiple_of(2) { (&mut a, cluster.url("b"), "a") } else { (&mut b, cluster.url("a"), "b") };
    master.kill();
    let killed = Instant::now();
    promote(&standby_url, 0).await?;
    let http = reqwest::Client::new();
    loop {
        if http.get(format!("{standby_url}/v1/objects/{}", keys[0])).send().await.is_ok_and(|r| r.status().is_success())
        {
            break;
        }
    }
    let failover = killed.elapsed();
    drop_topics(&kafka, &cluster.topics).await?;
    // Median and maximum.
    let stats = |v: &[f64]| {
        let v = sorted(v.to_vec());
        (percentile(&v, 0.5), percentile(&v, 1.0))
    };
    let (gap_p50, gap_max) = stats(&gaps);
    let (node_p50, node_max) = stats(&per_node);
    let (prom_p50, prom_max) = stats(&promote_ms);
    println!(
        "## handover: {handovers} drained handovers of one partition, 2 nodes, 2 closed-loop readers — {}",
        machine()
    );
    println!("| measure | median | max |\n|---|---|---|");
    println!(
        "| longest gap between successful reads, any node, during a handover | {gap_p50:.1} ms | {gap_max:.1} ms |"
    );
    println!("| same, per node (reads routed and retried by that node) | {node_p50:.1} ms | {node_max:.1} ms |");
    println!("| baseline: longest gap in a 300 ms window without a handover | {quiet:.1} ms | |");
    println!("| promote call (drain + catch-up + new epoch) | {prom_p50:.1} ms | {prom_max:.1} ms |");
    println!("| failed reads | {failed} of {} | |", all.len() + failed);
    println!(
        "| SIGKILL of master {master_id} → promote → first read on the standby | {:.0} ms | |",
        failover.as_secs_f64() * 1e3
    );
    Ok(())
}

/// Completion times of successful reads, and failures, of one reader.
struct Reads {
    done: Vec<Instant>,
    failed: usize,
}

/// Reads `urls` in turn in a closed loop until `stop`, through one node (no retry elsewhere).
fn reader(urls: Vec<String>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut r = Reads { done: Vec::new(), failed: 0 };
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let ok = match http.get(&urls[i % urls.len()]).send().await {
                Ok(resp) => resp.status().is_success() && resp.bytes().await.is_ok(),
                Err(_) => false,
            };
            if ok {
                r.done.push(Instant::now());
            } else {
                r.failed += 1;
            }
            i += 1;
        }
        r
    })
}

/// The longest gap between consecutive successful reads that overlaps `[from, to]`.
fn longest_gap(done: &[Instant], from: Instant, to: Instant) -> Duration {
    done.windows(2).filter(|w| w[1] >= from && w[0] <= to).map(|w| w[1] - w[0]).max().unwrap_or_default()
}
