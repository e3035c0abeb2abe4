//! Automatic failover (issue 4): three nodes, three partitions with two replicas each, under
//! continuous writes, reads and a live WebSocket subscriber. A master is SIGKILLed and nobody
//! calls promote — the coordinator's leader notices and promotes the most caught-up standby.
//! The reader, which tries the next node when one is down, sees no failed request; the
//! subscriber, on a node that does not host the failed partition (so its updates are relayed
//! from the master, then from the new master), sees every version once; the final state equals
//! the independent fastavro reference.

use lightkeeper_clients::api::cluster::{PartitionView, Role};
use lightkeeper_clients::Client;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::{partitions, Cluster};
use lightkeeper_tests::load::{
    balanced_reader, cluster_input_next, finish, producer, wait_cluster_input, watch_versions, Workload,
};
use lightkeeper_tests::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

/// The tests of this file run one at a time: each is a three-node cluster under load, and on a
/// two-core machine two at once starve each other's failure detectors.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_master_is_replaced_automatically_with_no_failed_read() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("failover-auto", &["a", "b", "c"], 3, tmp.path());
    // Partition p on the two nodes from position p: 0 → [a, b], 1 → [b, c], 2 → [c, a].
    c.replication_factor = Some(2);
    let w = Workload::new(&tmp.path().join("synthetic"), 1000, 4, 9_000_000_000_000_000_000);
    let mut nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls, w.real.len() as u64, WAIT).await;

    // A subscriber on c to 150 synthetic objects (4 alerts each) whose alerts come after the
    // kill: those of partition 0 (not on c) are relayed from a, then from b.
    let watched: Vec<String> = (50..200).map(|i| format!("ztf:{}", synth::object_id(i))).collect();
    let relayed = watched.iter().filter(|k| partition_for(k.as_bytes(), 3) == 0).count();
    assert!(relayed > 20, "enough watched objects live in partition 0 ({relayed})");
    let refs: Vec<&str> = watched.iter().map(String::as_str).collect();
    let sub = Client::new(&urls[2]).unwrap().subscribe("failover", &refs, None).await.unwrap();
    let watcher = watch_versions(sub, watched.len(), 4);

    let produce = producer(&c.topics.input, &w.synthetic, Some(150));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = balanced_reader(urls.clone(), w.real_keys(), stop.clone());

    // a masters partition 0. Kill it once the stream is flowing.
    eventually(WAIT, "the stream to be flowing", || async {
        (cluster_input_next(&urls).await > w.real.len() as u64 + 150).then_some(())
    })
    .await
    .unwrap();
    nodes[0].kill();
    let killed = Instant::now();
    let new_masters = eventually(WAIT, "every partition mastered again, on b or c", || async {
        let mut owners = Vec::new();
        for u in &urls[1..] {
            for p in partitions(u).await.ok()? {
                if p.role == Role::Master && p.ready {
                    owners.push((p.partition, p.master));
                }
            }
        }
        (owners.len() == 3).then_some(owners)
    })
    .await
    .unwrap();
    eprintln!("masters {new_masters:?} {} ms after the SIGKILL", killed.elapsed().as_millis());

    assert!(new_masters.contains(&(0, "b".to_owned())), "b, partition 0's standby, took over: {new_masters:?}");
    finish(produce).await;
    wait_cluster_input(&urls[1..], w.total(), WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    eprintln!("{} reads, {} failed, {} retried on another node", reads.ok, reads.failed.len(), reads.retried);
    assert!(reads.failed.is_empty(), "failed reads during the failover: {:?}", reads.failed);
    assert!(reads.ok > 100, "the reader kept reading ({})", reads.ok);
    for u in &urls[1..] {
        reference::check(&Client::new(u).unwrap(), &w.reference, "").await.unwrap();
    }
    let seen = watcher.await.unwrap();
    assert_eq!(seen.len(), watched.len(), "every watched object was delivered: {seen:?}");
    for (key, versions) in &seen {
        assert_eq!(versions, &vec![1, 2, 3, 4], "{key}: no gap, no duplicate across the failover");
    }
}

