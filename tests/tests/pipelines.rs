//! Pipelines on a real node and the real broker: the seed's example chain — a solar-system
//! filter for named targets, then a Kafka writer and a file writer — run over real ZTF alerts
//! with `ssnamenr`, gives exactly the alerts an independent reading (fastavro, in
//! `tests/py/alerts.py`) selects; the Avro records decode with the schema the node's registry
//! API serves, keyed by alert id in the partition murmur2 gives; a second chain (the filter
//! language, a sky region of cones) writes JSON records of exactly the alerts an independent
//! cross-match puts inside; a bad definition is refused with its line; a deleted pipeline stops.

use lightkeeper_api::partitioner::partition_for;
use lightkeeper_api::pipeline::{PipelineInfo, RECORD_SCHEMA_ID};
use lightkeeper_tests::kafka::{read_topic, TopicSet};
use lightkeeper_tests::{
    avro_files, broker, eventually, lsst_schemas, python, separation_arcsec, shared_data, unique, NodeProcess,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const TOKEN: &str = "pipeline-admin";
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seed_chain_selects_exactly_the_named_bodies_alerts() {
    let files = avro_files(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"));
    assert_eq!(files.len(), 127);
    // The independent reading: each packet's candid and ssnamenr.
    let args: Vec<String> =
        std::iter::once("solar".to_owned()).chain(files.iter().map(|f| f.display().to_string())).collect();
    let reference: Vec<Value> = serde_json::from_str(&python("alerts.py", &args).unwrap()).unwrap();
    let named: BTreeSet<String> = reference.iter().filter_map(|r| r["ssnamenr"].as_str().map(str::to_owned)).collect();
    // The seed's giants (no ZTF alert names them) and a dozen of the bodies these alerts name.
    let mut targets: Vec<String> = vec!["saturn".into(), "Jupiter".into()];
    targets.extend(named.iter().take(12).cloned());
    let wanted: BTreeSet<String> = reference
        .iter()
        .filter(|r| r["ssnamenr"].as_str().is_some_and(|n| targets.iter().any(|t| t.eq_ignore_ascii_case(n.trim()))))
        .map(|r| r["candid"].as_str().unwrap().to_owned())
        .collect();
    assert!(wanted.len() >= 12, "the data names enough bodies: {wanted:?}");

    let topics = TopicSet::unique("pipelines");
    let out_topic = unique("giants");
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let mut env = topics.env();
    env.push(("LIGHTKEEPER_CLUSTER__ADMIN_TOKEN", TOKEN.to_owned()));
    let schemas = lsst_schemas().display().to_string();
    let node = NodeProcess::start(&data, &["--kafka", &broker(), "--schemas", &schemas], &env).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let http = reqwest::Client::new();
    let url = node.url.clone();

    // A definition with a mistake is refused, and the message names its line.
    let bad = "processors:\n  - class: solar_system\n    params:\n      include: [saturn]\n  - class: filter\n    params:\n      where: \"mag_q < 18\"\n";
    let r = http.put(format!("{url}/v1/pipelines/giants")).bearer_auth(TOKEN).body(bad).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "bad_pipeline");
    let msg = e["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("line 7, column") && msg.contains("mag_q"), "{msg}");
    let r = http.put(format!("{url}/v1/pipelines/giants")).body("processors: []").send().await.unwrap();
    assert_eq!(r.status(), 401, "pipelines need the admin token");

    // The seed's chain, made real.
    let list = targets.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
    let definition = format!(
        "description: the seed's example — named solar-system bodies to a topic and to files\n\
         processors:\n\
         \x20 - class: solar_system\n\
         \x20   params:\n\
         \x20     include: [{list}]\n\
         \x20 - class: kafka\n\
         \x20   params: {{ topic: {out_topic}, format: avro, partitions: 3 }}\n\
         \x20 - class: file\n\
         \x20   params: {{ format: csv }}\n"
    );
    let r = http
        .put(format!("{url}/v1/pipelines/giants"))
        .bearer_auth(TOKEN)
        .body(definition.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let info: PipelineInfo = r.json().await.unwrap();
    assert_eq!(info.definition, definition);
    let classes: Vec<&str> = info.processors.iter().map(|p| p.class.as_str()).collect();
    assert_eq!(classes, ["solar_system", "kafka", "file"]);

    // A second chain: the filter language and a sky region (cones around five real alert
    // positions) to a topic as JSON.
    let region_topic = unique("region");
    let centres: Vec<(f64, f64)> = reference
        .iter()
        .step_by(25)
        .map(|r| (r["ra"].as_f64().unwrap(), r["dec"].as_f64().unwrap() + 1.0 / 3600.0))
        .collect();
    let in_region: BTreeSet<String> = reference
        .iter()
        .filter(|r| {
            let (ra, dec) = (r["ra"].as_f64().unwrap(), r["dec"].as_f64().unwrap());
            centres.iter().any(|(cra, cdec)| separation_arcsec(ra, dec, *cra, *cdec) <= 2.0)
        })
        .map(|r| r["candid"].as_str().unwrap().to_owned())
        .collect();
    assert!(in_region.len() >= centres.len());
    let cones = centres
        .iter()
        .map(|(ra, dec)| format!("{{ ra: {ra}, dec: {dec}, radius_arcsec: 2.0 }}"))
        .collect::<Vec<_>>()
        .join(", ");
    let region = format!(
        "processors:\n\
         \x20 - class: filter\n    params: {{ where: \"n_detections >= 1 and survey = 'ztf'\" }}\n\
         \x20 - class: sky_region\n    params: {{ cones: [{cones}] }}\n\
         \x20 - class: kafka\n    params: {{ topic: {region_topic}, format: json }}\n"
    );
    let r = http.put(format!("{url}/v1/pipelines/region")).bearer_auth(TOKEN).body(region).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    for f in &files {
        let r = http.post(format!("{url}/v1/alerts")).body(std::fs::read(f).unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 202);
    }
    let info = eventually(WAIT, "every alert through the chain", || async {
        let r = http.get(format!("{url}/v1/pipelines/giants")).bearer_auth(TOKEN).send().await.ok()?;
        let info: PipelineInfo = r.json().await.ok()?;
        let p = &info.processors[0];
        (p.passed + p.skipped == 127).then_some(info)
    })
    .await
    .unwrap();
    assert_eq!(info.processors[0].passed as usize, wanted.len());
    assert_eq!(info.processors[1].passed as usize, wanted.len());
    assert_eq!(info.processors[2].passed as usize, wanted.len());
    assert!(info.processors.iter().all(|p| p.errors == 0), "{info:?}");

    // The Kafka output: decoded with the schema the registry API serves, not the writer's code.
    let r = http.get(format!("{url}/schemas/ids/{RECORD_SCHEMA_ID}")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    let schema = apache_avro::Schema::parse_str(served["schema"].as_str().unwrap()).unwrap();
    let records = read_topic(&broker(), &out_topic, wanted.len(), WAIT);
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    for rec in &records {
        assert_eq!(rec.payload[0], 0, "Confluent wire format");
        assert_eq!(u32::from_be_bytes(rec.payload[1..5].try_into().unwrap()), RECORD_SCHEMA_ID);
        let v = apache_avro::from_avro_datum(&schema, &mut &rec.payload[5..], None).unwrap();
        let json: Value = serde_json::to_value(apache_avro::from_value::<Value>(&v).unwrap()).unwrap();
        let id = json["alert_id"].as_i64().unwrap().to_string();
        let key = rec.key.clone().expect("records are keyed");
        assert_eq!(String::from_utf8(key.clone()).unwrap(), id, "keyed by alert id");
        assert_eq!(rec.partition as u32, partition_for(&key, 3), "in the partition murmur2 gives");
        assert_eq!(json["pipeline"], "giants");
        got.insert(id, json);
    }
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), wanted, "the topic holds exactly the selected alerts");
    for r in &reference {
        if let Some(out) = got.get(r["candid"].as_str().unwrap()) {
            assert_eq!(out["key"], r["key"]);
            assert_eq!(out["solar_system"].as_str(), r["ssnamenr"].as_str());
        }
    }

    // The file output: CSV under the node's pipeline directory.
    let dir = data.join("pipelines/giants");
    let mut from_files = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(path.extension().and_then(|e| e.to_str()), Some("csv"));
        let mut rd = csv::Reader::from_path(&path).unwrap();
        let headers = rd.headers().unwrap().clone();
        let col = headers.iter().position(|h| h == "alert_id").expect("an alert_id column");
        for row in rd.records() {
            from_files.insert(row.unwrap()[col].to_owned());
        }
    }
    assert_eq!(from_files, wanted, "the files hold exactly the selected alerts");

    // The region chain's JSON records: exactly the alerts within the cones.
    let records = read_topic(&broker(), &region_topic, in_region.len(), WAIT);
    let got: BTreeSet<String> = records
        .iter()
        .map(|rec| {
            let v: Value = serde_json::from_slice(&rec.payload).unwrap();
            let id = v["alert_id"].as_i64().unwrap().to_string();
            assert_eq!(rec.key.as_deref(), Some(id.as_bytes()), "keyed by alert id");
            assert_eq!(v["pipeline"], "region");
            id
        })
        .collect();
    assert_eq!(got, in_region, "the region topic holds exactly the alerts inside the cones");
    let r = http.delete(format!("{url}/v1/pipelines/region")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 204);

    // Deleted: it stops, and is gone.
    let r = http.delete(format!("{url}/v1/pipelines/giants")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = http.get(format!("{url}/v1/pipelines/giants")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = http.get(format!("{url}/v1/pipelines")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["pipelines"], serde_json::json!([]));
}
