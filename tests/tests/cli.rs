//! The command line on real data: `decode` reads every shared packet; `ingest --url` into an
//! embedded node yields light curves equal to an independent computation (fastavro) from the
//! same packets.

use lightkeeper_clients::Client;
use lightkeeper_tests::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

#[test]
fn decode_prints_one_json_line_per_shared_packet_and_fails_clearly_on_bad_files() {
    let all = avro_files(&shared_data());
    assert!(all.len() >= 225);
    let out =
        Command::new(binary()).args(["decode", "--schemas"]).arg(lsst_schemas()).arg(shared_data()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), all.len(), "one line per packet");
    assert!(lines.iter().all(|a| a["key"].as_str().is_some_and(|k| k.starts_with("ztf:") || k.starts_with("lsst:"))));
    assert!(lines.iter().all(|a| a["points"].as_array().is_some_and(|p| !p.is_empty())));

    // A bad file among good ones: the good ones are printed, the bad one named on stderr, exit ≠ 0.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.avro");
    std::fs::write(&bad, b"Obj\x01garbage").unwrap();
    let good = &all[0];
    let out = Command::new(binary()).arg("decode").arg(good).arg(&bad).arg(good).output().unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.avro") && err.contains("corrupt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ingest_every_ztf_packet_over_http_equals_an_independent_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let ztf = shared_data().join("ztf/alerts");
    let files = avro_files(&ztf);
    let out =
        tokio::process::Command::new(binary()).args(["ingest", "--url", &node.url]).arg(&ztf).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let args: Vec<String> =
        std::iter::once("reference".to_owned()).chain(files.iter().map(|f| f.display().to_string())).collect();
    let reference: BTreeMap<String, Value> = serde_json::from_str(&python("alerts.py", &args).unwrap()).unwrap();
    let client = Client::new(&node.url).unwrap();
    for (key, want) in &reference {
        let n_alerts = want["alerts"].as_array().unwrap().len() as u64;
        let obj = eventually(Duration::from_secs(60), key, || async {
            client.object(key).await.ok().filter(|o| o["n_alerts"].as_u64() == Some(n_alerts))
        })
        .await
        .unwrap();
        let lc = client.lightcurve(key, "").await.unwrap();
        let points = lc["points"].as_array().unwrap();
        let detections: BTreeMap<String, f64> = points
            .iter()
            .filter(|p| p["kind"] == "detection")
            .map(|p| (p["source_id"].as_str().unwrap().to_owned(), p["mag"].as_f64().unwrap()))
            .collect();
        let want_det = want["detections"].as_object().unwrap();
        assert_eq!(
            detections.keys().collect::<BTreeSet<_>>(),
            want_det.keys().collect::<BTreeSet<_>>(),
            "{key}: detection candids"
        );
        for (candid, mag) in want_det {
            assert!((detections[candid] - mag.as_f64().unwrap()).abs() < 1e-5, "{key} {candid}");
        }
        let limits = points.iter().filter(|p| p["kind"] == "upper_limit").count() as u64;
        assert_eq!(limits, want["n_upper_limits"].as_u64().unwrap(), "{key}: upper limits");
        assert_eq!(obj["n_detections"].as_u64().unwrap() as usize, want_det.len());
        assert!(points.windows(2).all(|w| w[0]["mjd"].as_f64() <= w[1]["mjd"].as_f64()), "{key}: time-sorted");
    }
    assert_eq!(reference.len(), 172, "the 199 ZTF packets hold 172 distinct objects");
}
