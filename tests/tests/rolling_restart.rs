//! A rolling restart of a three-node cluster under load (issue 4's rolling upgrade, on the
//! slice-2 handover): each node in turn is drained (`POST /v1/admin/nodes/{id}/drain` hands its
//! masters to caught-up standbys and turns its `/readyz` to 503), stopped with SIGTERM,
//! restarted, and rejoins as a standby — while a producer writes and a client reads. The client
//! sends each read to the nodes in turn and tries the next node when one is down, as a client
//! behind a load balancer would; no read may fail.

use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::{partitions, Cluster, TOKEN};
use lightkeeper_tests::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

fn producer(topic: &str, files: &[PathBuf], rate: Option<u32>) -> Child {
    let mut cmd = Command::new("python3");
    cmd.arg(workspace().join("tests/py/produce.py")).args([
        broker(),
        topic.to_owned(),
        lsst_schemas().display().to_string(),
    ]);
    if let Some(r) = rate {
        cmd.args(["--rate", &r.to_string()]);
    }
    cmd.args(files).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("python3 produce.py")
}

async fn finish(child: Child) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "producer failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn input_next(url: &str) -> u64 {
    partitions(url).await.map_or(0, |ps| ps.iter().filter_map(|p| p["input_next"].as_u64()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_of_three_nodes_under_load_fails_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("rolling", &["a", "b", "c"], 2, tmp.path());
    let data = shared_data().join("ztf/alerts");
    let mut real = avro_files(&data.join("fink-alert-simulator/datasim_20181129"));
    real.extend(avro_files(&data.join("pitt-google-broker/lightcurve_ZTF21abiuvdk")));
    let synthetic = synth::write_alerts(&tmp.path().join("synthetic"), 1000, 4, 0, 8_000_000_000_000_000_000);
    let all: Vec<PathBuf> = real.iter().chain(&synthetic).cloned().collect();
    let reference = reference::compute(&all);
    let keys: Vec<String> = reference.keys().filter(|k| !k.starts_with("ztf:ZTF99")).cloned().collect();

    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"].iter().map(|id| c.start(id)).collect();
    for n in &nodes {
        n.wait_ready(WAIT).await.unwrap();
    }
    finish(producer(&c.topics.input, &real, None)).await;
    eventually(WAIT, "the real alerts materialized", || async {
        (input_next(&nodes[0].url).await == real.len() as u64).then_some(())
    })
    .await
    .unwrap();

    let produce = producer(&c.topics.input, &synthetic, Some(90));
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = ["a", "b", "c"].iter().map(|id| c.url(id)).collect();
    let reader = tokio::spawn({
        let (stop, keys, urls) = (stop.clone(), keys.clone(), urls.clone());
        async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let (mut ok, mut failed, mut retried) = (0u64, Vec::new(), 0u64);
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                let mut answer = None;
                // Like a load balancer: the next node when one refuses connections or is drained.
                for attempt in 0..urls.len() {
                    let url = format!("{}/v1/objects/{key}", urls[(i + attempt) % urls.len()]);
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 503 => retried += 1,
                        Ok(r) => {
                            answer = Some(r.status().as_u16());
                            break;
                        }
                        Err(_) => retried += 1,
                    }
                }
                match answer {
                    Some(200) => ok += 1,
                    other => failed.push((key.clone(), other)),
                }
                i += 1;
            }
            (ok, failed, retried)
        }
    });

    let http = reqwest::Client::new();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        // Ask another node: the request is passed to the node being drained.
        let via = &urls[(i + 1) % 3];
        let started = Instant::now();
        let r = http.post(format!("{via}/v1/admin/nodes/{id}/drain")).bearer_auth(TOKEN).send().await.unwrap();
        let status = r.status();
        let report: Value = r.json().await.unwrap();
        assert_eq!(status, 200, "drain of {id}: {report}");
        assert_eq!(report["complete"], true, "{report}");
        eprintln!("drained {id} in {} ms: {}", started.elapsed().as_millis(), report["handovers"]);
        let ready = http.get(format!("{}/readyz", urls[i])).send().await.unwrap();
        assert_eq!(ready.status(), 503, "a drained node is not ready for traffic");
        let ps = partitions(&urls[i]).await.unwrap();
        assert!(ps.iter().all(|p| p["role"] == "standby"), "{id} masters nothing after its drain: {ps:?}");

        let status = nodes[i].terminate().unwrap();
        assert!(status.success(), "{id} stops cleanly: {status:?}");
        nodes[i] = c.start(id);
        nodes[i].wait_ready(WAIT).await.unwrap();
        eventually(WAIT, &format!("{id} back as a caught-up standby"), || async {
            let ps = partitions(&urls[i]).await.ok()?;
            ps.iter().all(|p| p["role"] == "standby" && p["master"] != *id && p["changelog_lag"] == 0).then_some(())
        })
        .await
        .unwrap();
    }

    finish(produce).await;
    let total = all.len() as u64;
    for url in &urls {
        eventually(WAIT, &format!("{url} to apply every alert"), || async {
            (input_next(url).await == total).then_some(())
        })
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, retried) = reader.await.unwrap();
    eprintln!("{ok} reads, {} failed, {retried} retried on another node", failed.len());
    assert!(failed.is_empty(), "failed reads during the rolling restart: {failed:?}");
    assert!(ok > 100, "the reader kept reading ({ok})");
    for url in &urls {
        reference::check(&Client::new(url).unwrap(), &reference, "").await.unwrap();
    }
}
