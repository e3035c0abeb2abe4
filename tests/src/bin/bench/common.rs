//! What several benchmarks share: loading real-size alerts into an input topic, the settings
//! of the bare rdkafka consumers that serve as baselines, dropping a run's topics, and the
//! machine line printed under every report.

use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::{shared_data, unique};
use rdkafka::ClientConfig;
use std::path::Path;

/// Cores and CPU model, for the heading of each report (figures are only comparable on the
/// same machine).
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{cpus} cores, {model}")
}

/// Appends `(partition, key, payload)` records to `input`, one append per partition.
pub fn append_by_partition(
    input: &KafkaTopic,
    partitions: u32,
    batch: &[(u32, String, Vec<u8>)],
) -> anyhow::Result<()> {
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
    Ok(())
}

/// Loads `n` real-size alerts of `n / per_object` objects into the input topic of `topics`;
/// returns their total size in bytes.
pub fn load_input(
    kafka: &KafkaConfig,
    topics: &TopicSet,
    n: usize,
    per_object: usize,
    partitions: u32,
) -> anyhow::Result<usize> {
    kafka.ensure_topic(&topics.input, partitions, None)?;
    // Generate and load N real-size alerts.
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    eprintln!("generating {n} alerts from {} real templates", templates.len());
    let input = KafkaTopic::open(kafka, &topics.input)?;
    let mut bytes_total = 0usize;
    let mut batch: Vec<(u32, String, Vec<u8>)> = Vec::new();
    let flush = |batch: &mut Vec<(u32, String, Vec<u8>)>| -> anyhow::Result<()> {
        append_by_partition(&input, partitions, batch)?;
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

/// Settings shared by the bare baseline consumers (the node's readers use the same fetch sizes).
pub fn bare_consumer_config(bootstrap: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bare"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .set("fetch.message.max.bytes", "8388608")
        .set("queued.max.messages.kbytes", "65536");
    c
}

/// Deletes the input, changelog and dead-letter topics of a run: the test broker's memory
/// engine keeps everything. A failure is reported, not fatal (the figures are already in).
pub async fn drop_topics(kafka: &KafkaConfig, topics: &TopicSet) -> anyhow::Result<()> {
    let cleanup = {
        let (kafka, t) = (kafka.clone(), topics.clone());
        move || kafka.delete_topics(&[&t.input, &t.changelog, &t.dead_letter, &t.schemas, &t.settings])
    };
    if let Err(e) = tokio::task::spawn_blocking(cleanup).await? {
        eprintln!("could not delete the benchmark topics: {e}");
    }
    Ok(())
}

/// Deletes a pipeline's output topic.
pub async fn drop_output(kafka: &KafkaConfig, topic: &str) -> anyhow::Result<()> {
    let (kafka, t) = (kafka.clone(), topic.to_owned());
    if let Err(e) = tokio::task::spawn_blocking(move || kafka.delete_topics(&[&t])).await? {
        eprintln!("could not delete the pipeline's output topic: {e}");
    }
    Ok(())
}

/// Removes a run's node data and logs, unless `BENCH_KEEP` is set. Not called when the run
/// fails, so that the nodes' logs (`<id>.stderr.log`) stay for a post-mortem.
pub fn discard_run_dir(dir: &Path) {
    if std::env::var_os("BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
