//! Crash recovery against the real broker: SIGKILL the node mid-ingest and restart it; then
//! delete its data directory and restart again. Every time, the state must equal one clean pass
//! over the same input by a fresh node (nothing lost, nothing doubled).

use lightkeeper_clients::Client;
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(90);

fn start(topics: &TopicSet, dir: &std::path::Path, batch: usize) -> NodeProcess {
    let mut env = topics.env();
    env.push(("LIGHTKEEPER_BATCH_SIZE", batch.to_string()));
    NodeProcess::start(dir, &["--kafka", &broker()], &env).expect("node starts")
}

fn produce(topic: &str, files: &[PathBuf]) -> usize {
    let mut args = vec![broker(), topic.to_owned(), lsst_schemas().display().to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    python("produce.py", &args).expect("producer").lines().count()
}

/// Summary and full light curve of every key, with the per-node field `updated_at` kept (it
/// comes from the input log, so it too must match).
async fn snapshot(client: &Client, keys: &[String]) -> BTreeMap<String, (Value, Value, Value)> {
    let mut out = BTreeMap::new();
    for k in keys {
        let o = client.object(k).await.unwrap_or_else(|e| panic!("{k}: {e}"));
        let lc = client.lightcurve(k, "").await.unwrap();
        let al = client.alerts(k).await.unwrap();
        out.insert(k.clone(), (o, lc, al));
    }
    out
}

async fn wait_consumed(client: &Client, total: u64) {
    eventually(WAIT, &format!("{total} input records consumed"), || async {
        (consumed(client).await? == total).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_ingest_and_lost_data_dir_both_recover_exactly() {
    let topics = TopicSet::unique("crash");
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data().join("ztf/alerts");
    let mut files = avro_files(&data.join("fink-alert-simulator/datasim_20181129"));
    files.extend(avro_files(&data.join("pitt-google-broker/lightcurve_ZTF21abiuvdk")));
    let keys: Vec<String> = {
        let args: Vec<String> = ["keys".to_owned(), lsst_schemas().display().to_string()]
            .into_iter()
            .chain(files.iter().map(|f| f.display().to_string()))
            .collect();
        let mut k: Vec<String> =
            python("alerts.py", &args).unwrap().lines().map(|l| l.split('\t').next().unwrap().to_owned()).collect();
        k.sort();
        k.dedup();
        k
    };

    // Phase 1: half the alerts, fully applied.
    let dir = tmp.path().join("node");
    let mut node = start(&topics, &dir, 1);
    node.wait_ready(WAIT).await.unwrap();
    let half = files.len() / 2;
    let mut produced = produce(&topics.input, &files[..half]);
    wait_consumed(&Client::new(&node.url).unwrap(), produced as u64).await;

    // Phase 2: the rest, duplicates of phase 1, and 2,000 more real-size alerts of 400 new
    // objects — enough work that the SIGKILL lands while the node is busy with it.
    let mut second: Vec<PathBuf> = files[half..].to_vec();
    second.extend_from_slice(&files[..20]);
    produced += produce(&topics.input, &second);
    let synthetic = 2000;
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 16);
    let bootstrap = broker();
    let input_topic = topics.input.clone();
    let synthetic_keys = tokio::task::spawn_blocking(move || {
        let topic = KafkaTopic::open(&KafkaConfig::new(&bootstrap), &input_topic).unwrap();
        // Generated first, then appended in bulk per partition, so the input runs far ahead of
        // the worker.
        let records: Vec<(u32, String, Vec<u8>)> = (0..synthetic)
            .map(|i| {
                let oid = object_id(i / 5);
                let key = format!("ztf:{oid}");
                let packet = reissue(&templates[i % templates.len()], &oid, 5_000_000_000_000_000_000 + i as i64);
                (partition_for(key.as_bytes(), topic.partitions()), key, packet)
            })
            .collect();
        for p in 0..topic.partitions() {
            let batch: Vec<Append<'_>> = records
                .iter()
                .filter(|(q, _, _)| *q == p)
                .map(|(_, k, v)| Append { key: Some(k.as_bytes()), payload: v, headers: &[] })
                .collect();
            topic.append(p, &batch).unwrap();
        }
        records.into_iter().map(|(_, k, _)| k).collect::<Vec<_>>()
    })
    .await
    .unwrap();
    produced += synthetic;
    let mut keys = keys;
    keys.extend(synthetic_keys);
    keys.sort();
    keys.dedup();
    let client = Client::new(&node.url).unwrap();
    let at_kill = eventually(WAIT, "the node to start on phase 2", || async {
        let n = consumed(&client).await?;
        (n > half as u64).then_some(n)
    })
    .await
    .unwrap();
    node.kill();
    eprintln!("killed after {at_kill} of {produced} input records");
    assert!(at_kill < produced as u64, "the kill must land mid-ingest ({at_kill} of {produced} done)");

    // Restart on the same directory: restore from RocksDB plus the changelog tail.
    let node = start(&topics, &dir, 64);
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    wait_consumed(&client, produced as u64).await;
    let after_crash = snapshot(&client, &keys).await;
    let mut node = node;
    node.terminate().unwrap();

    // A clean pass: a fresh node with its own changelog reads the same input once.
    let clean_topics = TopicSet {
        changelog: format!("{}-clean", topics.changelog),
        dead_letter: format!("{}-clean", topics.dead_letter),
        ..topics.clone()
    };
    let clean = start(&clean_topics, &tmp.path().join("clean"), 512);
    clean.wait_ready(WAIT).await.unwrap();
    let clean_client = Client::new(&clean.url).unwrap();
    wait_consumed(&clean_client, produced as u64).await;
    let reference = snapshot(&clean_client, &keys).await;
    drop(clean);

    assert_eq!(after_crash.len(), keys.len());
    for k in &keys {
        assert_eq!(after_crash[k], reference[k], "object {k} differs from a clean pass after SIGKILL");
    }
    let lc = &after_crash["ztf:ZTF21abiuvdk"].0;
    assert_eq!((lc["n_detections"].as_u64(), lc["n_upper_limits"].as_u64()), (Some(22), Some(15)));

    // Lose the data directory: everything is rebuilt from the changelog.
    std::fs::remove_dir_all(&dir).unwrap();
    let node = start(&topics, &dir, 64);
    node.wait_ready(WAIT).await.unwrap();
    let client = Client::new(&node.url).unwrap();
    let rebuilt = snapshot(&client, &keys).await;
    for k in &keys {
        assert_eq!(rebuilt[k], reference[k], "object {k} differs after a rebuild from the changelog");
    }
    // The input resumes where the changelog says; re-read duplicates change nothing.
    wait_consumed(&client, produced as u64).await;
    assert_eq!(snapshot(&client, &keys).await, rebuilt);
}
