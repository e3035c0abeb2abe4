//! The command line on real data: `decode` reads every shared packet; `ingest --url` into an
//! embedded node yields light curves equal to an independent computation (fastavro) from the
//! same packets; the read commands print what the API answers, and `watch` follows live.

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

/// Runs `lightkeeper ARGS` to completion; its stdout (the command must succeed).
async fn run(args: &[&str]) -> String {
    let out = tokio::process::Command::new(binary()).args(args).output().await.unwrap();
    assert!(out.status.success(), "lightkeeper {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The next line a `watch` printed, as JSON (within a minute).
async fn next_json(lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await.unwrap().unwrap().unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// `get`, `lightcurve`, `cone`, `query` and `watch` print what the REST API and the WebSocket
/// answer; `watch` follows a filter live and resumes from a cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_commands_print_what_the_api_answers_and_watch_follows_live() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    let url = node.url.as_str();
    let mut files = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    let last = files.pop().unwrap();
    for f in &files {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    let key = "ztf:ZTF21abiuvdk";
    let n = files.len();
    let summary = eventually(Duration::from_secs(60), "the object", || async {
        client.object(key).await.ok().filter(|o| o["n_alerts"] == n)
    })
    .await
    .unwrap();

    // A live watch on a filter, started before the last alert arrives.
    let mut watch = tokio::process::Command::new(binary())
        .args(["watch", "--url", url, "--filter", "object_id = 'ZTF21abiuvdk'"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(watch.stdout.take().unwrap()));
    let subscribed = next_json(&mut lines).await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");

    // get: the summary.
    let got: Value = serde_json::from_str(&run(&["get", key, "--url", url]).await).unwrap();
    assert_eq!(got, summary);
    // lightcurve: as the node renders it, in each format.
    let csv = run(&["lightcurve", key, "--url", url, "--format", "csv", "--band", "g", "--times", "jd,iso"]).await;
    let api = client.lightcurve_text(key, "format=csv&band=g&times=jd%2Ciso").await.unwrap();
    assert_eq!(csv.trim_end(), api.trim_end());
    assert!(csv.lines().next().unwrap().ends_with(",jd,iso_utc"), "{csv}");
    let votable = run(&["lightcurve", key, "--url", url, "--format", "votable"]).await;
    assert!(votable.contains("<VOTABLE"), "{votable}");
    // cone: one line per object, nearest first; the object itself at its own position.
    let (ra, dec) = (summary["ra"].as_f64().unwrap(), summary["dec"].as_f64().unwrap());
    let cone = json_lines(&run(&["cone", &ra.to_string(), &dec.to_string(), "5", "--url", url]).await);
    assert_eq!(cone.len(), 1, "{cone:?}");
    assert_eq!(cone[0]["key"], key);
    assert!(cone[0]["distance_arcsec"].as_f64().unwrap() < 1e-6);
    // query: one line per object, every page with --all, each once.
    for f in avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/alerts-for-testing_20210901")) {
        client.ingest(std::fs::read(f).unwrap()).await.unwrap();
    }
    let expected = eventually(Duration::from_secs(60), "the batch", || async {
        let page = client.query(None, None, Some(1000), None).await.ok()?;
        (page.objects.len() == 37).then_some(page.objects)
    })
    .await
    .unwrap();
    let all = json_lines(&run(&["query", "--url", url, "--limit", "5", "--all"]).await);
    let keys: Vec<&str> = all.iter().map(|o| o["key"].as_str().unwrap()).collect();
    let want: Vec<&str> = expected.iter().map(|o| o.key.as_str()).collect();
    assert_eq!(keys, want, "every object once, in key order, across 8 pages");
    let one_page = json_lines(&run(&["query", "--url", url, "--limit", "5", "--where", "n_detections >= 1"]).await);
    assert_eq!(one_page.len(), 5);

    // watch: the last alert's change arrives as an update at the new version.
    client.ingest(std::fs::read(&last).unwrap()).await.unwrap();
    let update = next_json(&mut lines).await;
    assert_eq!((update["type"].as_str(), update["key"].as_str()), (Some("update"), Some(key)), "{update}");
    assert_eq!(update["version"].as_u64(), Some(n as u64 + 1));
    drop(lines);
    watch.kill().await.unwrap();

    // watch --from the subscribed cursor: replays that same change, and nothing before it.
    let cursor = subscribed["cursor"].as_str().unwrap();
    let mut again = tokio::process::Command::new(binary())
        .args(["watch", "--url", url, "--filter", "object_id = 'ZTF21abiuvdk'", "--from", cursor])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(again.stdout.take().unwrap()));
    assert_eq!(next_json(&mut lines).await["type"], "subscribed");
    let replayed = next_json(&mut lines).await;
    assert_eq!((replayed["type"].as_str(), replayed["version"].as_u64()), (Some("update"), Some(n as u64 + 1)));
    again.kill().await.unwrap();
}
