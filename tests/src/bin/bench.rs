//! Benchmarks (not timed tests). Each compares against a baseline measured in the same run.
//!
//! - `bench ingest`: N real-size alerts in a fresh input topic; a bare rdkafka consumer reads
//!   the topic (baseline), then a `lightkeeper` node materializes it end to end (decode, merge,
//!   changelog with acks=all, RocksDB). Reports alerts/s of both and the ratio.
//! - `bench query`: an embedded node with one object of P light-curve points; open-loop GET
//!   load at R requests/s on the light curve, then on `/healthz` (baseline); latency
//!   percentiles measured from each request's scheduled start (no coordinated omission).
//! - `bench restore`: a node materializes N alerts, writing the changelog; then a bare rdkafka
//!   consumer reads that changelog (baseline) and a fresh node with an empty data directory
//!   restores from it. Reports records/s and MB/s of both and the ratio.
//! - `bench handover`: two nodes, clients reading continuously through both; the partition is
//!   handed over back and forth K times. Reports, per handover, the longest gap between two
//!   successful reads of that partition's objects (the unavailability a client sees), against
//!   the longest gap in an equally long window without a handover; then SIGKILLs the master and
//!   times promote + first successful read on the standby.
//! - `bench failover`: three nodes, one partition; K times: SIGKILL whichever node masters it
//!   (often also the coordinator's Raft leader), time until a read through a surviving node is
//!   answered by a new master — no operator call: the coordinator detects and promotes — then
//!   restart the killed node and wait until it has caught up as a standby.
//! - `bench membership`: three nodes, four partitions with two replicas, N alerts; closed-loop
//!   readers through the founding nodes the whole time. A fourth node joins (the coordinator
//!   moves its share of replicas and preferred masters to it), then the Raft leader is
//!   decommissioned (its replicas move to the others, it leaves the Raft group). Reports each
//!   phase's duration and the read latency in it (p50, p99, max, failures) against the same
//!   readers before the join (baseline).

use clap::{Parser, Subcommand};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::metric_samples;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Ingest {
        #[arg(long, default_value_t = 50_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    Restore {
        #[arg(long, default_value_t = 30_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
        #[arg(long, default_value_t = 4)]
        partitions: u32,
    },
    Handover {
        #[arg(long, default_value_t = 10)]
        handovers: usize,
    },
    Failover {
        #[arg(long, default_value_t = 20)]
        kills: usize,
    },
    Membership {
        #[arg(long, default_value_t = 5_000)]
        alerts: usize,
        #[arg(long, default_value_t = 5)]
        alerts_per_object: usize,
    },
    Query {
        #[arg(long, default_value_t = 1000)]
        points: usize,
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Runtime::new()?;
    match args.cmd {
        Cmd::Ingest { alerts, alerts_per_object, partitions } => {
            rt.block_on(ingest(alerts, alerts_per_object, partitions))
        }
        Cmd::Query { points, rate, seconds } => rt.block_on(query(points, rate, seconds)),
        Cmd::Restore { alerts, alerts_per_object, partitions } => {
            rt.block_on(restore(alerts, alerts_per_object, partitions))
        }
        Cmd::Handover { handovers } => rt.block_on(handover(handovers)),
        Cmd::Failover { kills } => rt.block_on(failover(kills)),
        Cmd::Membership { alerts, alerts_per_object } => rt.block_on(membership(alerts, alerts_per_object)),
    }
}

fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