/// A whole node paused (SIGSTOP) under load: its connections hang rather than fail, so the
/// coordinator declares it dead after a second of silence and promotes the standby of the
/// partition it mastered. After SIGCONT the paused node finds the newer epoch in the changelog,
/// steps down without applying anything it did while deposed, catches up and serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_node_is_deposed_fenced_and_rejoins() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("paused-node", &["a", "b", "c"], 3, tmp.path()).fixed_masters();
    c.replication_factor = Some(2);
    let w = Workload::new(&tmp.path().join("synthetic"), 1200, 3, 6_000_000_000_000_000_000);
    let nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls, w.real.len() as u64, WAIT).await;

    let produce = producer(&c.topics.input, &w.synthetic, Some(150));
    let stop = Arc::new(AtomicBool::new(false));
    // Reads through b and c only: a client's own connection to a paused node just hangs.
    let reader = balanced_reader(urls[1..].to_vec(), w.real_keys(), stop.clone());
    eventually(WAIT, "the stream to be flowing", || async {
        (cluster_input_next(&urls).await > w.real.len() as u64 + 150).then_some(())
    })
    .await
    .unwrap();

    nodes[0].signal(libc::SIGSTOP);
    let paused = Instant::now();
    // a mastered partition 0; b, its standby, takes over with epoch 2.
    eventually(WAIT, "b to master partition 0 in epoch 2", || async {
        let ps = partitions(&urls[1]).await.ok()?;
        let p0 = ps.iter().find(|p| p.partition == 0)?;
        (p0.role == Role::Master && p0.ready && p0.epoch == 2).then_some(())
    })
    .await
    .unwrap();
    eprintln!("partition 0 mastered by b {} ms after the SIGSTOP", paused.elapsed().as_millis());
    // Let the stream move on while a is paused, then wake it.
    let resumed_at = cluster_input_next(&urls[1..]).await + 300;
    eventually(WAIT, "more input while a is paused", || async {
        (cluster_input_next(&urls[1..]).await > resumed_at).then_some(())
    })
    .await
    .unwrap();
    nodes[0].signal(libc::SIGCONT);

    // a steps down: a standby of partition 0 under b's epoch, and of partition 2 under c.
    eventually(WAIT, "a to rejoin as a standby", || async {
        let ps = partitions(&urls[0]).await.ok()?;
        let hosted: Vec<&PartitionView> = ps.iter().filter(|p| p.role != Role::NotHosted).collect();
        let p0 = ps.iter().find(|p| p.partition == 0)?;
        (hosted.iter().all(|p| p.role == Role::Standby && p.ready) && p0.master == "b" && p0.epoch == 2).then_some(())
    })
    .await
    .unwrap();
    let stepdowns = lightkeeper_tests::cluster::metric(&urls[0], "lightkeeper_stepdowns_total").await.unwrap();
    assert!(stepdowns >= 1.0, "the deposed master stepped down ({stepdowns})");

    finish(produce).await;
    wait_cluster_input(&urls, w.total(), WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    eprintln!("{} reads, {} failed, {} retried on another node", reads.ok, reads.failed.len(), reads.retried);
    assert!(reads.failed.is_empty(), "failed reads while a was paused: {:?}", reads.failed);
    // Every replica — the deposed one included, read locally — equals the reference.
    eventually(WAIT, "a caught up", || async {
        let ps = partitions(&urls[0]).await.ok()?;
        ps.iter().filter(|p| p.role != Role::NotHosted).all(|p| p.changelog_lag == 0).then_some(())
    })
    .await
    .unwrap();
    for u in &urls {
        reference::check(&Client::new(u).unwrap(), &w.reference, "").await.unwrap();
    }
    reference::check(&Client::new(&urls[0]).unwrap(), &w.reference, "?max_lag=0").await.unwrap_or_else(|e| {
        panic!("a's own replicas (standby reads) differ from the reference: {e}");
    });
    let fenced = lightkeeper_tests::cluster::metric(&urls[1], "lightkeeper_changelog_fenced_total").await.unwrap();
    eprintln!("records fenced on b: {}", fenced as u64);
}

