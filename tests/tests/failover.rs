//! Automatic failover (issue 4): three nodes under continuous writes and reads; the master of
//! every partition is SIGKILLed and nobody calls promote — the coordinator's leader notices and
//! promotes the most caught-up standbys. The reader, which tries the next node when one is
//! down, sees no failed request; the final state equals the independent fastavro reference.

use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::{partitions, Cluster};
use lightkeeper_tests::*;
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
async fn a_killed_master_is_replaced_automatically_with_no_failed_read() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("failover-auto", &["a", "b", "c"], 2, tmp.path());
    let data = shared_data().join("ztf/alerts");
    let mut real = avro_files(&data.join("fink-alert-simulator/datasim_20181129"));
    real.extend(avro_files(&data.join("pitt-google-broker/lightcurve_ZTF21abiuvdk")));
    let synthetic = synth::write_alerts(&tmp.path().join("synthetic"), 1000, 4, 0, 9_000_000_000_000_000_000);
    let all: Vec<PathBuf> = real.iter().chain(&synthetic).cloned().collect();
    let reference = reference::compute(&all);
    let keys: Vec<String> = reference.keys().filter(|k| !k.starts_with("ztf:ZTF99")).cloned().collect();

    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"].iter().map(|id| c.start(id)).collect();
    for n in &nodes {
        n.wait_ready(WAIT).await.unwrap();
    }
    let urls: Vec<String> = ["a", "b", "c"].iter().map(|id| c.url(id)).collect();
    finish(producer(&c.topics.input, &real, None)).await;
    eventually(WAIT, "the real alerts materialized", || async {
        (input_next(&urls[0]).await == real.len() as u64).then_some(())
    })
    .await
    .unwrap();

    let produce = producer(&c.topics.input, &synthetic, Some(150));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let (stop, keys, urls) = (stop.clone(), keys.clone(), urls.clone());
        async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let (mut ok, mut failed) = (0u64, Vec::new());
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                let mut answer = None;
                for attempt in 0..urls.len() {
                    let url = format!("{}/v1/objects/{key}", urls[(i + attempt) % urls.len()]);
                    match http.get(&url).send().await {
                        Ok(r) if r.status() == 503 => {}
                        Ok(r) => {
                            answer = Some(r.status().as_u16());
                            break;
                        }
                        Err(_) => {}
                    }
                }
                match answer {
                    Some(200) => ok += 1,
                    other => failed.push((key.clone(), other)),
                }
                i += 1;
            }
            (ok, failed)
        }
    });

    // a is every partition's first master. Kill it once the stream is flowing.
    eventually(WAIT, "the stream to be flowing", || async {
        (input_next(&urls[1]).await > real.len() as u64 + 150).then_some(())
    })
    .await
    .unwrap();
    nodes[0].kill();
    let killed = Instant::now();
    let new_masters = eventually(WAIT, "every partition mastered again, on b or c", || async {
        let mut owners = Vec::new();
        for u in &urls[1..] {
            for p in partitions(u).await.ok()? {
                if p["role"] == "master" && p["ready"] == true {
                    owners.push((p["partition"].as_u64()?, p["master"].as_str()?.to_owned()));
                }
            }
        }
        (owners.len() == 2).then_some(owners)
    })
    .await
    .unwrap();
    eprintln!("masters {new_masters:?} {} ms after the SIGKILL", killed.elapsed().as_millis());

    finish(produce).await;
    for u in &urls[1..] {
        eventually(WAIT, &format!("{u} to apply every alert"), || async {
            (input_next(u).await == all.len() as u64).then_some(())
        })
        .await
        .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, failed) = reader.await.unwrap();
    eprintln!("{ok} reads, {} failed", failed.len());
    assert!(failed.is_empty(), "failed reads during the failover: {failed:?}");
    for u in &urls[1..] {
        reference::check(&Client::new(u).unwrap(), &reference, "").await.unwrap();
    }
}
