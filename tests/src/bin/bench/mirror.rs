//! `bench mirror`: alerts/s of `lightkeeper mirror` copying an upstream topic of real-size
//! alerts into a local topic, against a bare consume-and-produce loop on the same topic in the
//! same run.
//!
//! The bare loop is the floor of any mirror: one rdkafka consumer in a group, subscribed to the
//! upstream topic; per batch of 500 it produces every message unchanged (same key) to a local
//! topic with acks=all, waits for the acknowledgements, then commits the upstream offsets
//! synchronously — the mirror's guarantees without its work (decoding each packet for its object
//! key, hashing it to a partition, mapping schema ids, provenance headers). Both are timed from
//! the end of their first acknowledged batch to their last, over the alerts in between, so the
//! consumer group's join (~3 s on the test broker) counts in neither. The mirror's figure comes
//! from its own `lightkeeper_mirror_produced_total`, polled every 20 ms. The bare loop runs before and after
//! the mirror (the broker's caches warm up); the faster run is the baseline.

use crate::common::{load_input, machine};
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::cluster::metric;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::{broker, unique, NodeProcess};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub async fn run(n: usize, partitions: u32) -> anyhow::Result<()> {
    let bootstrap = broker();
    let upstream = TopicSet::unique("bench-mirror-upstream");
    let kafka = KafkaConfig::new(&bootstrap);
    let bytes = {
        let (kafka, upstream) = (kafka.clone(), upstream.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &upstream, n, 5, partitions)).await??
    };

    let bare1 = {
        let b = bootstrap.clone();
        let t = upstream.input.clone();
        tokio::task::spawn_blocking(move || bare_loop(&b, &t, n, partitions)).await??
    };
    let mirror = mirror_once(&bootstrap, &upstream.input, n, partitions).await?;
    let bare2 = {
        let b = bootstrap.clone();
        let t = upstream.input.clone();
        tokio::task::spawn_blocking(move || bare_loop(&b, &t, n, partitions)).await??
    };
    let rate = |(count, d): (usize, Duration)| count as f64 / d.as_secs_f64();
    let bare = if rate(bare1) >= rate(bare2) { bare1 } else { bare2 };
    let _ = kafka.delete_topics(&[&upstream.input]);
    let per_alert = bytes as f64 / n as f64;
    println!("## bench mirror: {n} real-size alerts ({:.1} MB), {partitions} partitions", bytes as f64 / 1e6);
    println!("machine: {}", machine());
    println!("| run | alerts timed | seconds | alerts/s | MB/s |");
    println!("|---|---|---|---|---|");
    for (name, r) in
        [("bare consume → produce → commit (1st)", bare1), ("bare (2nd)", bare2), ("lightkeeper mirror", mirror)]
    {
        println!("| {name} | {} | {:.2} | {:.0} | {:.1} |", r.0, r.1.as_secs_f64(), rate(r), rate(r) * per_alert / 1e6);
    }
    println!("mirror / bare (faster run): {:.2}", rate(mirror) / rate(bare));
    Ok(())
}

/// The baseline: consume, produce unchanged with acks=all, wait, commit; per batch of 500.
fn bare_loop(bootstrap: &str, topic: &str, n: usize, partitions: u32) -> anyhow::Result<(usize, Duration)> {
    let local = format!("{}-bare", unique("bench-mirror-local"));
    let kafka = KafkaConfig::new(bootstrap);
    kafka.ensure_topic(&local, partitions, None)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("bare-mirror"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("fetch.message.max.bytes", "8388608")
        .create()?;
    consumer.subscribe(&[topic])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("linger.ms", "0")
        .set("message.max.bytes", "8388608")
        .create()?;
    let mut done = 0;
    let mut started = None;
    while done < n {
        let mut batch = Vec::new();
        let mut wait = Duration::from_millis(500);
        while batch.len() < 500 {
            match consumer.poll(wait) {
                Some(Ok(m)) => batch.push(m.detach()),
                Some(Err(e)) => anyhow::bail!("bare consumer: {e}"),
                None => break,
            }
            wait = Duration::ZERO;
        }
        if batch.is_empty() {
            continue;
        }
        let acks: Vec<_> = batch
            .iter()
            .map(|m| {
                let mut r = FutureRecord::to(&local).payload(m.payload().unwrap_or_default()).partition(m.partition());
                if let Some(k) = m.key() {
                    r = r.key(k);
                }
                producer.send_result(r).map_err(|(e, _)| anyhow::anyhow!("enqueue: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
        for ack in acks {
            futures::executor::block_on(ack)?.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for m in &batch {
            let e = next.entry(m.partition()).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (p, o) in next {
            tpl.add_partition_offset(topic, p, Offset::Offset(o))?;
        }
        consumer.commit(&tpl, CommitMode::Sync)?;
        done += batch.len();
        started.get_or_insert((done, Instant::now()));
    }
    let (first, at) = started.expect("at least one batch");
    let _ = kafka.delete_topics(&[&local]);
    Ok((n - first, at.elapsed()))
}

/// One run of `lightkeeper mirror` from `topic` to a fresh local topic, until all `n` are out.
async fn mirror_once(bootstrap: &str, topic: &str, n: usize, partitions: u32) -> anyhow::Result<(usize, Duration)> {
    let tmp = tempfile::tempdir()?;
    let base = unique("bench-mirror");
    let local = format!("{base}-alerts");
    let config = tmp.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"
batch_size = 500
progress_interval_s = 5
[upstream]
topics = ["{topic}"]
group_id = "{base}-group"
[upstream.kafka]
bootstrap = "{bootstrap}"
[local]
topic = "{local}"
dead_letter = "{base}-dlq"
partitions = {partitions}
[local.kafka]
bootstrap = "{bootstrap}"
"#
        ),
    )?;
    let mut mirror = NodeProcess::run(
        &["mirror", "--config", &config.display().to_string(), "--listen", "127.0.0.1:0"],
        &tmp.path().join("mirror"),
        &[],
    )?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut started = None;
    loop {
        let produced = metric(&mirror.url, "lightkeeper_mirror_produced_total").await.unwrap_or(0.0) as usize;
        if produced > 0 {
            started.get_or_insert((produced, Instant::now()));
        }
        if produced >= n {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the mirror did not finish: {}", mirror.stderr());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (first, at) = started.expect("the mirror produced");
    let took = at.elapsed();
    mirror.terminate()?;
    let _ = KafkaConfig::new(bootstrap).delete_topics(&[&local, &format!("{base}-dlq")]);
    Ok((n - first, took))
}