/// Loads `n` real-size alerts of `n / per_object` objects into the input topic of `topics`;
/// returns their total size in bytes.
fn load_input(
    kafka: &KafkaConfig,
    topics: &TopicSet,
    n: usize,
    per_object: usize,
    partitions: u32,
) -> anyhow::Result<usize> {
    kafka.ensure_topic(&topics.input, partitions, false)?;
    // Generate and load N real-size alerts.
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    eprintln!("generating {n} alerts from {} real templates", templates.len());
    let input = KafkaTopic::open(kafka, &topics.input)?;
    let mut bytes_total = 0usize;
    let mut batch: Vec<(u32, String, Vec<u8>)> = Vec::new();
    let flush = |batch: &mut Vec<(u32, String, Vec<u8>)>| -> anyhow::Result<()> {
        for p in 0..partitions {
            let recs: Vec<Append<'_>> = batch
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, k, v)| Append { key: Some(k.as_bytes()), payload: v, headers: &[] })
                .collect();
            if !recs.is_empty() {
                input.append(p, &recs)?;
            }
        }
        batch.clear();
        Ok(())
    };
    for i in 0..n {
        let t = &templates[i % templates.len()];
        let oid = object_id(i / per_object);
        let packet = reissue(t, &oid, 3_000_000_000_000_000_000 + i as i64);
        bytes_total += packet.len();
        let key = format!("ztf:{oid}");
        batch.push((partition_for(key.as_bytes(), partitions), key, packet));
        if batch.len() == 2000 {
            flush(&mut batch)?;
            eprint!("\rloaded {}/{n}", i + 1);
        }
    }
    flush(&mut batch)?;
    eprintln!("\rloaded {n} alerts, {:.1} MB, mean {} B", bytes_total as f64 / 1e6, bytes_total / n);
    Ok(bytes_total)
}

async fn ingest(n: usize, per_object: usize, partitions: u32) -> anyhow::Result<()> {
    let bootstrap = broker();
    let topics = TopicSet::unique("bench");
    let kafka = KafkaConfig::new(&bootstrap);
    let bytes_total = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, n, per_object, partitions)).await??
    };

    // Baseline: a bare consumer reading the same topic.
    let (bare, _) = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topics.input.clone());
        move || bare_consume(&b, &t, partitions, n)
    })
    .await??;
    let bare_rate = n as f64 / bare.as_secs_f64();
    eprintln!("bare consumer: {n} records in {:.2} s = {bare_rate:.0}/s", bare.as_secs_f64());

    // The node, end to end.
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let node = NodeProcess::start(&tmp.path().join("node"), &["--kafka", &bootstrap], &topics.env())?;
    node.wait_ready(Duration::from_secs(120)).await?;
    let ready = started.elapsed();
    let client = Client::new(&node.url)?;
    let mut last_print = Instant::now();
    loop {
        let done = consumed(&client).await.unwrap_or(0);
        if done as usize >= n {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprint!("\rnode: {done}/{n}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    // The test broker's memory engine keeps everything: drop the topics when done.
    let cleanup = {
        let (kafka, t) = (kafka.clone(), topics.clone());
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter])
    };
    let metrics = reqwest::get(format!("{}/metrics", node.url)).await?.text().await?;
    let batches: f64 = metric_samples(&metrics, "lightkeeper_batch_seconds_count").sum();
    let node_rate = n as f64 / (total - ready).as_secs_f64();
    let rss = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0);
    println!(
        "## ingest: {n} alerts ({} per object, {partitions} partitions, mean {} B/alert) — {}",
        per_object,
        bytes_total / n,
        machine()
    );
    println!("| measure | value |\n|---|---|");
    println!("| bare rdkafka consumer | {bare_rate:.0} records/s ({:.2} s) |", bare.as_secs_f64());
    println!(
        "| lightkeeper end to end (after ready) | {node_rate:.0} alerts/s ({:.2} s; start-up {:.2} s) |",
        (total - ready).as_secs_f64(),
        ready.as_secs_f64()
    );
    println!("| ratio node / bare | {:.2} |", node_rate / bare_rate);
    println!("| node peak RSS | {} MiB |", rss / 1024);
    println!("| mean worker batch | {:.0} alerts |", n as f64 / batches);
    drop(node);
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    for phase in ["poll", "decode", "changelog", "store"] {
        let sum: f64 = metrics
            .lines()
            .find(|l| l.starts_with("lightkeeper_phase_seconds_sum") && l.contains(&format!("phase=\"{phase}\"")))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN);
        println!("| worker time in {phase} (all partitions) | {sum:.2} s |");
    }
    Ok(())
}

/// Reads `n` records of `topic` from the beginning; returns the time and the payload bytes.
/// Settings shared by the bare baseline consumers (the node's readers use the same fetch sizes).
fn bare_consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bare"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.message.max.bytes", "8388608")
        .set("queued.max.messages.kbytes", "65536");
    c
}

fn bare_consume(bootstrap: &str, topic: &str, partitions: u32, n: usize) -> anyhow::Result<(Duration, usize)> {
    let c: BaseConsumer = bare_consumer_config(bootstrap).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let started = Instant::now();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("bare consumer stalled at {seen}/{n}");
        }
    }
    Ok((started.elapsed(), std::hint::black_box(bytes)))
}

