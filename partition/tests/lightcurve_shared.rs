//! Materializing a real object from its real alerts: ZTF21abiuvdk, followed over 14 nights in
//! 22 alerts, must end with 22 unique detections and 15 unique upper limits (shared/data
//! README), whatever the order the alerts arrive in and however often they repeat.

use lightkeeper_partition::merge::{merge, new_state};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::model::{Alert, PointKind};
use lightkeeper_storage::object::AlertSource;
use lightkeeper_storage::registry::EmbeddedRegistry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn shared() -> PathBuf {
    std::env::var_os("LIGHTKEEPER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn alerts() -> Vec<Alert> {
    let d = Decoder::new(Arc::new(EmbeddedRegistry::empty()));
    let mut files: Vec<_> = std::fs::read_dir(shared().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|f| d.decode(&std::fs::read(f).unwrap()).unwrap()).collect()
}

fn materialize(alerts: &[Alert]) -> lightkeeper_storage::object::ObjectState {
    let mut s = new_state(&alerts[0]);
    for a in alerts {
        merge(&mut s, a, AlertSource { topic: "alerts".into(), partition: 0, offset: a.alert_id as u64 }, 0);
    }
    s
}

#[test]
fn ztf21abiuvdk_has_22_detections_and_15_upper_limits() {
    let alerts = alerts();
    assert_eq!(alerts.len(), 22);
    let s = materialize(&alerts);
    let summary = s.summary();
    assert_eq!(summary.key, "ztf:ZTF21abiuvdk");
    assert_eq!(summary.n_detections, 22);
    assert_eq!(summary.n_upper_limits, 15);
    assert_eq!(summary.n_alerts, 22);
    assert_eq!(s.version, 22);
    assert!(s.points.windows(2).all(|w| w[0].mjd <= w[1].mjd), "light curve is time-sorted");
    // Each of the 22 alerts' own candid is one of the detections.
    for a in &alerts {
        assert!(s.points.iter().any(|p| p.kind == PointKind::Detection && p.source_id == Some(a.alert_id)));
    }
    let bands: Vec<_> = summary.bands.keys().map(|b| b.as_str()).collect();
    assert_eq!(bands, ["g", "r"]);
}

#[test]
fn order_and_repetition_do_not_change_the_result() {
    let alerts = alerts();
    let forward = materialize(&alerts);
    let mut reversed = alerts.clone();
    reversed.reverse();
    assert_eq!(materialize(&reversed), forward);
    let mut doubled = alerts.clone();
    doubled.extend(alerts.iter().rev().cloned());
    assert_eq!(materialize(&doubled), forward);
}
