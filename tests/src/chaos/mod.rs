//! The chaos soak (issue 14, part 1): many faults, one after another, under load, with the
//! contract checked along the way and at the end.
//!
//! A run starts PostgreSQL and the test broker on its durable engine (so the broker itself can
//! be restarted), N real nodes with a replication factor, and then:
//!
//! - an object subscriber and a filter subscriber per node, subscribed before any object
//!   exists, which resume on another node whenever theirs fails ([`observers`]);
//! - a warm-up alert for every object of the pool (every read after it must find its object);
//! - closed-loop readers that try another node when one fails ([`observers::reader`]);
//! - a real producer at a steady rate ([`producer`]);
//! - every 5–20 s (configurable) a fault from [`faults::FaultKind`], chosen at random from a
//!   shuffled bag so that every kind comes up, healed, and followed by a wait for recovery;
//! - every second, each node's view of the cluster into the history ([`history`]).
//!
//! At the end the producer stops, everything is materialized, every replica is compared with
//! the independent reference and every subscriber must have reached every object's last
//! version ([`invariants`]). The [`SoakReport`] has the figures the issue asks for; the history
//! explains a failure. `bench chaos` runs it for as long as wanted; `tests/tests/chaos.rs`
//! runs a short one in CI.

pub mod faults;
pub mod history;
pub mod invariants;
pub mod observers;
pub mod producer;

use crate::cluster::Cluster;
use crate::kafka::DurableBroker;
use faults::{FaultKind, FaultRecord, Target};
use history::{History, Task};
use observers::{FilterSeen, ReadStats, Seen};
use producer::{Ledger, Workload};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The filter every filter subscriber follows: it matches every object of the pool from its
/// first alert on, so every version of every object must reach it.
const MATCH_ALL: &str = "n_alerts >= 1";

#[derive(Debug, Clone)]
pub struct SoakConfig {
    pub nodes: usize,
    pub replication_factor: usize,
    pub partitions: u32,
    /// Alerts per second from the producer.
    pub rate: u32,
    /// How long faults are injected (at least; see `min_faults`).
    pub duration: Duration,
    /// Faults injected at least, however long that takes (every kind once: `kinds.len()`).
    pub min_faults: usize,
    /// The pause before each fault, drawn uniformly from this range.
    pub fault_gap: (Duration, Duration),
    pub kinds: Vec<FaultKind>,
    /// Objects in the pool (each gets the warm-up alert, then random ones).
    pub objects: usize,
    /// Objects each object subscriber follows.
    pub watched: usize,
    pub readers: usize,
    pub seed: u64,
    /// How long a fault may take to recover from, after it is healed, before the run fails.
    pub recovery_timeout: Duration,
    /// Where nodes' data, logs and the history go.
    pub root: PathBuf,
}

impl SoakConfig {
    /// Defaults for `nodes` nodes under `root`: replication factor 2 (3 from 5 nodes), 6
    /// partitions, 500 alerts/s, every fault kind every 5–20 s for `duration`.
    pub fn new(nodes: usize, duration: Duration, root: PathBuf) -> SoakConfig {
        SoakConfig {
            nodes,
            replication_factor: if nodes >= 5 { 3 } else { 2 },
            partitions: 6,
            rate: 500,
            duration,
            min_faults: FaultKind::ALL.len(),
            fault_gap: (Duration::from_secs(5), Duration::from_secs(20)),
            kinds: FaultKind::ALL.to_vec(),
            objects: 2000,
            watched: 64,
            readers: 2,
            seed: 1,
            recovery_timeout: Duration::from_secs(120),
            root,
        }
    }
}

/// What a soak measured.
#[derive(Debug, Clone, Serialize)]
pub struct SoakReport {
    pub nodes: usize,
    pub replication_factor: usize,
    pub partitions: u32,
    pub rate: u32,
    pub seed: u64,
    /// Of the fault phase.
    pub seconds: f64,
    pub alerts_acknowledged: u64,
    /// Deliveries that failed (timed out): in the topic or not, either is allowed.
    pub alerts_unconfirmed: u64,
    pub faults: Vec<FaultRecord>,
    pub reads_ok: u64,
    pub reads_failed: u64,
    pub reads_retried: u64,
    pub slowest_read_ms: u64,
    pub updates_delivered: u64,
    pub resumes: u64,
    pub subscriber_gaps: u64,
    pub subscriber_duplicates: u64,
    pub lost_alerts: usize,
    pub replicas_checked: usize,
    pub divergent_replicas: usize,
    /// Every invariant violation (filter gaps included).
    pub violations: Vec<String>,
    /// The violations that are a filter subscription skipping a version (RELIABILITY.md,
    /// "Faults the soak found").
    pub filter_gaps: Vec<String>,
    pub history: PathBuf,
}

