//! The disk budget (`storage.disk_budget_mib`): a node stops growing before its disk is full.
//!
//! A watcher measures the data directory (the state store, the embedded log, the coordinator's
//! Raft log: everything the node writes) every [`CHECK_EVERY`]. Above the budget the node
//! takes no more input: `POST /v1/alerts` answers 507 `disk_budget_exceeded` (nothing is
//! accepted that could not be materialized), the partition masters stop polling their input
//! (in Kafka mode the alerts wait in the broker, and materialization resumes from where it
//! stopped), `/readyz` lists it under `degraded`, and `lightkeeper_disk_budget_exceeded` is 1.
//! Reads, subscriptions and the changelog's own upkeep go on. Intake resumes by itself below
//! [`RESUME_BELOW`] of the budget (after retention, compaction or a larger budget), so one
//! record does not toggle it.
//!
//! Why a budget of our own rather than RocksDB's `SstFileManager` limit: RocksDB stops with a
//! write error once the limit is hit — in the middle of a batch whose changelog records are
//! already appended — while stopping intake before the batch leaves the node consistent.

use crate::error::ApiError;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the data directory is measured.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);
/// Intake resumes when usage falls below this fraction of the budget.
pub const RESUME_BELOW: f64 = 0.95;

pub struct DiskBudget {
    /// Bytes; 0 = no budget.
    budget: u64,
    used: AtomicU64,
    /// Shared with the partition masters (`WorkerDeps::intake_paused`).
    over: Arc<AtomicBool>,
    used_gauge: Gauge,
    over_gauge: Gauge,
}

impl DiskBudget {
    pub fn new(budget_mib: u64, registry: &mut Registry) -> Arc<DiskBudget> {
        let b = DiskBudget {
            budget: budget_mib << 20,
            used: AtomicU64::new(0),
            over: Arc::new(AtomicBool::new(false)),
            used_gauge: Gauge::default(),
            over_gauge: Gauge::default(),
        };
        registry.register("lightkeeper_disk_used_bytes", "Bytes the node's data directory holds", b.used_gauge.clone());
        registry.register(
            "lightkeeper_disk_budget_exceeded",
            "1 while the data directory is over storage.disk_budget_mib and the node takes no input",
            b.over_gauge.clone(),
        );
        Arc::new(b)
    }

    /// The flag the partition masters read before polling their input.
    pub fn intake_paused(&self) -> Arc<AtomicBool> {
        self.over.clone()
    }

    /// Whether input may be accepted now: a 507 naming the budget if not.
    pub fn admit(&self) -> Result<(), ApiError> {
        if !self.over.load(Ordering::Acquire) {
            return Ok(());
        }
        Err(ApiError::InsufficientStorage(self.describe()))
    }

    /// What `/readyz` lists while over the budget.
    pub fn degraded(&self) -> Option<String> {
        self.over.load(Ordering::Acquire).then(|| format!("{}; the node takes no input", self.describe()))
    }

    fn describe(&self) -> String {
        format!(
            "the data directory holds {} MiB, over storage.disk_budget_mib = {} MiB",
            self.used.load(Ordering::Relaxed) >> 20,
            self.budget >> 20
        )
    }

    /// Records a measurement and moves between taking input and not.
    fn observe(&self, used: u64) {
        self.used.store(used, Ordering::Relaxed);
        self.used_gauge.set(used as i64);
        if self.budget == 0 {
            return;
        }
        let was = self.over.load(Ordering::Acquire);
        let now = if was { used as f64 >= self.budget as f64 * RESUME_BELOW } else { used > self.budget };
        if now != was {
            self.over.store(now, Ordering::Release);
            self.over_gauge.set(i64::from(now));
            if now {
                tracing::warn!(
                    used_mib = used >> 20,
                    budget_mib = self.budget >> 20,
                    "disk budget reached: taking no input"
                );
            } else {
                tracing::info!(
                    used_mib = used >> 20,
                    budget_mib = self.budget >> 20,
                    "back under the disk budget: taking input"
                );
            }
        }
    }

    /// Measures `dir` every [`CHECK_EVERY`] (off the async runtime) until dropped.
    pub async fn watch(self: Arc<DiskBudget>, dir: PathBuf) {
        let mut every = tokio::time::interval(CHECK_EVERY);
        loop {
            every.tick().await;
            let d = dir.clone();
            match tokio::task::spawn_blocking(move || dir_size(&d)).await {
                Ok(used) => self.observe(used),
                Err(e) => tracing::warn!(error = %e, "measuring the data directory failed"),
            }
        }
    }
}

/// Bytes of the regular files under `dir` (symbolic links are not followed; files that vanish
/// while it is read — RocksDB deletes compacted files — are skipped).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => pending.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map_or(0, |m| m.len()),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intake_stops_above_the_budget_and_resumes_below_the_margin() {
        let b = DiskBudget::new(100, &mut Registry::default());
        let mib = 1 << 20;
        b.observe(99 * mib);
        assert!(b.admit().is_ok());
        b.observe(101 * mib);
        let e = b.admit().unwrap_err();
        assert_eq!((e.status().as_u16(), e.code()), (507, "disk_budget_exceeded"));
        assert!(e.to_string().contains("101 MiB") && e.to_string().contains("100 MiB"), "{e}");
        assert!(b.intake_paused().load(Ordering::Acquire));
        b.observe(96 * mib);
        assert!(b.admit().is_err(), "still within the margin");
        b.observe(94 * mib);
        assert!(b.admit().is_ok() && b.degraded().is_none());
        let off = DiskBudget::new(0, &mut Registry::default());
        off.observe(u64::MAX / 2);
        assert!(off.admit().is_ok(), "no budget, no limit");
    }

    #[test]
    fn the_data_directory_is_measured_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("x"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("a/b/y"), vec![0u8; 24]).unwrap();
        assert_eq!(dir_size(dir.path()), 1024);
    }
}