async fn query(points: usize, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[])?;
    node.wait_ready(Duration::from_secs(60)).await?;
    let client = Client::new(&node.url)?;
    // One object with `points` detections: one real-size alert per point.
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 1);
    let oid = "ZTF99lcbench";
    for i in 0..points {
        client.ingest(reissue(&templates[0], oid, 4_000_000_000_000_000_000 + i as i64)).await?;
    }
    let key = format!("ztf:{oid}");
    loop {
        if client.object(&key).await.map(|o| o["n_alerts"].as_u64() == Some(points as u64)).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n_points = client.lightcurve(&key, "").await?["points"].as_array().unwrap().len();
    let body_bytes = reqwest::get(format!("{}/v1/objects/ztf:{oid}/lightcurve", node.url)).await?.bytes().await?.len();
    let lc_url = format!("{}/v1/objects/ztf:{oid}/lightcurve", node.url);
    let base_url = format!("{}/healthz", node.url);
    let lc = load(&lc_url, rate, seconds).await;
    let base = load(&base_url, rate, seconds).await;
    println!(
        "## query: light curve of {n_points} points ({body_bytes} B of JSON), open loop {rate} req/s for {seconds} s — {}",
        machine()
    );
    println!("| target | sent | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|");
    for (name, r) in [("GET lightcurve", &lc), ("GET /healthz (baseline)", &base)] {
        println!("| {name} | {} | {} | {:.3} | {:.3} | {:.3} |", r.sent, r.errors, r.p(0.5), r.p(0.99), r.p(1.0));
    }
    println!("| ratio p99 lightcurve / healthz | {:.1} |", lc.p(0.99) / base.p(0.99).max(1e-6));
    Ok(())
}

struct LoadResult {
    sent: usize,
    errors: usize,
    latencies_ms: Vec<f64>,
}

impl LoadResult {
    fn p(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_ms.len() - 1) as f64 * q).round() as usize;
        self.latencies_ms[i]
    }
}

async fn load(url: &str, rate: u64, seconds: u64) -> LoadResult {
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let total = (rate * seconds) as usize;
    let start = tokio::time::Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<f64>>(total.max(1));
    for i in 0..total {
        let scheduled = start + interval * i as u32;
        tokio::time::sleep_until(scheduled).await;
        let (http, url, tx) = (http.clone(), url.to_owned(), tx.clone());
        tokio::spawn(async move {
            let ok = match http.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
                _ => false,
            };
            let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
            let _ = tx.send(ok.then_some(ms)).await;
        });
    }
    drop(tx);
    let mut r = LoadResult { sent: total, errors: 0, latencies_ms: Vec::with_capacity(total) };
    while let Some(v) = rx.recv().await {
        match v {
            Some(ms) => r.latencies_ms.push(ms),
            None => r.errors += 1,
        }
    }
    r.latencies_ms.sort_by(f64::total_cmp);
    r
}

async fn bare_changelog(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<(Duration, usize)> {
    let (b, t) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking({
        move || -> anyhow::Result<(Duration, usize)> {
            let threads: Vec<_> = (0..partitions)
                .map(|p| {
                    let (b, t) = (b.clone(), t.clone());
                    std::thread::spawn(move || bare_consume_partition(&b, &t, p))
                })
                .collect();
            let mut wall = Duration::ZERO;
            let mut bytes = 0;
            for th in threads {
                let (d, n) = th.join().map_err(|_| anyhow::anyhow!("bare consumer panicked"))??;
                wall = wall.max(d);
                bytes += n;
            }
            Ok((wall, bytes))
        }
    })
    .await?
}

/// Reads one partition from the beginning to its end (partition EOF); the time from creating
/// the consumer, and the payload bytes.
fn bare_consume_partition(bootstrap: &str, topic: &str, partition: u32) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let c: BaseConsumer = bare_consumer_config(bootstrap)
        .set("enable.partition.eof", "true")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition as i32, Offset::Beginning)?;
    c.assign(&tpl)?;
    let mut bytes = 0usize;
    loop {
        match c.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                use rdkafka::Message;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => anyhow::bail!("bare consumer: {e}"),
            None if started.elapsed() > Duration::from_secs(600) => anyhow::bail!("bare consumer stalled"),
            None => {}
        }
    }
    Ok((started.elapsed(), std::hint::black_box(bytes)))
}

