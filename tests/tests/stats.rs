//! Stream statistics (issue 12) on a two-node Kafka cluster: every applied alert is counted once
//! (a duplicate is not), new objects and dead letters are counted, the detections counted equal
//! the detection points the objects hold, the partitions are merged, the standby's statistics —
//! replicated through the changelog — equal the master's, and after the master is killed the
//! promoted standby goes on counting from there.

use lightkeeper_clients::api::cluster::Role;
use lightkeeper_tests::cluster::{partitions, promote, Cluster};
use lightkeeper_tests::load::{finish, producer};
use lightkeeper_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);

fn raw_producer(topic: &str, raw: &[PathBuf]) {
    let mut args = vec![broker(), topic.to_owned(), lsst_schemas().display().to_string(), "--raw".into()];
    args.extend(raw.iter().map(|f| f.display().to_string()));
    python("produce.py", &args).expect("python producer");
}

async fn get_json(url: &str) -> Value {
    let r = reqwest::get(url).await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(r.status(), 200, "GET {url}");
    r.json().await.unwrap()
}

/// The statistics since `since_ms` (minute buckets), as (total, rows).
async fn stats(url: &str, since_ms: i64, extra: &str) -> (Value, Vec<Value>) {
    let v = get_json(&format!("{url}/v1/stats?step=minute&since={since_ms}{extra}")).await;
    (v["total"].clone(), v["rows"].as_array().unwrap().clone())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Sum of `field` over rows of `survey`.
fn sum(rows: &[Value], survey: &str, field: &str) -> u64 {
    rows.iter().filter(|r| r["survey"] == survey).map(|r| r[field].as_u64().unwrap()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn statistics_count_each_alert_once_replicate_and_survive_a_failover() {
    let since = now_ms() - 120_000;
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("stats", &["a", "b"], 2, tmp.path()).fixed_masters();
    let mut a = c.start("a");
    let b = c.start("b");
    a.wait_ready(WAIT).await.unwrap();
    b.wait_ready(WAIT).await.unwrap();

    let lightcurve = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    assert_eq!(lightcurve.len(), 22);
    let mut files = lightcurve.clone();
    files.push(shared_data().join("ztf/alerts/boom/2695378462115010012.avro"));
    files.extend(avro_files(&shared_data().join("lsst/alerts/boom")));
    // A duplicate: already applied, not counted again.
    files.push(lightcurve[3].clone());
    finish(producer(&c.topics.input, &files, None)).await;
    let corrupt = tmp.path().join("corrupt.avro");
    let bytes = std::fs::read(&lightcurve[0]).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    raw_producer(&c.topics.input, &[corrupt]);

    let keys = ["ztf:ZTF21abiuvdk", "ztf:ZTF18abudxnw", "lsst:25401295582003262", "lsst:7912941781254298"];
    let (total, rows) = eventually(WAIT, "every alert and the dead letter counted", || async {
        let (total, rows) = stats(&a.url, since, "").await;
        (total["alerts"] == 25 && total["dead_letters"] == 1).then_some((total, rows))
    })
    .await
    .unwrap();
    assert_eq!(total["new_objects"], 4, "{total}");
    assert_eq!((sum(&rows, "ztf", "alerts"), sum(&rows, "lsst", "alerts")), (23, 2));
    // Every detection point of the final objects was brought by exactly one counted alert.
    let mut detections = 0;
    for k in keys {
        detections += get_json(&format!("{}/v1/objects/{k}", a.url)).await["n_detections"].as_u64().unwrap();
    }
    assert_eq!(total["detections"], detections, "detections counted = detection points held");
    let dead: Vec<&Value> = rows.iter().filter(|r| r["dead_letters"].as_u64() > Some(0)).collect();
    assert!(dead.iter().all(|r| r["survey"].is_null() && r["band"].is_null()), "{dead:?}");
    // ZTF alerts are in g and r; every LSST row names a band.
    assert!(rows.iter().filter(|r| r["survey"] == "ztf").all(|r| r["band"] == "g" || r["band"] == "r"), "{rows:?}");
    assert!(rows.iter().filter(|r| r["survey"] == "lsst").all(|r| r["band"].is_string()), "{rows:?}");
    // Wider steps hold the same totals.
    for step in ["hour", "night"] {
        let v = get_json(&format!("{}/v1/stats?step={step}&since={since}", a.url)).await;
        assert_eq!(v["total"], total, "step={step}");
    }

    // The standby's statistics came through the changelog: identical.
    let replicated = eventually(WAIT, "b's replicas caught up", || async {
        let (t, r) = stats(&b.url, since, "&max_lag=0").await;
        (t == total).then_some(r)
    })
    .await
    .unwrap();
    assert_eq!(replicated, rows, "the standby's rows equal the master's");

    // Failover: b takes over and keeps counting from the replicated totals.
    a.kill();
    for p in 0..2 {
        promote(&b.url, p).await.unwrap();
    }
    eventually(WAIT, "b masters both partitions", || async {
        let ps = partitions(&b.url).await.ok()?;
        ps.iter().all(|p| p.role == Role::Master && p.ready).then_some(())
    })
    .await
    .unwrap();
    let more = shared_data().join("ztf/alerts/ztf-avro-alert/472263571115115000.avro");
    finish(producer(&c.topics.input, &[more], None)).await;
    let after = eventually(WAIT, "the new alert counted on b", || async {
        let (t, _) = stats(&b.url, since, "").await;
        (t["alerts"] == 26).then_some(t)
    })
    .await
    .unwrap();
    assert_eq!((after["new_objects"].as_u64(), after["dead_letters"].as_u64()), (Some(5), Some(1)), "{after}");
}
