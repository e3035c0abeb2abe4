//! `bench restore`: how fast a fresh node with an empty data directory rebuilds its stores
//! from the changelog — decode each record, apply the epoch fence, write objects and history
//! into RocksDB — in records/s and MB/s.
//!
//! First a node materializes N alerts, which writes the changelog. Baseline: bare rdkafka
//! consumers reading that whole changelog, one thread per partition as the restore does, to
//! partition EOF; run before and after the restore (the broker's caches warm up) and the faster
//! run counts. Reading is the floor of any restore, so restore / bare is the share of the
//! broker's read rate the restore keeps on this machine. The restore's time is the slowest
//! partition's `lightkeeper_restore_seconds` (partitions restore in parallel), as the bare
//! baseline's wall time is its slowest partition's.

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
    drop_topics(&kafka, &topics).await?;
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

/// Reads every partition of `topic` to its end, one thread per partition; the slowest
/// partition's time and the payload bytes of all.
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