async fn restore(n: usize, per_object: usize, partitions: u32) -> anyhow::Result<()> {
    let bootstrap = broker();
    let topics = TopicSet::unique("bench-restore");
    let kafka = KafkaConfig::new(&bootstrap);
    {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, n, per_object, partitions)).await??;
    }
    // A node materializes the input, writing the changelog.
    let tmp = tempfile::tempdir()?;
    let writer = NodeProcess::start(&tmp.path().join("writer"), &["--kafka", &bootstrap], &topics.env())?;
    writer.wait_ready(Duration::from_secs(120)).await?;
    let client = Client::new(&writer.url)?;
    while consumed(&client).await.unwrap_or(0) < n as u64 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = reqwest::get(format!("{}/metrics", writer.url)).await?.text().await?;
    let records = metric_samples(&metrics, "lightkeeper_changelog_applied_offset").sum::<f64>() as usize;
    drop(writer);
    eprintln!("changelog written: {records} records");

    // Baseline: bare consumers read the whole changelog, one thread per partition like the
    // restore; the wall time is the slowest partition's. Run before and after the restore (the
    // broker's caches warm up); the faster run is the baseline.
    let (bare1, bytes) = bare_changelog(&bootstrap, &topics.changelog, partitions).await?;
    // A fresh node restores it into an empty RocksDB. Partitions restore in parallel (one
    // thread each); the restore's wall time is the slowest partition's.
    let fresh = NodeProcess::start(&tmp.path().join("fresh"), &["--kafka", &bootstrap], &topics.env())?;
    fresh.wait_ready(Duration::from_secs(300)).await?;
    let metrics = reqwest::get(format!("{}/metrics", fresh.url)).await?.text().await?;
    let restored = metric_samples(&metrics, "lightkeeper_changelog_applied_total").sum::<f64>();
    let restore_secs = metric_samples(&metrics, "lightkeeper_restore_seconds").fold(0.0, f64::max);
    drop(fresh);
    let (bare2, _) = bare_changelog(&bootstrap, &topics.changelog, partitions).await?;
    let bare = bare1.min(bare2);
    eprintln!("bare runs: {:.3} s, {:.3} s", bare1.as_secs_f64(), bare2.as_secs_f64());
    let cleanup = {
        let (kafka, t) = (kafka.clone(), topics.clone());
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter])
    };
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    let mb = bytes as f64 / 1e6;
    let bare_rate = records as f64 / bare.as_secs_f64();
    let restore_rate = records as f64 / restore_secs;
    println!(
        "## restore: changelog of {records} records ({mb:.1} MB; {n} alerts, {per_object} per object, {partitions} partitions) — {}",
        machine()
    );
    println!("| measure | records/s | MB/s | time |\n|---|---|---|---|");
    println!(
        "| bare rdkafka consumers, one thread per partition | {bare_rate:.0} | {:.1} | {:.2} s |",
        mb / bare.as_secs_f64(),
        bare.as_secs_f64()
    );
    println!(
        "| restore into an empty RocksDB (slowest partition) | {restore_rate:.0} | {:.1} | {restore_secs:.2} s |",
        mb / restore_secs
    );
    println!("| ratio restore / bare | {:.2} | | |", restore_rate / bare_rate);
    println!("| changes applied by the restore | {restored:.0} | | |");
    Ok(())
}

/// Completion times of successful reads, and failures, of one reader.
struct Reads {
    done: Vec<Instant>,
    failed: usize,
}

fn reader(urls: Vec<String>, stop: std::sync::Arc<std::sync::atomic::AtomicBool>) -> tokio::task::JoinHandle<Reads> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut r = Reads { done: Vec::new(), failed: 0 };
        let mut i = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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

