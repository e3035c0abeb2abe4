//! `lightkeeper mirror`: one local, continuous, re-keyed copy of a survey's upstream stream.
//!
//! Why a process of its own: the survey's Kafka is remote, secured and bandwidth-limited, and
//! its topics are daily (`ztf_20210831_programid1`, …) and keyed by nothing useful. The mirror
//! connects once, as one consumer group (several mirrors share the upstream partitions), and
//! writes each alert to the local `alerts` topic keyed by its object key, in the partition Kafka's
//! murmur2 partitioner gives that key over the local partition count — so partition masters
//! merge one object's alerts in one place, whatever upstream topic they came from.
//!
//! Per batch: poll up to `batch_size` messages → decode each just far enough to know its object
//! (and, for a wire-format alert, map its schema id to the local one, `schemas`) → append to the
//! local partitions, acks=all → append undecodable messages to the dead-letter topic with the
//! reason → commit the upstream offsets. An offset is committed only after everything before it
//! was acknowledged locally, so a crash anywhere replays, never skips (at-least-once); the
//! partition masters' merge makes a replayed alert a no-op. A registry that cannot be reached
//! holds the batch and retries; a local append that fails for good stops the mirror (exit
//! status 2) with nothing committed past it.
//!
//! Progress: a line on stderr every `progress_interval_s`, and Prometheus metrics (consumed,
//! produced, dead letters by reason, upstream lag per topic from librdkafka's statistics) at
//! `listen`.

pub mod config;
mod metrics;
mod schemas;

use crate::mirror::config::{MirrorConfig, Start};
use anyhow::Context as _;
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{Append, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::registry::{ConfluentRegistry, EmbeddedRegistry, SchemaRegistry};
use metrics::{Metrics, Progress, ReasonLabel, TopicLabel, UpstreamContext};
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use schemas::{MapError, SchemaMap};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Runs the mirror until `shutdown` resolves (then finishes and commits the batch in hand) or
/// it fails. Serves `/metrics` and `/healthz` at `config.listen` and prints
/// `lightkeeper mirror listening on http://…` once it is up.
pub async fn run(config: MirrorConfig, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    info!(config = ?config, "starting the mirror");
    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let cancel = tokio_util::sync::CancellationToken::new();
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" })).route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut out = String::new();
                let content_type = match prometheus_client::encoding::text::encode(&mut out, &registry) {
                    Ok(()) => "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    Err(e) => {
                        out = e.to_string();
                        "text/plain"
                    }
                };
                ([(axum::http::header::CONTENT_TYPE, content_type)], out)
            }
        }),
    );
    let server = {
        let cancel = cancel.clone();
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await })
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mut worker = {
        let (stop, metrics) = (stop.clone(), metrics.clone());
        let config = config.clone();
        tokio::task::spawn_blocking(move || Mirror::start(&config, metrics)?.run(&stop))
    };
    println!("lightkeeper mirror listening on http://{addr}");
    let outcome = tokio::select! {
        r = &mut worker => r,
        () = shutdown => {
            info!("stopping: finishing the batch in hand");
            stop.store(true, Ordering::Release);
            worker.await
        }
    };
    cancel.cancel();
    let _ = server.await;
    outcome.context("the mirror thread")?
}

