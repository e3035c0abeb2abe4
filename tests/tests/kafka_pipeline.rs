//! End to end through the real broker: a real external producer (Python confluent-kafka) writes
//! real ZTF and LSST packets into the input topic; a real `lightkeeper` process materializes them;
//! REST and WebSocket clients read the result.

use lightkeeper_clients::api::ws::ServerMsg;
use lightkeeper_clients::Client;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::kafka::{read_topic, topic_config, TopicSet};
use lightkeeper_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

fn start_node(topics: &TopicSet, dir: &std::path::Path, extra_env: &[(&'static str, String)]) -> NodeProcess {
    let schemas = lsst_schemas().display().to_string();
    let mut env = topics.env();
    env.extend_from_slice(extra_env);
    NodeProcess::start(dir, &["--kafka", &broker(), "--schemas", &schemas], &env).expect("node starts")
}

/// Produces files with the Python producer; returns (key, partition, offset) per record.
fn produce(topic: &str, files: &[PathBuf], raw: &[PathBuf]) -> Vec<(String, u32, u64)> {
    let mut args = vec![broker(), topic.to_owned(), lsst_schemas().display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    if !raw.is_empty() {
        args.push("--raw".into());
        args.extend(raw.iter().map(|f| f.display().to_string()));
    }
    python("produce.py", &args)
        .expect("python producer")
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_owned(), f[1].parse().unwrap(), f[2].parse().unwrap())
        })
        .collect()
}

fn lightcurve_files() -> Vec<PathBuf> {
    avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"))
}

