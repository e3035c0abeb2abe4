//! `bench chaos`: the chaos soak (`lightkeeper_tests::chaos`) for as long as wanted — the
//! hour-long run by hand that the CI test (`tests/tests/chaos.rs`, 150 s) is the short version
//! of. Prints the report as Markdown for RELIABILITY.md and writes it as JSON beside the
//! history; exits non-zero if any invariant failed. The run directory (history, every node's
//! log) is kept.

use super::common::machine;
use lightkeeper_tests::chaos::faults::FaultKind;
use lightkeeper_tests::chaos::{run as soak, SoakConfig};
use std::path::PathBuf;
use std::time::Duration;

pub struct Params {
    pub nodes: usize,
    pub replication_factor: Option<usize>,
    pub partitions: u32,
    pub rate: u32,
    pub minutes: f64,
    pub gap_min_s: u64,
    pub gap_max_s: u64,
    pub objects: usize,
    pub seed: u64,
    pub kinds: Option<String>,
    pub dir: Option<PathBuf>,
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let root = p.dir.unwrap_or_else(|| std::env::temp_dir().join(lightkeeper_tests::unique("lightkeeper-chaos")));
    let mut cfg = SoakConfig::new(p.nodes, Duration::from_secs_f64(p.minutes * 60.0), root.clone());
    if let Some(rf) = p.replication_factor {
        cfg.replication_factor = rf;
    }
    cfg.partitions = p.partitions;
    cfg.rate = p.rate;
    cfg.fault_gap = (Duration::from_secs(p.gap_min_s), Duration::from_secs(p.gap_max_s));
    cfg.objects = p.objects;
    cfg.seed = p.seed;
    if let Some(kinds) = p.kinds {
        cfg.kinds = kinds
            .split(',')
            .map(|k| FaultKind::parse(k.trim()).ok_or_else(|| anyhow::anyhow!("unknown fault kind {k:?}")))
            .collect::<anyhow::Result<_>>()?;
        cfg.min_faults = cfg.kinds.len();
    }
    eprintln!("bench chaos: {cfg:?}");
    let report = soak(cfg).await?;
    std::fs::write(root.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    println!("## bench chaos ({})\n\n{}", machine(), report.table());
    if !report.passed() {
        println!("\nviolations:\n");
        for v in &report.violations {
            println!("- {v}");
        }
    }
    println!("\nhistory and logs: {}", root.display());
    anyhow::ensure!(report.passed(), "{} invariant violations", report.violations.len());
    Ok(())
}