impl SoakReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violations other than filter gaps.
    pub fn other_violations(&self) -> Vec<&String> {
        self.violations.iter().filter(|v| !self.filter_gaps.contains(v)).collect()
    }

    /// Markdown: the run's totals, then recovery per fault kind.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} nodes, replication factor {}, {} partitions, {} alerts/s, seed {}: {:.0} s of faults, {} faults\n\n\
             | alerts acknowledged | unconfirmed | reads ok | failed reads | retried | slowest read | updates delivered | resumes | gaps | duplicates | lost alerts | replicas checked | divergent |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {} | {} ms | {} | {} | {} | {} | {} | {} | {} |\n\n\
             | fault | count | masters back: median | max | recovered: median | max |\n|---|---|---|---|---|---|\n",
            self.nodes,
            self.replication_factor,
            self.partitions,
            self.rate,
            self.seed,
            self.seconds,
            self.faults.len(),
            self.alerts_acknowledged,
            self.alerts_unconfirmed,
            self.reads_ok,
            self.reads_failed,
            self.reads_retried,
            self.slowest_read_ms,
            self.updates_delivered,
            self.resumes,
            self.subscriber_gaps,
            self.subscriber_duplicates,
            self.lost_alerts,
            self.replicas_checked,
            self.divergent_replicas,
        );
        let mut by_kind: BTreeMap<FaultKind, Vec<&FaultRecord>> = BTreeMap::new();
        for f in &self.faults {
            by_kind.entry(f.kind).or_default().push(f);
        }
        let ms = |v: Option<u64>| v.map_or("—".to_owned(), |v| format!("{:.1} s", v as f64 / 1000.0));
        for (kind, fs) in by_kind {
            // A fault after which every partition kept a serving master counts as 0.
            let (bm, bx) = median_max(fs.iter().map(|f| f.masters_back_ms.unwrap_or(0)).collect());
            let (rm, rx) = median_max(fs.iter().filter_map(|f| f.recovered_ms).collect());
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                kind.name(),
                fs.len(),
                ms(bm),
                ms(bx),
                ms(rm),
                ms(rx)
            ));
        }
        out
    }
}