/// Where an upstream message goes.
enum Outcome {
    Alert { partition: u32, key: String, payload: Vec<u8> },
    Dead { code: &'static str, reason: String },
}

struct Mirror {
    config: MirrorConfig,
    consumer: BaseConsumer<UpstreamContext>,
    alerts: Arc<KafkaTopic>,
    dead_letter: Arc<KafkaTopic>,
    decoder: Decoder,
    schemas: SchemaMap,
    metrics: Metrics,
}

/// Longest wait between retries of a batch that met a transient error.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Mirror {
    fn start(config: &MirrorConfig, metrics: Metrics) -> anyhow::Result<Mirror> {
        let local = &config.local;
        let retention = (local.retention_hours > 0).then(|| Duration::from_secs(local.retention_hours * 3600));
        let n = local
            .kafka
            .ensure_retained_topic(&local.topic, local.partitions, retention)
            .with_context(|| format!("local topic {}", local.topic))?;
        local
            .kafka
            .ensure_topic(&local.dead_letter, n, None)
            .with_context(|| format!("local dead-letter topic {}", local.dead_letter))?;
        let alerts = Arc::new(KafkaTopic::open(&local.kafka, &local.topic)?);
        let dead_letter = Arc::new(KafkaTopic::open(&local.kafka, &local.dead_letter)?);

        let timeout = Duration::from_millis(config.upstream.kafka.timeout_ms);
        let upstream_registry: Arc<dyn SchemaRegistry> = match &config.upstream.registry_url {
            Some(url) => Arc::new(
                ConfluentRegistry::with_auth(url, timeout, &config.upstream.registry_auth)
                    .context("upstream.registry_auth")?,
            ),
            None => Arc::new(EmbeddedRegistry::published()),
        };
        let local_registry = match &local.registry_url {
            Some(url) => Some((
                ConfluentRegistry::with_auth(url, timeout, &local.registry_auth).context("local.registry_auth")?,
                format!("{}-value", local.topic),
            )),
            None => None,
        };
        let consumer: BaseConsumer<UpstreamContext> = config
            .upstream
            .kafka
            .client_config()
            .set("group.id", &config.upstream.group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.upstream.start {
                    Start::Earliest => "earliest",
                    Start::Latest => "latest",
                },
            )
            .set("topic.metadata.refresh.interval.ms", config.upstream.metadata_refresh_ms.to_string())
            .set("statistics.interval.ms", "5000")
            .set("fetch.wait.max.ms", config.upstream.kafka.fetch_wait_max_ms.to_string())
            .set("fetch.message.max.bytes", "8388608")
            .create_with_context(UpstreamContext { lag: metrics.lag.clone(), lag_total: metrics.lag_total.clone() })
            .context("upstream consumer")?;
        let subscription = config.subscription();
        let topics: Vec<&str> = subscription.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).context("subscribing upstream")?;
        info!(topics = ?subscription, group = %config.upstream.group_id, local = %local.topic, partitions = n, "mirroring");
        Ok(Mirror {
            config: config.clone(),
            consumer,
            alerts,
            dead_letter,
            decoder: Decoder::new(upstream_registry.clone()),
            schemas: SchemaMap::new(upstream_registry, local_registry, metrics.registered.clone()),
            metrics,
        })
    }

    fn run(mut self, stop: &AtomicBool) -> anyhow::Result<()> {
        let mut batch_size = self.config.batch_size;
        if self.config.max_rate > 0 {
            // A tenth of a second's worth per batch keeps the rate smooth.
            batch_size = batch_size.min((self.config.max_rate as usize / 10).max(1));
        }
        let started = Instant::now();
        let mut sent: u64 = 0;
        let mut progress = Progress::new(Duration::from_secs(self.config.progress_interval_s.max(1)));
        while !stop.load(Ordering::Acquire) {
            let batch = self.poll_batch(batch_size);
            if !batch.is_empty() {
                self.mirror_batch(&batch, stop)?;
                sent += batch.len() as u64;
            }
            progress.maybe_report(&self.metrics);
            if self.config.max_rate > 0 {
                let due = Duration::from_secs_f64(sent as f64 / self.config.max_rate as f64);
                while started.elapsed() < due && !stop.load(Ordering::Acquire) {
                    std::thread::sleep((due - started.elapsed()).min(Duration::from_millis(50)));
                }
            }
        }
        info!("mirror stopped");
        Ok(())
    }

    /// Up to `max` messages: waits up to 500 ms for the first, then takes what is already here.
    fn poll_batch(&self, max: usize) -> Vec<OwnedMessage> {
        let mut out = Vec::new();
        let mut wait = Duration::from_millis(500);
        while out.len() < max {
            match self.consumer.poll(wait) {
                Some(Ok(m)) => out.push(m.detach()),
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    warn!(error = %e, "upstream consumer");
                    break;
                }
                None => break,
            }
            wait = Duration::ZERO;
        }
        out
    }

    /// Decodes and maps every message (retrying while a registry is unreachable), appends the
    /// alerts and the dead letters, then commits past the batch.
    fn mirror_batch(&mut self, batch: &[OwnedMessage], stop: &AtomicBool) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        let outcomes = loop {
            match batch.iter().map(|m| self.route(m)).collect::<Result<Vec<_>, String>>() {
                Ok(o) => break o,
                Err(e) => {
                    warn!(error = %e, retry_in = ?backoff, "a registry could not be reached; holding the batch");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if stop.load(Ordering::Acquire) {
                        // Nothing appended, nothing committed: the next start redoes the batch.
                        return Ok(());
                    }
                }
            }
        };
        let mut by_partition: BTreeMap<u32, Vec<Mirrored<'_>>> = BTreeMap::new();
        let mut dead: Vec<(&OwnedMessage, &'static str, &str)> = Vec::new();
        for (m, o) in batch.iter().zip(&outcomes) {
            match o {
                Outcome::Alert { partition, key, payload } => {
                    by_partition.entry(*partition).or_default().push(Mirrored { message: m, key, payload })
                }
                Outcome::Dead { code, reason } => dead.push((m, code, reason)),
            }
        }
        // The local partitions in parallel: each append waits for its acknowledgement.
        std::thread::scope(|s| -> anyhow::Result<()> {
            let handles: Vec<_> = by_partition
                .iter()
                .map(|(p, records)| {
                    let topic = self.alerts.clone();
                    s.spawn(move || append_alerts(topic.as_ref(), *p, records, stop))
                })
                .collect();
            for h in handles {
                h.join().map_err(|_| anyhow::anyhow!("an append thread panicked"))??;
            }
            Ok(())
        })?;
        if !dead.is_empty() {
            append_dead(self.dead_letter.as_ref(), &dead, stop)?;
        }
        for m in batch {
            self.metrics.consumed.get_or_create(&TopicLabel { topic: m.topic().to_owned() }).inc();
        }
        self.metrics.produced.inc_by(by_partition.values().map(|v| v.len() as u64).sum());
        for (_, code, reason) in &dead {
            self.metrics.dead_letters.get_or_create(&ReasonLabel { reason: (*code).to_owned() }).inc();
            warn!(reason = %reason, code, "upstream message dead-lettered");
        }
        self.commit(batch);
        Ok(())
    }

    /// Where one message goes; `Err` only for a transient registry failure.
    fn route(&mut self, m: &OwnedMessage) -> Result<Outcome, String> {
        let payload = m.payload().unwrap_or_default();
        let alert = match self.decoder.decode(payload) {
            Ok(a) => a,
            Err(e) if e.is_transient() => return Err(e.to_string()),
            Err(e) => return Ok(Outcome::Dead { code: e.code(), reason: e.to_string() }),
        };
        let mut payload = payload.to_vec();
        if payload.first() == Some(&0) && !payload.starts_with(b"Obj\x01") {
            let upstream = u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
            match self.schemas.local_id(upstream) {
                Ok(local) => payload[1..5].copy_from_slice(&local.to_be_bytes()),
                Err(MapError::Transient(e)) => return Err(e),
                Err(MapError::Permanent { code, reason }) => return Ok(Outcome::Dead { code, reason }),
            }
        }
        let partition = partition_for(alert.key.as_bytes(), self.alerts.partitions());
        Ok(Outcome::Alert { partition, key: alert.key, payload })
    }

    /// Commits the offset after the last message of each upstream partition in the batch.
    fn commit(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for m in batch {
            let e = next.entry((m.topic(), m.partition())).or_insert(0);
            *e = (*e).max(m.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            if let Err(e) = tpl.add_partition_offset(topic, partition, Offset::Offset(offset)) {
                warn!(error = %e, topic, partition, "cannot commit");
            }
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => {
                self.metrics.commits.inc();
            }
            Err(e) => {
                // A rebalance moved the partitions: their next owner replays from the last
                // commit, which the merge absorbs.
                self.metrics.commit_failures.inc();
                warn!(error = %e, "committing upstream offsets failed; the batch will be replayed by the partitions' next owner");
            }
        }
    }
}

