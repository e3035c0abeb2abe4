//! The independent reference: what a node must hold for a set of ZTF packets, computed by
//! `tests/py/alerts.py` with fastavro (not the node's decoder), and the check of a node's
//! answers against it.

use lightkeeper_clients::Client;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Expected detections, upper-limit count and alert ids per object key.
pub fn compute(files: &[PathBuf]) -> BTreeMap<String, Value> {
    let args: Vec<String> =
        std::iter::once("reference".to_owned()).chain(files.iter().map(|f| f.display().to_string())).collect();
    serde_json::from_str(&crate::python("alerts.py", &args).expect("alerts.py reference")).expect("reference JSON")
}

/// Checks one object's summary and light curve (as JSON values) against its reference entry.
pub fn check_object(key: &str, want: &Value, summary: &Value, lightcurve: &Value) -> Result<(), String> {
    let want_alerts = want["alerts"].as_array().map_or(0, Vec::len) as u64;
    if summary["n_alerts"].as_u64() != Some(want_alerts) {
        return Err(format!("{key}: {} alerts, expected {want_alerts}", summary["n_alerts"]));
    }
    let points = lightcurve["points"].as_array().ok_or_else(|| format!("{key}: no points"))?;
    let detections: BTreeMap<String, f64> = points
        .iter()
        .filter(|p| p["kind"] == "detection")
        .filter_map(|p| Some((p["source_id"].as_str()?.to_owned(), p["mag"].as_f64()?)))
        .collect();
    let want_det = want["detections"].as_object().ok_or_else(|| format!("{key}: reference has no detections"))?;
    if detections.keys().collect::<BTreeSet<_>>() != want_det.keys().collect::<BTreeSet<_>>() {
        return Err(format!("{key}: detections {:?}, expected {:?}", detections.keys(), want_det.keys()));
    }
    for (candid, mag) in want_det {
        if (detections[candid] - mag.as_f64().unwrap_or(f64::NAN)).abs() > 1e-5 {
            return Err(format!("{key}: detection {candid} has mag {}, expected {mag}", detections[candid]));
        }
    }
    let limits = points.iter().filter(|p| p["kind"] == "upper_limit").count() as u64;
    if Some(limits) != want["n_upper_limits"].as_u64() {
        return Err(format!("{key}: {limits} upper limits, expected {}", want["n_upper_limits"]));
    }
    if summary["n_detections"].as_u64() != Some(want_det.len() as u64) {
        return Err(format!("{key}: summary says {} detections", summary["n_detections"]));
    }
    Ok(())
}

/// Checks every object of `reference` through `client`; `query` (e.g. `?max_lag=0`) is added to
/// each read. Returns the first difference.
pub async fn check(client: &Client, reference: &BTreeMap<String, Value>, query: &str) -> Result<(), String> {
    for (key, want) in reference {
        let summary = client.get_json(&format!("/v1/objects/{key}{query}")).await.map_err(|e| format!("{key}: {e}"))?;
        let lc = client
            .get_json(&format!("/v1/objects/{key}/lightcurve{query}"))
            .await
            .map_err(|e| format!("{key}: {e}"))?;
        check_object(key, want, &summary, &lc)?;
    }
    Ok(())
}
