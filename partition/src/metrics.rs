//! Metric definitions of the partition workers, in one place, with their help texts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct PartitionMetrics {
    pub alerts_applied: Family<Labels, Counter>,
    pub alerts_duplicate: Family<Labels, Counter>,
    pub dead_letters: Family<Labels, Counter>,
    pub changelog_records: Family<Labels, Counter>,
    pub restored_records: Family<Labels, Counter>,
    pub input_next: Family<Labels, Gauge>,
    pub epoch: Family<Labels, Gauge>,
    pub batch_seconds: Histogram,
    /// Time per batch in each phase: `decode` (and merge), `changelog` (append + acks),
    /// `store` (RocksDB batch).
    pub phase_seconds: Family<Labels, Histogram>,
    pub worker_errors: Family<Labels, Counter>,
}

impl PartitionMetrics {
    pub fn register(registry: &mut Registry) -> PartitionMetrics {
        let m = PartitionMetrics {
            alerts_applied: Family::default(),
            alerts_duplicate: Family::default(),
            dead_letters: Family::default(),
            changelog_records: Family::default(),
            restored_records: Family::default(),
            input_next: Family::default(),
            epoch: Family::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            phase_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_1, 2.0, 16))),
            worker_errors: Family::default(),
        };
        registry.register("lightkeeper_alerts_applied", "Alerts merged into object state", m.alerts_applied.clone());
        registry.register(
            "lightkeeper_alerts_duplicate",
            "Alerts skipped because they were already applied",
            m.alerts_duplicate.clone(),
        );
        registry.register(
            "lightkeeper_dead_letters",
            "Input records sent to the dead-letter topic, by reason",
            m.dead_letters.clone(),
        );
        registry.register(
            "lightkeeper_changelog_records",
            "Records appended to the changelog",
            m.changelog_records.clone(),
        );
        registry.register(
            "lightkeeper_restored_records",
            "Changelog records applied while restoring",
            m.restored_records.clone(),
        );
        registry.register(
            "lightkeeper_input_next_offset",
            "Next input offset each partition will consume",
            m.input_next.clone(),
        );
        registry.register("lightkeeper_epoch", "Current epoch of each partition", m.epoch.clone());
        registry.register(
            "lightkeeper_batch_seconds",
            "Time to process one input batch end to end",
            m.batch_seconds.clone(),
        );
        registry.register(
            "lightkeeper_phase_seconds",
            "Time per batch in each phase (decode, changelog, store)",
            m.phase_seconds.clone(),
        );
        registry.register("lightkeeper_worker_errors", "Batches that failed and were retried", m.worker_errors.clone());
        m
    }
}

pub fn phase_label(phase: &str) -> Labels {
    vec![("phase".into(), phase.into())]
}

pub fn partition_label(p: u32) -> Labels {
    vec![("partition".into(), p.to_string())]
}
