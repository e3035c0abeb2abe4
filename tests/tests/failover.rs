//! Automatic failover (issue 4): three nodes under continuous writes and reads; the master of
//! every partition is SIGKILLed and nobody calls promote — the coordinator's leader notices and
//! promotes the most caught-up standbys. The reader, which tries the next node when one is
//! down, sees no failed request; the final state equals the independent fastavro reference.

use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::{partitions, Cluster};
use lightkeeper_tests::load::{balanced_reader, finish, input_next, producer, wait_input};
use lightkeeper_tests::*;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

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
    wait_input(&urls[0], real.len() as u64, WAIT).await;

    let produce = producer(&c.topics.input, &synthetic, Some(150));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = balanced_reader(urls.clone(), keys.clone(), stop.clone());

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
        wait_input(u, all.len() as u64, WAIT).await;
    }
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    eprintln!("{} reads, {} failed, {} retried on another node", reads.ok, reads.failed.len(), reads.retried);
    assert!(reads.failed.is_empty(), "failed reads during the failover: {:?}", reads.failed);
    assert!(reads.ok > 100, "the reader kept reading ({})", reads.ok);
    for u in &urls[1..] {
        reference::check(&Client::new(u).unwrap(), &reference, "").await.unwrap();
    }
}
