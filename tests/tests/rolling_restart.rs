//! A rolling restart of a three-node cluster under load (issue 4's rolling upgrade, on the
//! slice-2 handover): each node in turn is drained (`POST /v1/admin/nodes/{id}/drain` hands its
//! masters to caught-up standbys and turns its `/readyz` to 503), stopped with SIGTERM,
//! restarted, and rejoins as a standby — while a producer writes and a client reads. The client
//! sends each read to the nodes in turn and tries the next node when one is down, as a client
//! behind a load balancer would; no read may fail. Partitions are spread (two replicas each),
//! and once the restarts are over the coordinator has moved every master back to its preferred
//! replica.

use lightkeeper_clients::api::cluster::{PartitionView, Role};
use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::{drain_node, partitions, Cluster};
use lightkeeper_tests::load::{balanced_reader, finish, producer, wait_cluster_input, Workload};
use lightkeeper_tests::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_of_three_nodes_under_load_fails_no_request() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("rolling", &["a", "b", "c"], 3, tmp.path());
    // Partition p on the two nodes from position p: 0 → [a, b], 1 → [b, c], 2 → [c, a].
    c.replication_factor = Some(2);
    let w = Workload::new(&tmp.path().join("synthetic"), 1000, 4, 8_000_000_000_000_000_000);
    let mut nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls, w.real.len() as u64, WAIT).await;

    let produce = producer(&c.topics.input, &w.synthetic, Some(90));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = balanced_reader(urls.clone(), w.real_keys(), stop.clone());

    let http = reqwest::Client::new();
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        // Ask another node: the request is passed to the node being drained.
        let via = &urls[(i + 1) % 3];
        let started = Instant::now();
        // 200 and the drain report, or a panic with the status and the body.
        let report = drain_node(via, id).await.unwrap_or_else(|e| panic!("drain of {id}: {e}"));
        assert!(report.complete, "{report:?}");
        eprintln!("drained {id} in {} ms: {:?}", started.elapsed().as_millis(), report.handovers);
        let ready = http.get(format!("{}/readyz", urls[i])).send().await.unwrap();
        assert_eq!(ready.status(), 503, "a drained node is not ready for traffic");
        let ps = partitions(&urls[i]).await.unwrap();
        assert!(ps.iter().all(|p| p.role != Role::Master), "{id} masters nothing after its drain: {ps:?}");

        let status = nodes[i].terminate().unwrap();
        assert!(status.success(), "{id} stops cleanly: {status:?}");
        nodes[i] = c.start(id);
        nodes[i].wait_ready(WAIT).await.unwrap();
        let ps = partitions(&urls[i]).await.unwrap();
        let hosted: Vec<&PartitionView> = ps.iter().filter(|p| p.role != Role::NotHosted).collect();
        assert!(hosted.iter().all(|p| p.role == Role::Standby), "{id} rejoins as a standby: {ps:?}");
        eventually(WAIT, &format!("{id} caught up"), || async {
            let ps = partitions(&urls[i]).await.ok()?;
            ps.iter().filter(|p| p.role != Role::NotHosted).all(|p| p.changelog_lag == 0).then_some(())
        })
        .await
        .unwrap();
    }
    // The coordinator hands each partition back to its preferred replica (by a handover).
    let preferred = [(0, "a"), (1, "b"), (2, "c")];
    eventually(WAIT, "every master back on its preferred replica", || async {
        for (p, node) in preferred {
            let ps = partitions(&c.url(node)).await.ok()?;
            let mine = ps.iter().find(|e| e.partition == p)?;
            if mine.role != Role::Master || !mine.ready {
                return None;
            }
        }
        Some(())
    })
    .await
    .unwrap();

    finish(produce).await;
    wait_cluster_input(&urls, w.total(), WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    eprintln!("{} reads, {} failed, {} retried on another node", reads.ok, reads.failed.len(), reads.retried);
    assert!(reads.failed.is_empty(), "failed reads during the rolling restart: {:?}", reads.failed);
    assert!(reads.ok > 100, "the reader kept reading ({})", reads.ok);
    for url in &urls {
        reference::check(&Client::new(url).unwrap(), &w.reference, "").await.unwrap();
    }
}
