//! `bench ingest`: how fast one node materializes an input topic end to end — decode, merge,
//! changelog append with acks=all, RocksDB — in alerts/s.
//!
//! Baseline: a bare rdkafka consumer reading the same topic from the beginning, in the same
//! run. A node cannot ingest faster than it can read its input, so the ratio node / bare is
//! the share of the broker's read rate the node keeps; it cancels out how fast the (noisy,
//! shared) machine and broker happen to be. The node's time runs from its `/readyz` to the
//! moment `/v1/cluster` shows every input record consumed. Also reported: the node's peak RSS,
//! its mean worker batch and the worker time per phase (poll, decode, changelog, store), which
//! is where a slowdown shows first.

use crate::common::{bare_consumer_config, drop_topics, load_input, machine};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::cluster::metric_samples;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::{broker, consumed, NodeProcess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

pub async fn run(n: usize, per_object: usize, partitions: u32) -> anyhow::Result<()> {
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
    drop_topics(&kafka, &topics).await?;
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
