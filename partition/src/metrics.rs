//! Metric definitions of the partition workers, in one place, with their help texts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

pub type Labels = Vec<(String, String)>;

#[derive(Clone)]
pub struct PartitionMetrics {
    pub alerts_applied: Family<Labels, Counter>,
    pub alerts_duplicate: Family<Labels, Counter>,
    pub dead_letters: Family<Labels, Counter>,
    pub changelog_records: Family<Labels, Counter>,
    /// Changelog records applied by restore, standbys and promotion catch-up.
    pub changelog_applied: Family<Labels, Counter>,
    /// Changelog records ignored because an older epoch wrote them after a newer one started.
    pub changelog_fenced: Family<Labels, Counter>,
    /// Next changelog offset each replica will apply.
    pub changelog_applied_offset: Family<Labels, Gauge>,
    /// Changelog records between the applied offset and the end last seen.
    pub changelog_lag: Family<Labels, Gauge>,
    /// 1 while a replica that is not master has not gained on its changelog for a whole
    /// window (`worker::TREND_WINDOW`) with more than `worker::BEHIND_FLOOR` records to go.
    pub falling_behind: Family<Labels, Gauge>,
    /// 1 while this node is the partition's master, 0 as a standby.
    pub role_master: Family<Labels, Gauge>,
    /// Wall time of the start-up restore, per partition.
    pub restore_seconds: Family<Labels, Gauge<f64, AtomicU64>>,
    pub promotions: Family<Labels, Counter>,
    pub stepdowns: Family<Labels, Counter>,
    pub input_next: Family<Labels, Gauge>,
    pub epoch: Family<Labels, Gauge>,
    pub batch_seconds: Histogram,
    /// Time per batch in each phase: `decode` (and merge), `changelog` (append + acks),
    /// `store` (RocksDB batch).
    pub phase_seconds: Family<Labels, Histogram>,
    pub worker_errors: Family<Labels, Counter>,
    /// Replica threads that panicked and were restarted from their stored progress.
    pub worker_panics: Family<Labels, Counter>,
}

impl PartitionMetrics {
    pub fn register(registry: &mut Registry) -> PartitionMetrics {
        let m = PartitionMetrics {
            alerts_applied: Family::default(),
            alerts_duplicate: Family::default(),
            dead_letters: Family::default(),
            changelog_records: Family::default(),
            changelog_applied: Family::default(),
            changelog_fenced: Family::default(),
            changelog_applied_offset: Family::default(),
            changelog_lag: Family::default(),
            falling_behind: Family::default(),
            role_master: Family::default(),
            restore_seconds: Family::default(),
            promotions: Family::default(),
            stepdowns: Family::default(),
            input_next: Family::default(),
            epoch: Family::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            phase_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_1, 2.0, 16))),
            worker_errors: Family::default(),
            worker_panics: Family::default(),
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
            "lightkeeper_changelog_applied",
            "Changelog records applied by restore, standbys and promotion",
            m.changelog_applied.clone(),
        );
        registry.register(
            "lightkeeper_changelog_fenced",
            "Changelog records ignored because a newer epoch had started (a deposed master's writes)",
            m.changelog_fenced.clone(),
        );
        registry.register(
            "lightkeeper_changelog_applied_offset",
            "Next changelog offset each local replica will apply",
            m.changelog_applied_offset.clone(),
        );
        registry.register(
            "lightkeeper_changelog_lag",
            "Changelog records written but not yet applied by each local replica",
            m.changelog_lag.clone(),
        );
        registry.register(
            "lightkeeper_replica_falling_behind",
            "1 while a local replica that is not master has not gained on its changelog for a whole window (30 s) with more than 1,000 records to go: a restore or standby that cannot keep up on this node",
            m.falling_behind.clone(),
        );
        registry.register(
            "lightkeeper_partition_master",
            "1 if this node is the partition's master",
            m.role_master.clone(),
        );
        registry.register(
            "lightkeeper_restore_seconds",
            "Wall time of each partition's start-up restore from the changelog",
            m.restore_seconds.clone(),
        );
        registry.register("lightkeeper_promotions", "Times a local replica became master", m.promotions.clone());
        registry.register(
            "lightkeeper_stepdowns",
            "Times a local master stepped down (drained, or deposed by a newer epoch)",
            m.stepdowns.clone(),
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
        registry.register(
            "lightkeeper_worker_panics",
            "Partition replica threads that panicked and were restarted (with back-off) from their stored progress",
            m.worker_panics.clone(),
        );
        m
    }
}

pub fn phase_label(phase: &str) -> Labels {
    vec![("phase".into(), phase.into())]
}

pub fn partition_label(p: u32) -> Labels {
    vec![("partition".into(), p.to_string())]
}