async fn handover(handovers: usize) -> anyhow::Result<()> {
    use lightkeeper_tests::cluster::{promote, Cluster};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
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
        anyhow::ensure!(report["drain_error"].is_null(), "handover {i} was not drained: {report}");
        promote_ms.push(report["elapsed_ms"].as_f64().unwrap_or(f64::NAN));
        eprintln!(
            "handover {i}: drain {:.1} ms, catch-up {:.1} ms, marker append {:.1} ms, apply to marker {:.1} ms",
            report["drain_ms"].as_f64().unwrap_or(f64::NAN),
            report["promoted"]["catch_up_ms"].as_f64().unwrap_or(f64::NAN),
            report["promoted"]["marker_append_ms"].as_f64().unwrap_or(f64::NAN),
            report["promoted"]["marker_apply_ms"].as_f64().unwrap_or(f64::NAN)
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
    let cleanup = {
        let t = cluster.topics.clone();
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter])
    };
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    let stats = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[v.len() - 1])
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

async fn failover(kills: usize) -> anyhow::Result<()> {
    use lightkeeper_tests::cluster::{partitions, Cluster};
    // Kept when the run fails or BENCH_KEEP is set, for the nodes' logs (`<id>.stderr.log`).
    let tmp = tempfile::tempdir()?.keep();
    eprintln!("failover bench: node data and logs in {}", tmp.display());
    let ids = ["a", "b", "c"];
    let cluster = Cluster::new("bench-failover", &ids, 1, &tmp).fixed_masters();
    let kafka = KafkaConfig::new(&broker());
    let mut nodes: Vec<NodeProcess> = ids.iter().map(|id| cluster.start(id)).collect();
    for n in &nodes {
        n.wait_ready(Duration::from_secs(120)).await?;
    }
    {
        let (kafka, topics) = (kafka.clone(), cluster.topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, 1000, 5, 1)).await??;
    }
    let key = format!("ztf:{}", object_id(0));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let caught_up = |url: String| async move {
        partitions(&url).await.ok().is_some_and(|ps| {
            ps.iter().all(|p| p["ready"] == true && p["changelog_lag"] == 0 && p["input_next"] == 1000)
        })
    };
    for id in ids {
        while !caught_up(cluster.url(id)).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut times = Vec::new();
    for k in 0..kills {
        // Even kills take the Raft leader down with the master (an election comes first), odd
        // ones a master that is not the leader: place the master by a handover if needed.
        let view = |id: &str| {
            let url = cluster.url(id);
            async move { reqwest::get(format!("{url}/v1/cluster")).await?.json::<serde_json::Value>().await }
        };
        // The leader as the member with the newest term sees it (a node just restarted may not
        // know it yet).
        let mut raft_leader = (0, String::new());
        for id in ids {
            let c = view(id).await?;
            let term = c["coordinator"]["term"].as_u64().unwrap_or(0);
            if let Some(l) = c["coordinator"]["leader"].as_str().filter(|_| term >= raft_leader.0) {
                raft_leader = (term, l.to_owned());
            }
        }
        let raft_leader = raft_leader.1;
        let mut master = None;
        for (i, id) in ids.iter().enumerate() {
            if partitions(&cluster.url(id)).await.is_ok_and(|ps| ps[0]["role"] == "master") {
                master = Some(i);
            }
        }
        let current = master.ok_or_else(|| anyhow::anyhow!("kill {k}: no master"))?;
        let want_leader = k % 2 == 0;
        let m = if (ids[current] == raft_leader) == want_leader {
            current
        } else {
            let target = ids
                .iter()
                .position(|id| (*id == raft_leader) == want_leader)
                .ok_or_else(|| anyhow::anyhow!("kill {k}: no node to place the master on"))?;
            lightkeeper_tests::cluster::promote(&cluster.url(ids[target]), 0).await?;
            target
        };
        let leader = view(ids[m]).await?["coordinator"]["leader"].as_str().unwrap_or_default() == ids[m];
        nodes[m].kill();
        let killed = Instant::now();
        // First successful read answered by another master, through the surviving nodes.
        let others: Vec<String> =
            ids.iter().enumerate().filter(|(i, _)| *i != m).map(|(_, id)| cluster.url(id)).collect();
        let mut i = 0;
        loop {
            let url = format!("{}/v1/objects/{key}", others[i % 2]);
            if let Ok(r) = http.get(&url).send().await {
                let by =
                    r.headers().get("x-lightkeeper-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let role = r.headers().get("x-lightkeeper-role").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                if r.status().is_success() && by != ids[m] && role == "master" {
                    break;
                }
            }
            i += 1;
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "kill {k}: no new master after 60 s");
        }
        let t = killed.elapsed();
        eprintln!(
            "kill {k}: master {} (raft leader: {leader}) → first read on the new master after {} ms",
            ids[m],
            t.as_millis()
        );
        times.push((t.as_secs_f64() * 1e3, leader));
        // Bring the node back as a standby, caught up, before the next kill.
        nodes[m] = cluster.start(ids[m]);
        nodes[m].wait_ready(Duration::from_secs(120)).await?;
        let url = cluster.url(ids[m]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !caught_up(url.clone()).await {
            anyhow::ensure!(Instant::now() < deadline, "kill {k}: {} did not catch up", ids[m]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let cleanup = {
        let t = cluster.topics.clone();
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter])
    };
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    drop(nodes);
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let pct = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q).round() as usize]
    };
    let mut all: Vec<f64> = times.iter().map(|(t, _)| *t).collect();
    let mut with_leader: Vec<f64> = times.iter().filter(|(_, l)| *l).map(|(t, _)| *t).collect();
    let mut without: Vec<f64> = times.iter().filter(|(_, l)| !*l).map(|(t, _)| *t).collect();
    println!("## failover: {kills} SIGKILLs of the master, 3 nodes, automatic promotion — {}", machine());
    println!("| kills | n | median | p90 | p99 | max |\n|---|---|---|---|---|---|");
    for (name, v) in [
        ("all", &mut all),
        ("master was also the Raft leader", &mut with_leader),
        ("master was not the Raft leader", &mut without),
    ] {
        if v.is_empty() {
            continue;
        }
        let n = v.len();
        println!(
            "| {name} | {n} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            pct(v, 0.5),
            pct(v, 0.9),
            pct(v, 0.99),
            pct(v, 1.0)
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
fn timed_reader(
    urls: Vec<String>,
    keys: Vec<String>,
    offset: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Timed>> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
        let mut out = Vec::new();
        let mut i = offset;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
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

async fn membership(n: usize, per_object: usize) -> anyhow::Result<()> {
    use lightkeeper_tests::cluster::{cluster_view, hosted_by, partitions, placement, Cluster, TOKEN};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const PARTITIONS: u32 = 4;
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
    while lightkeeper_tests::load::cluster_input_next(&urls).await < n as u64 {
        within(started, "materializing the input")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leader = cluster_view(&urls[0]).await?["coordinator"]["leader"].as_str().unwrap_or_default().to_owned();
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
        let d_masters = d_parts.iter().filter(|p| p["role"] == "master" && p["ready"] == true).count();
        let d_ready = d_parts.iter().filter(|p| p["ready"] == true && p["changelog_lag"] == 0).count();
        if balanced && d_masters == 1 && d_ready == 2 {
            break;
        }
    }
    let joined = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Decommission the Raft leader.
    let t_leave = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/admin/nodes/{leader}/decommission", read_urls[0]))
        .bearer_auth(TOKEN)
        .send()
        .await?;
    anyhow::ensure!(resp.status() == 202, "decommission: {} {}", resp.status(), resp.text().await?);
    loop {
        within(t_leave, "the decommission")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (Some(placed), Ok(view)) = (placement(&read_urls[0], PARTITIONS).await, cluster_view(&read_urls[0]).await)
        else {
            continue;
        };
        let names = |v: &serde_json::Value| v.as_array().into_iter().flatten().any(|n| n == leader.as_str());
        let coordinator = &view["coordinator"];
        let gone = placed.values().all(|rs| !rs.contains(&leader))
            && !names(&coordinator["voters"])
            && !names(&coordinator["learners"]);
        let hosted = partitions(&cluster.url(&leader)).await.unwrap_or_default();
        if gone && hosted.iter().all(|p| p["role"] == "not_hosted") {
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
    let cleanup = {
        let t = cluster.topics.clone();
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter])
    };
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    nodes.push(d);
    drop(nodes);
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    let phase = |from: Instant, to: Instant| {
        let mut ms: Vec<f64> = reads.iter().filter(|r| r.at >= from && r.at < to && !r.failed).map(|r| r.ms).collect();
        let failed = reads.iter().filter(|r| r.at >= from && r.at < to && r.failed).count();
        ms.sort_by(f64::total_cmp);
        let q = |q: f64| if ms.is_empty() { 0.0 } else { ms[((ms.len() - 1) as f64 * q).round() as usize] };
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