/// Provenance headers of a mirrored record (the same names as the nodes' dead letters).
fn source_headers(m: &OwnedMessage) -> [(String, Vec<u8>); 3] {
    [
        ("lightkeeper.source.topic".into(), m.topic().as_bytes().to_vec()),
        ("lightkeeper.source.partition".into(), m.partition().to_string().into_bytes()),
        ("lightkeeper.source.offset".into(), m.offset().to_string().into_bytes()),
    ]
}

/// Appends with retries while the error is retriable (a broker restarting); fails on the first
/// error that is not, or when asked to stop.
fn append_retrying(topic: &dyn Topic, partition: u32, records: &[Append<'_>], stop: &AtomicBool) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match topic.append(partition, records) {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retriable() && !stop.load(Ordering::Acquire) => {
                warn!(error = %e, topic = topic.name(), partition, retry_in = ?backoff, "local append failed; retrying");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("appending to {}/{partition}", topic.name()))),
        }
    }
}

/// An alert on its way to the local topic.
struct Mirrored<'a> {
    message: &'a OwnedMessage,
    key: &'a str,
    payload: &'a [u8],
}

fn append_alerts(topic: &dyn Topic, partition: u32, records: &[Mirrored<'_>], stop: &AtomicBool) -> anyhow::Result<()> {
    let headers: Vec<[(String, Vec<u8>); 3]> = records.iter().map(|r| source_headers(r.message)).collect();
    let header_refs: Vec<Vec<(&str, &[u8])>> =
        headers.iter().map(|h| h.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()).collect();
    let appends: Vec<Append<'_>> = records
        .iter()
        .zip(&header_refs)
        .map(|(r, h)| Append { key: Some(r.key.as_bytes()), payload: r.payload, headers: h })
        .collect();
    append_retrying(topic, partition, &appends, stop)
}

fn append_dead(
    topic: &dyn Topic,
    dead: &[(&OwnedMessage, &'static str, &str)],
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut by_partition: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, (m, _, _)) in dead.iter().enumerate() {
        // Spread by the upstream position; dead letters have no object key to hash.
        let slot = (m.partition().max(0) as u32).wrapping_add(m.offset().max(0) as u32) % topic.partitions();
        by_partition.entry(slot).or_default().push(i);
    }
    for (p, idx) in by_partition {
        let headers: Vec<Vec<(String, Vec<u8>)>> = idx
            .iter()
            .map(|&i| {
                let (m, code, reason) = dead[i];
                let mut h: Vec<(String, Vec<u8>)> = source_headers(m).into_iter().collect();
                h.push(("lightkeeper.reason".into(), reason.as_bytes().to_vec()));
                h.push(("lightkeeper.code".into(), code.as_bytes().to_vec()));
                h
            })
            .collect();
        let header_refs: Vec<Vec<(&str, &[u8])>> =
            headers.iter().map(|h| h.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()).collect();
        let appends: Vec<Append<'_>> = idx
            .iter()
            .zip(&header_refs)
            .map(|(&i, h)| Append {
                key: dead[i].0.key(),
                payload: dead[i].0.payload().unwrap_or_default(),
                headers: h,
            })
            .collect();
        append_retrying(topic, p, &appends, stop)?;
    }
    Ok(())
}