/// Creates `topic` with `partitions` partitions, deleting nothing (no compaction, no retention).
fn uncompacted_topic(bootstrap: &str, topic: &str, partitions: u32) -> anyhow::Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", bootstrap).create()?;
    let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1))
        .set("cleanup.policy", "delete")
        .set("retention.ms", "-1");
    let results = futures::executor::block_on(admin.create_topics([&new], &AdminOptions::new()))?;
    for r in results {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn median_max(mut v: Vec<u64>) -> (Option<u64>, Option<u64>) {
    v.sort_unstable();
    (v.get(v.len().saturating_sub(1) / 2).copied(), v.last().copied())
}

/// Runs a soak; see the module docs. Errors are failures of the harness itself (the broker
/// would not start); the contract's failures are the report's `violations`.
pub async fn run(cfg: SoakConfig) -> anyhow::Result<SoakReport> {
    std::fs::create_dir_all(&cfg.root)?;
    let history = History::create(&cfg.root.join("history.jsonl"))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    history.record("start", json!({ "config": format!("{cfg:?}") }));
    let broker = tokio::task::block_in_place(|| DurableBroker::start(&cfg.root.join("broker.log")))?;
    eprintln!("chaos: broker on the durable engine at {}; history in {}", broker.bootstrap, history.path().display());

    let ids: Vec<String> = (1..=cfg.nodes).map(|i| format!("n{i}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let mut cluster = Cluster::new("chaos", &id_refs, cfg.partitions, &cfg.root);
    cluster.replication_factor = Some(cfg.replication_factor);
    cluster.bootstrap = Some(broker.bootstrap.clone());
    // The test broker's durable engine compacts every compacted topic when it starts (and every
    // 10 min) without honouring `min.compaction.lag.ms`, the window in which the product
    // promises a filter subscription resumes with no gap (`topics.changelog_min_compaction_lag_ms`,
    // 7 days by default; Kafka honours it). Each broker restart would drop the superseded
    // changes a resuming subscriber is owed, so the soak's changelog is made beforehand without
    // compaction — the contract checked is the one Kafka gives. (A node keeps an existing
    // topic's configuration.)
    tokio::task::block_in_place(|| uncompacted_topic(&broker.bootstrap, &cluster.topics.changelog, cfg.partitions))?;
    let started = cluster.start_all(cfg.recovery_timeout).await;
    let urls = cluster.urls();
    let nodes = ids.iter().cloned().zip(started).collect();
    let topic = cluster.topics.input.clone();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut target = Target::new(
        cluster,
        nodes,
        broker,
        ledger.clone(),
        history.clone(),
        cfg.recovery_timeout,
        cfg.replication_factor,
    );

    // Subscribers first, so that they see every version from the first.
    let mut workload = Workload::new(cfg.objects, 0, 1_000_000_000_000);
    let keys = workload.keys.clone();
    let stop_subs = Arc::new(AtomicBool::new(false));
    let mut subs = Vec::new();
    let mut object_seen = Vec::new();
    let mut filter_seen = Vec::new();
    for (i, _) in urls.iter().enumerate() {
        let watched: Vec<String> =
            keys.iter().skip(i).step_by((keys.len() / cfg.watched.max(1)).max(1)).take(cfg.watched).cloned().collect();
        let seen = Arc::new(Mutex::new(Seen::default()));
        subs.push(observers::object_subscriber(
            format!("objects@{}", ids[i]),
            urls.clone(),
            i,
            watched.clone(),
            seen.clone(),
            Task { history: history.clone(), stop: stop_subs.clone() },
        ));
        object_seen.push((watched, seen));
        let state = Arc::new(Mutex::new(FilterSeen::default()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        subs.push(observers::filter_subscriber(
            format!("filter@{}", ids[i]),
            urls.clone(),
            i,
            MATCH_ALL.to_owned(),
            state.clone(),
            tx,
            Task { history: history.clone(), stop: stop_subs.clone() },
        ));
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| anyhow::anyhow!("filter subscriber on {} not subscribed in 30 s", ids[i]))??;
        filter_seen.push(state);
    }

    // Warm-up: every object exists before reads and faults begin.
    let kafka = producer::kafka_producer(&target.broker.bootstrap);
    producer::warm_up(&kafka, &topic, &mut workload, &ledger).await;
    if let Err(e) = invariants::wait_materialized(&target, &topic, cfg.recovery_timeout).await {
        anyhow::bail!("the warm-up was not materialized: {e}");
    }
    history.record("warmed_up", json!({ "objects": keys.len() }));
    eprintln!("chaos: {} objects warmed up; faults for {:?}", keys.len(), cfg.duration);

    let stop_load = Arc::new(AtomicBool::new(false));
    let read_stats = Arc::new(Mutex::new(ReadStats::default()));
    let readers: Vec<_> = (0..cfg.readers)
        .map(|i| {
            observers::reader(
                urls.clone(),
                keys.clone(),
                cfg.seed + 100 + i as u64,
                read_stats.clone(),
                Task { history: history.clone(), stop: stop_load.clone() },
            )
        })
        .collect();
    let producing = tokio::spawn(producer::run(
        kafka,
        topic.clone(),
        workload,
        cfg.rate,
        cfg.seed + 1,
        ledger.clone(),
        Task { history: history.clone(), stop: stop_load.clone() },
    ));

    // Faults, one at a time; a snapshot of the cluster every second between them.
    let fault_phase = Instant::now();
    let mut faults = Vec::new();
    let mut bag: Vec<FaultKind> = Vec::new();
    while fault_phase.elapsed() < cfg.duration || faults.len() < cfg.min_faults {
        let gap = rng.random_range(cfg.fault_gap.0..=cfg.fault_gap.1);
        let until = Instant::now() + gap;
        while Instant::now() < until {
            target.snapshot().await;
            tokio::time::sleep(Duration::from_secs(1).min(until.saturating_duration_since(Instant::now()))).await;
        }
        if bag.is_empty() {
            bag = cfg.kinds.clone();
            bag.shuffle(&mut rng);
        }
        let kind = bag.pop().expect("a kind");
        let record = target.inject(kind, &mut rng).await;
        eprintln!(
            "chaos: {:>6.1} s {} of {}: masters back {:?} ms, recovered {:?} ms {}",
            record.at_s,
            kind.name(),
            record.target,
            record.masters_back_ms,
            record.recovered_ms,
            record.note
        );
        let stuck = record.recovered_ms.is_none();
        faults.push(record);
        if stuck {
            break;
        }
    }
    let seconds = fault_phase.elapsed().as_secs_f64();

    // The end: stop producing, let everything settle, check.
    stop_load.store(true, Ordering::Relaxed);
    producing.await?;
    for r in readers {
        r.await?;
    }
    target.snapshot().await;
    let views = match invariants::wait_materialized(&target, &topic, cfg.recovery_timeout).await {
        Ok(v) => v,
        Err(e) => {
            history.violation(e);
            target.views().await
        }
    };
    let ledger_now = std::mem::take(&mut *ledger.lock().unwrap());
    let check = invariants::check_replicas(&target, &views, &keys, &ledger_now, &history).await;
    if check.replicas < cfg.partitions as usize * cfg.replication_factor {
        history.violation(format!("only {} replicas to check", check.replicas));
    }

    // Every subscriber reaches every object's last version.
    let all_keys: BTreeSet<String> = keys.iter().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let objects_behind: usize = object_seen
            .iter()
            .map(|(w, s)| observers::behind(&s.lock().unwrap(), &check.versions, &w.iter().cloned().collect()).len())
            .sum();
        let filters_behind: usize = filter_seen
            .iter()
            .map(|s| observers::behind(&s.lock().unwrap().seen, &check.versions, &all_keys).len())
            .sum();
        if objects_behind + filters_behind == 0 {
            break;
        }
        if Instant::now() > deadline {
            for (i, (w, s)) in object_seen.iter().enumerate() {
                let b = observers::behind(&s.lock().unwrap(), &check.versions, &w.iter().cloned().collect());
                if !b.is_empty() {
                    let s = s.lock().unwrap();
                    let example: Vec<String> = b
                        .iter()
                        .take(5)
                        .map(|k| format!("{k}: {:?} of {:?}", s.last.get(k), check.versions.get(k)))
                        .collect();
                    history.violation(format!(
                        "object subscriber {} never reached the last version of {} objects: {example:?}",
                        ids[i],
                        b.len()
                    ));
                }
            }
            for (i, s) in filter_seen.iter().enumerate() {
                let s = s.lock().unwrap();
                let b = observers::behind(&s.seen, &check.versions, &all_keys);
                if !b.is_empty() {
                    let example: Vec<String> = b
                        .iter()
                        .take(5)
                        .map(|k| format!("{k}: {:?} of {:?}", s.seen.last.get(k), check.versions.get(k)))
                        .collect();
                    history.violation(format!(
                        "filter subscriber {} never reached the last version of {} objects: {example:?}",
                        ids[i],
                        b.len()
                    ));
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop_subs.store(true, Ordering::Relaxed);
    for s in subs {
        s.abort();
    }

    let reads = read_stats.lock().unwrap().clone();
    let mut seen_totals = Seen::default();
    for s in object_seen.iter().map(|(_, s)| s.lock().unwrap()).collect::<Vec<_>>().iter() {
        seen_totals.updates += s.updates;
        seen_totals.reconnects += s.reconnects;
        seen_totals.gaps += s.gaps;
        seen_totals.duplicates += s.duplicates;
    }
    for s in &filter_seen {
        let s = &s.lock().unwrap().seen;
        seen_totals.updates += s.updates;
        seen_totals.reconnects += s.reconnects;
        seen_totals.gaps += s.gaps;
        seen_totals.duplicates += s.duplicates;
    }
    let report = SoakReport {
        nodes: cfg.nodes,
        replication_factor: cfg.replication_factor,
        partitions: cfg.partitions,
        rate: cfg.rate,
        seed: cfg.seed,
        seconds,
        alerts_acknowledged: ledger_now.acked_count,
        alerts_unconfirmed: ledger_now.failed_count,
        faults,
        reads_ok: reads.ok,
        reads_failed: reads.failed,
        reads_retried: reads.retried,
        slowest_read_ms: reads.slowest.as_millis() as u64,
        updates_delivered: seen_totals.updates,
        resumes: seen_totals.reconnects,
        subscriber_gaps: seen_totals.gaps,
        subscriber_duplicates: seen_totals.duplicates,
        lost_alerts: check.lost.len(),
        replicas_checked: check.replicas,
        divergent_replicas: check.divergent.len(),
        violations: history.violations(),
        filter_gaps: history.filter_gaps(),
        history: history.path().to_owned(),
    };
    history.record("report", json!(report));
    history.flush();
    Ok(report)
}