/// No stale read from a deposed master (issue 14, part 7): a master paused by SIGSTOP is
/// replaced, the new master applies newer alerts, and then — the instant the old master resumes
/// — reads already waiting in its socket, and reads sent in a tight loop after the SIGCONT, are
/// all answered with the newer state: the old master's read lease ran out while it was stopped,
/// so it answers nothing as master until it has looked at the changelog (and then steps down).
/// `/v1/cluster` snapshots taken the same way never show it as master of its old epoch with a
/// lease left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_resumed_master_never_answers_as_master_after_a_newer_epoch() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    // Three voters, so that the coordinator has a majority while a is stopped; partition 0 on
    // a (master) and b.
    let mut c = Cluster::new("read-lease", &["a", "b", "c"], 1, tmp.path()).fixed_masters();
    c.replication_factor = Some(2);
    let files = synth::write_alerts(&tmp.path().join("synthetic"), 4, 4, 0, 7_000_000_000_000_000_000);
    let key = format!("ztf:{}", synth::object_id(0));
    let nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    finish(producer(&c.topics.input, &files[..2], None)).await;
    wait_cluster_input(&urls, 2, WAIT).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let version = |url: String| {
        let http = http.clone();
        let object = format!("{url}/v1/objects/{key}");
        async move {
            let resp = http.get(&object).send().await.map_err(|e| e.to_string())?;
            let served_by = resp.headers().get("x-lightkeeper-served-by").map(|v| v.to_str().unwrap().to_owned());
            let role = resp.headers().get("x-lightkeeper-role").map(|v| v.to_str().unwrap().to_owned());
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.map_err(|e| e.to_string())?;
            if !status.is_success() {
                return Err(format!("{status}: {body}"));
            }
            Ok::<_, String>((body["version"].as_u64().unwrap_or(0), served_by, role))
        }
    };
    assert_eq!(version(urls[0].clone()).await.unwrap().0, 2, "a masters the object at version 2");

    nodes[0].signal(libc::SIGSTOP);
    eventually(WAIT, "b to master partition 0 in epoch 2", || async {
        let p0 = partitions(&urls[1]).await.ok()?.into_iter().find(|p| p.partition == 0)?;
        (p0.role == Role::Master && p0.ready && p0.epoch == 2).then_some(())
    })
    .await
    .unwrap();
    finish(producer(&c.topics.input, &files[2..], None)).await;
    eventually(WAIT, "b to apply versions 3 and 4", || async {
        (version(urls[1].clone()).await.ok()?.0 == 4).then_some(())
    })
    .await
    .unwrap();

    // Reads and cluster snapshots sent to the stopped node: the kernel accepts the connections
    // and buffers the requests; the node reads them the instant it runs again. There is no
    // signal for "the request is buffered" from a stopped process, hence the short pause.
    let queued: Vec<_> = (0..16).map(|_| tokio::spawn(version(urls[0].clone()))).collect();
    let snapshots: Vec<_> = (0..8)
        .map(|_| {
            let url = urls[0].clone();
            tokio::spawn(async move { partitions(&url).await.map_err(|e| e.to_string()) })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    nodes[0].signal(libc::SIGCONT);
    let resumed = Instant::now();
    let mut answers = Vec::new();
    let mut views = Vec::new();
    while resumed.elapsed() < Duration::from_millis(1_500) {
        answers.push(version(urls[0].clone()).await);
        views.push(partitions(&urls[0]).await.map_err(|e| e.to_string()));
    }
    for q in queued {
        answers.push(q.await.unwrap());
    }
    for s in snapshots {
        views.push(s.await.unwrap());
    }
    eprintln!("{} reads and {} cluster snapshots of a after its SIGCONT", answers.len(), views.len());
    for a in &answers {
        match a {
            Ok((v, served_by, role)) => assert_eq!(
                *v, 4,
                "a read answered version {v} (served by {served_by:?} as {role:?}) after a newer epoch had version 4"
            ),
            Err(e) => panic!("a read through the resumed node failed: {e}"),
        }
    }
    let mut stale_master_views = 0;
    for v in views.iter().flatten() {
        let p0 = v.iter().find(|p| p.partition == 0).unwrap();
        if p0.role == Role::Master && p0.epoch == 1 {
            stale_master_views += 1;
            assert_eq!(p0.lease_ms, 0, "a reported itself master of epoch 1 with a lease after epoch 2 began");
        }
    }
    eprintln!("snapshots showing a as master of epoch 1 (without a lease): {stale_master_views}");
    eventually(WAIT, "a to step down", || async {
        let p0 = partitions(&urls[0]).await.ok()?.into_iter().find(|p| p.partition == 0)?;
        (p0.role == Role::Standby && p0.master == "b" && p0.epoch == 2).then_some(())
    })
    .await
    .unwrap();
}
