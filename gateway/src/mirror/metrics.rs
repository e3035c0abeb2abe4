//! The mirror's metrics (Prometheus, at `listen`), the upstream consumer's context that feeds
//! the lag gauges from librdkafka's statistics, and the progress line on stderr.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TopicLabel {
    pub(super) topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ReasonLabel {
    pub(super) reason: String,
}

/// The mirror's metrics.
#[derive(Clone, Default)]
pub(super) struct Metrics {
    pub(super) consumed: Family<TopicLabel, Counter>,
    pub(super) produced: Counter,
    pub(super) dead_letters: Family<ReasonLabel, Counter>,
    pub(super) lag: Family<TopicLabel, Gauge>,
    pub(super) registered: Counter,
    pub(super) commits: Counter,
    pub(super) commit_failures: Counter,
    /// The sum of `lag` over topics as last reported (-1 before the first report), for the
    /// progress line.
    pub(super) lag_total: Arc<AtomicI64>,
}

impl Metrics {
    pub(super) fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics { lag_total: Arc::new(AtomicI64::new(-1)), ..Metrics::default() };
        registry.register("lightkeeper_mirror_consumed", "Upstream messages consumed, by topic", m.consumed.clone());
        registry.register("lightkeeper_mirror_produced", "Alerts written to the local topic", m.produced.clone());
        registry.register(
            "lightkeeper_mirror_dead_letters",
            "Upstream messages dead-lettered, by reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "lightkeeper_mirror_lag",
            "Upstream messages not yet consumed, by topic (librdkafka's consumer lag)",
            m.lag.clone(),
        );
        registry.register(
            "lightkeeper_mirror_schemas_registered",
            "Schemas registered with the local registry",
            m.registered.clone(),
        );
        registry.register("lightkeeper_mirror_commits", "Upstream offset commits", m.commits.clone());
        registry.register(
            "lightkeeper_mirror_commit_failures",
            "Upstream offset commits that failed (a rebalance took the partitions; the next owner replays)",
            m.commit_failures.clone(),
        );
        m
    }

    fn total_lag(&self) -> i64 {
        self.lag_total.load(Ordering::Relaxed)
    }
}

/// The upstream consumer's context: lag from librdkafka's statistics, rebalances in the log.
pub(super) struct UpstreamContext {
    pub(super) lag: Family<TopicLabel, Gauge>,
    pub(super) lag_total: Arc<AtomicI64>,
}

impl ClientContext for UpstreamContext {
    fn stats(&self, stats: Statistics) {
        let mut sum = 0;
        for (name, topic) in &stats.topics {
            let lag: i64 = topic.partitions.values().filter(|p| p.partition >= 0).map(|p| p.consumer_lag.max(0)).sum();
            self.lag.get_or_create(&TopicLabel { topic: name.clone() }).set(lag);
            sum += lag;
        }
        self.lag_total.store(sum, Ordering::Relaxed);
    }
}

impl ConsumerContext for UpstreamContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => info!(partitions = tpl.count(), "upstream partitions assigned"),
            Rebalance::Revoke(tpl) => info!(partitions = tpl.count(), "upstream partitions revoked"),
            Rebalance::Error(e) => warn!(error = %e, "upstream rebalance failed"),
        }
    }
}

/// The progress line on stderr, every interval.
pub(super) struct Progress {
    every: Duration,
    last: Instant,
    last_produced: u64,
}

impl Progress {
    pub(super) fn new(every: Duration) -> Progress {
        Progress { every, last: Instant::now(), last_produced: 0 }
    }

    pub(super) fn maybe_report(&mut self, m: &Metrics) {
        let elapsed = self.last.elapsed();
        if elapsed < self.every {
            return;
        }
        let produced = m.produced.get();
        let rate = (produced - self.last_produced) as f64 / elapsed.as_secs_f64();
        let lag = m.total_lag();
        info!(
            produced,
            rate = format!("{rate:.0}/s"),
            lag = if lag < 0 { "unknown".to_owned() } else { lag.to_string() },
            "mirror progress"
        );
        self.last = Instant::now();
        self.last_produced = produced;
    }
}
