//! Benchmarks (not timed tests). Each compares against a baseline measured in the same run.
//!
//! - `bench ingest`: N real-size alerts in a fresh input topic; a bare rdkafka consumer reads
//!   the topic (baseline), then a `lightkeeper` node materializes it end to end (decode, merge,
//!   changelog with acks=all, RocksDB). Reports alerts/s of both and the ratio.
//! - `bench query`: an embedded node with one object of P light-curve points; open-loop GET
//!   load at R requests/s on the light curve, then on `/healthz` (baseline); latency
//!   percentiles measured from each request's scheduled start (no coordinated omission).

use clap::{Parser, Subcommand};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
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

async fn ingest(n: usize, per_object: usize, partitions: u32) -> anyhow::Result<()> {
    let bootstrap = broker();
    let topics = TopicSet::unique("bench");
    let kafka = KafkaConfig::new(&bootstrap);
    kafka.ensure_topic(&topics.input, partitions, false)?;

    // Generate and load N real-size alerts.
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    eprintln!("generating {n} alerts from {} real templates", templates.len());
    let input = KafkaTopic::open(&kafka, &topics.input)?;
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

    // Baseline: a bare consumer reading the same topic.
    let bare = tokio::task::spawn_blocking({
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
    let batches: f64 = metrics
        .lines()
        .find(|l| l.starts_with("lightkeeper_batch_seconds_count"))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or(f64::NAN);
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

fn bare_consume(bootstrap: &str, topic: &str, partitions: u32, n: usize) -> anyhow::Result<Duration> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bare"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.message.max.bytes", "8388608")
        .set("queued.max.messages.kbytes", "65536")
        .create()?;
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
    std::hint::black_box(bytes);
    Ok(started.elapsed())
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
