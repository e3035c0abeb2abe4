//! The chaos soak, short (issue 14, part 1): three nodes with a replication factor of 2 on the
//! broker's durable engine, 500 alerts/s, subscribers and readers on every node, and a fault
//! every 5–10 s — every kind at least once (SIGKILL, SIGSTOP, the Raft leader killed, drain and
//! restart, decommission and re-add, a broker restart) — for 150 s. The contract's invariants
//! (`lightkeeper_tests::chaos::invariants` and the observers) must hold: nothing lost, every
//! replica equal to the reference, no failed read, every object subscriber given every version
//! once and in order, every filter subscriber given every object's last version and nothing
//! twice.
//!
//! Filter-subscription gaps are asserted like the rest. Until this session's runs they were
//! only printed: one run in four skipped versions after a relay reconnected to a node whose
//! replica had just been created (RELIABILITY.md, "Faults the soak found"); that was fixed,
//! and the runs since (CI-length runs and a 20-minute one) have shown none.
//!
//! `LIGHTKEEPER_CHAOS_SEED` replays another schedule; `bench chaos` runs the long version. A
//! failing run keeps its directory (the history, every node's log) and prints where it is.

use lightkeeper_tests::chaos::faults::FaultKind;
use lightkeeper_tests::chaos::{run, SoakConfig};
use std::collections::BTreeSet;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chaos_soak_keeps_the_contract_through_every_kind_of_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = SoakConfig::new(3, Duration::from_secs(150), tmp.path().join("soak"));
    cfg.fault_gap = (Duration::from_secs(5), Duration::from_secs(10));
    cfg.objects = 1000;
    cfg.watched = 48;
    cfg.seed = std::env::var("LIGHTKEEPER_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(14);
    let report = run(cfg).await.expect("the soak ran");
    eprintln!("{}", report.table());
    let kinds: BTreeSet<FaultKind> = report.faults.iter().map(|f| f.kind).collect();
    if !report.passed() || kinds.len() < FaultKind::ALL.len() {
        let kept = tmp.keep();
        let tail = std::fs::read_to_string(&report.history).unwrap_or_default();
        let lines: Vec<&str> = tail.lines().collect();
        panic!(
            "the soak failed (kept in {}): {:#?}\nfault kinds: {kinds:?}\nlast history lines:\n{}",
            kept.display(),
            report.violations,
            lines[lines.len().saturating_sub(40)..].join("\n")
        );
    }
    assert_eq!(report.lost_alerts, 0);
    assert_eq!(report.divergent_replicas, 0);
    assert_eq!(report.reads_failed, 0);
    assert!(report.reads_ok > 100, "the readers kept reading ({})", report.reads_ok);
    assert!(report.updates_delivered > 1000, "subscribers were delivered updates ({})", report.updates_delivered);
}