async fn wait_for_alerts(client: &Client, key: &str, n: u64) -> Value {
    eventually(WAIT, &format!("{key} to have {n} alerts"), || async {
        client.object(key).await.ok().filter(|o| o["n_alerts"].as_u64() == Some(n))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn external_producer_to_rest_and_websocket() {
    let topics = TopicSet::unique("e2e");
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&topics, &tmp.path().join("node"), &[]);
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    // The node created its topics; the changelog is compacted.
    assert_eq!(topic_config(&broker(), &topics.changelog, "cleanup.policy").as_deref(), Some("compact"));
    // A week of changes kept before compaction: the window of an exact filter-subscription resume.
    assert_eq!(topic_config(&broker(), &topics.changelog, "min.compaction.lag.ms").as_deref(), Some("604800000"));

    // Subscribe before any alert exists: a snapshot at version 0, then one update per alert.
    let key = "ztf:ZTF21abiuvdk";
    let mut sub = client.subscribe("s1", &[key], None).await.unwrap();
    let snap = sub.next(WAIT).await.unwrap().expect("snapshot");
    let ServerMsg::Snapshot { version, object, .. } = &snap else { panic!("expected a snapshot: {snap:?}") };
    assert_eq!(*version, 0);
    assert!(object.is_none());

    // Light-curve alerts in time order, plus LSST packets of every wire version.
    let mut files = lightcurve_files();
    files.sort_by_key(|f| f.file_name().unwrap().to_owned());
    let lsst_wire = avro_files(&shared_data().join("lsst/alerts/pittgoogle-client_wire"));
    let lsst_boom = avro_files(&shared_data().join("lsst/alerts/boom"));
    let all: Vec<PathBuf> = files.iter().chain(&lsst_wire).chain(&lsst_boom).cloned().collect();
    let produced = produce(&topics.input, &all, &[]);
    assert_eq!(produced.len(), all.len());
    // The external producer's murmur2 partitioning matches ours, so routing agrees with the topic.
    for (k, p, _) in &produced {
        assert_eq!(*p, partition_for(k.as_bytes(), 4), "partition of {k}");
    }

    // One update per alert, versions rising by exactly one, each carrying its new points.
    let mut versions = Vec::new();
    let mut pushed_points = 0;
    while versions.len() < 22 {
        let m = sub.next(WAIT).await.unwrap().expect("an update");
        let ServerMsg::Update { sub: s, key: k, version, new_points, .. } = m else {
            panic!("expected an update: {m:?}")
        };
        assert_eq!(s, "s1");
        assert_eq!(k, key);
        pushed_points += new_points.len();
        versions.push(version);
    }
    assert_eq!(versions, (1..=22).collect::<Vec<_>>());
    assert_eq!(pushed_points, 22 + 15, "every point is pushed exactly once");

    // REST agrees with an independent computation (fastavro) from the same packets.
    let obj = wait_for_alerts(&client, key, 22).await;
    assert_eq!(obj["n_detections"], 22);
    assert_eq!(obj["n_upper_limits"], 15);
    assert_eq!(obj["version"], 22);
    let reference: Value = serde_json::from_str(
        &python(
            "alerts.py",
            &std::iter::once("reference".to_owned())
                .chain(files.iter().map(|f| f.display().to_string()))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    )
    .unwrap();
    let expect = &reference[key];
    let lc = client.lightcurve(key, "kind=detection").await.unwrap();
    let got: BTreeMap<String, f64> = lc["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["source_id"].as_str().unwrap().to_owned(), p["mag"].as_f64().unwrap()))
        .collect();
    let want: BTreeMap<String, f64> =
        expect["detections"].as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_f64().unwrap())).collect();
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (k, m) in &want {
        assert!((got[k] - m).abs() < 1e-5, "mag of {k}: {} vs {m}", got[k]);
    }
    let limits = client.lightcurve(key, "kind=upper_limit").await.unwrap();
    assert_eq!(limits["points"].as_array().unwrap().len() as u64, expect["n_upper_limits"].as_u64().unwrap());
    let history = client.alerts(key).await.unwrap();
    let ids: Vec<String> =
        history["alerts"].as_array().unwrap().iter().map(|a| a["alert_id"].as_str().unwrap().to_owned()).collect();
    let mut want_ids: Vec<String> =
        expect["alerts"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    want_ids.sort();
    let mut ids_sorted = ids.clone();
    ids_sorted.sort();
    assert_eq!(ids_sorted, want_ids);
    assert!(history["alerts"].as_array().unwrap().iter().all(|a| a["source"]["topic"] == topics.input.as_str()));

    // CSV has a header and one row per point.
    let csv = reqwest::get(format!("{}/v1/objects/ztf:ZTF21abiuvdk/lightcurve?format=csv", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("mjd,time_scale,band,kind,"));
    assert_eq!(csv.lines().count(), 1 + 22 + 15);

    // LSST: the negative detection keeps its sign, the time scale is TAI.
    let neg = wait_for_alerts(&client, "lsst:7912941781254298", 1).await;
    assert_eq!(neg["survey"], "lsst");
    let lc = client.lightcurve("lsst:7912941781254298", "").await.unwrap();
    let p = &lc["points"][0];
    assert_eq!(p["time_scale"], "tai");
    assert_eq!(p["is_negative"], true);
    assert!(p["flux_njy"].as_f64().unwrap() < -1000.0);

    // The ten synthetic wire packets are one alert (diaSourceId 281323062375219200) issued in
    // ten schema versions: it applies once, the other nine are duplicates.
    let synthetic = client.object("lsst:281323062375219200").await.unwrap();
    assert_eq!(synthetic["n_alerts"], 1);
    assert_eq!(synthetic["version"], 1);

    // Resume: from version 20 the server replays 21 and 22, no snapshot, no duplicates.
    let mut resumed = client.subscribe("s2", &[key], Some(20)).await.unwrap();
    let a = resumed.next(WAIT).await.unwrap().unwrap();
    let b = resumed.next(WAIT).await.unwrap().unwrap();
    assert!(matches!(a, ServerMsg::Update { version: 21, .. }), "{a:?}");
    assert!(matches!(b, ServerMsg::Update { version: 22, .. }), "{b:?}");
    assert!(resumed.next(Duration::from_millis(300)).await.unwrap().is_none(), "nothing after the current version");

    // Producing the same alerts again changes nothing: no version bump, no new points.
    produce(&topics.input, &files[..5], &[]);
    let cluster = eventually(WAIT, "duplicates consumed", || async {
        let c = client.cluster().await.ok()?;
        let total = consumed(&client).await?;
        (total as usize == all.len() + 5).then_some(c)
    })
    .await
    .unwrap();
    assert_eq!(cluster.partitions.len(), 4);
    assert_eq!(client.object(key).await.unwrap()["version"], 22);
    let text = reqwest::get(format!("{}/metrics", node.url)).await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("lightkeeper_alerts_duplicate_total") && l.ends_with(" 14")),
        "9 + 5 duplicates: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_packets_go_to_the_dead_letter_topic_and_the_worker_goes_on() {
    let topics = TopicSet::unique("dlq");
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&topics, &tmp.path().join("node"), &[]);
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();

    // A truncated ZTF packet and a wire packet with an unregistered schema id, then a good alert.
    let good = lightcurve_files()[0].clone();
    let bytes = std::fs::read(&good).unwrap();
    let corrupt = tmp.path().join("corrupt.avro");
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let unknown = tmp.path().join("unknown-schema.avro");
    let mut wire = vec![0u8, 0, 0, 0x03, 0xe7];
    wire.extend_from_slice(&[2, 4, 6, 8]);
    std::fs::write(&unknown, &wire).unwrap();
    produce(&topics.input, &[], &[corrupt.clone(), unknown.clone()]);
    produce(&topics.input, &[good], &[]);

    wait_for_alerts(&client, "ztf:ZTF21abiuvdk", 1).await;
    let dead = read_topic(&broker(), &topics.dead_letter, 2, WAIT);
    assert_eq!(dead.len(), 2, "both bad packets are dead-lettered");
    let mut codes: Vec<&str> = dead.iter().map(|r| r.headers["lightkeeper.code"].as_str()).collect();
    codes.sort();
    assert_eq!(codes, ["corrupt", "unknown_schema"]);
    for r in &dead {
        assert!(!r.headers["lightkeeper.reason"].is_empty());
        assert_eq!(r.headers["lightkeeper.source.topic"], topics.input);
        // The original bytes are kept, so nothing is lost.
        let original =
            if r.headers["lightkeeper.code"] == "corrupt" { std::fs::read(&corrupt).unwrap() } else { wire.clone() };
        assert_eq!(r.payload, original);
    }
    let text = reqwest::get(format!("{}/metrics", node.url)).await.unwrap().text().await.unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("lightkeeper_dead_letters_total") && l.contains("reason=\"corrupt\"")),
        "{text}"
    );
    assert!(text
        .lines()
        .any(|l| l.starts_with("lightkeeper_dead_letters_total") && l.contains("reason=\"unknown_schema\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_outage_is_retried_never_dead_lettered() {
    let topics = TopicSet::unique("regdown");
    let tmp = tempfile::tempdir().unwrap();
    // A registry URL where nothing listens: every wire-format lookup fails transiently.
    let env = [("LIGHTKEEPER_SCHEMAS__REGISTRY_URL", "http://127.0.0.1:9".to_owned())];
    let mut all_env = topics.env();
    all_env.extend_from_slice(&env);
    let node = NodeProcess::start(&tmp.path().join("node"), &["--kafka", &broker()], &all_env).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let wire = shared_data().join("lsst/alerts/pittgoogle-client_wire/lsst.v9_0.avro");
    produce(&topics.input, std::slice::from_ref(&wire), &[]);

    let metrics_url = format!("{}/metrics", node.url);
    eventually(WAIT, "the batch to fail and be retried", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        text.lines()
            .find(|l| l.starts_with("lightkeeper_worker_errors_total"))
            .and_then(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .filter(|n| *n >= 2)
    })
    .await
    .unwrap();
    assert!(read_topic(&broker(), &topics.dead_letter, 1, Duration::from_secs(2)).is_empty(), "nothing dead-lettered");
    let done = consumed(&Client::new(&node.url).unwrap()).await.unwrap();
    assert_eq!(done, 0, "the offset does not move past an alert that could not be decoded yet");
    // Over HTTP the same packet is refused with 503 (retry), not 400.
    let err = Client::new(&node.url).unwrap().ingest(std::fs::read(&wire).unwrap()).await.unwrap_err();
    assert!(matches!(err, lightkeeper_clients::ClientError::Api { status: 503, .. }), "{err}");
}
