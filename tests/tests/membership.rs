//! Dynamic membership (issue 4): a cluster that grows and shrinks under load.
//!
//! Three founding nodes, four partitions with two replicas each, under continuous ingest, reads
//! and two WebSocket subscribers. A fourth node, configured like the others but not among the
//! peers, joins: it registers through the peers, becomes a Raft learner, is given its share of
//! replicas (each restored before the replica it replaces stops) and of preferred masters. Then
//! the coordinator's Raft *leader* is decommissioned: its replicas move to the others, mastership
//! is handed off gracefully, it leaves the Raft group (the joiner takes its vote), and it is
//! stopped. Nobody calls promote. Reads never fail, every subscriber sees every version once
//! (streams of a partition leaving a node move to a relay), and the final state equals the
//! independent fastavro reference.

use lightkeeper_clients::api::cluster::Role;
use lightkeeper_clients::api::error::ErrorResponse;
use lightkeeper_clients::Client;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::{cluster_view, decommission, hosted_by, partitions, placement, Cluster, TOKEN};
use lightkeeper_tests::load::{
    balanced_reader, cluster_input_next, finish, producer, wait_cluster_input, watch_versions, Workload,
};
use lightkeeper_tests::*;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
const PARTITIONS: u32 = 4;

/// The (partition, node) pairs serving as ready masters, as the nodes at `urls` report them.
async fn serving_masters(urls: &[String]) -> BTreeSet<(u32, String)> {
    let mut out = BTreeSet::new();
    for u in urls {
        for p in partitions(u).await.unwrap_or_default() {
            if p.role == Role::Master && p.ready {
                out.insert((p.partition, p.master));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_joins_and_the_raft_leader_is_decommissioned_under_load_with_no_failed_read() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("membership", &["a", "b", "c"], PARTITIONS, tmp.path());
    c.replication_factor = Some(2);
    let w = Workload::new(&tmp.path().join("synthetic"), 6000, 4, 4_000_000_000_000_000_000);
    let mut founders = c.start_all(WAIT).await;
    let d_url = c.add_joiner("d");
    let mut urls = c.urls();
    urls.push(d_url.clone());
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls[..3], w.real.len() as u64, WAIT).await;
    let before = placement(&urls[0], PARTITIONS).await.expect("the table is seeded");
    let leader = cluster_view(&urls[0]).await.unwrap().coordinator.and_then(|c| c.leader).unwrap();
    eprintln!("{:?}: seeded placement {before:?}, raft leader {leader}", started.elapsed());

    // Subscribers on the two founders that are not the leader (the leader is decommissioned and
    // stopped), to objects whose alerts come during the join and the decommission.
    let watched: Vec<String> = (400..1400).step_by(4).map(|i| format!("ztf:{}", synth::object_id(i))).collect();
    let refs: Vec<&str> = watched.iter().map(String::as_str).collect();
    let subscribed: Vec<String> = ["a", "b", "c"].iter().filter(|n| **n != leader).map(|n| (*n).to_owned()).collect();
    let mut watchers = Vec::new();
    for n in &subscribed {
        let sub = Client::new(&c.url(n)).unwrap().subscribe("membership", &refs, None).await.unwrap();
        watchers.push((n.clone(), watch_versions(sub, watched.len(), 4)));
    }
    let produce = producer(&c.topics.input, &w.synthetic, Some(250));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = balanced_reader(urls.clone(), w.real_keys(), stop.clone());
    eventually(WAIT, "the stream to be flowing", || async {
        (cluster_input_next(&urls[..3]).await > w.real.len() as u64 + 200).then_some(())
    })
    .await
    .unwrap();

    // d joins: it is not in cluster.peers, so it registers through them.
    let d = c.start("d");
    d.wait_ready(WAIT).await.unwrap();
    let joined = eventually(WAIT, "d to hold its share of replicas and of preferred masters, all ready", || async {
        let placed = placement(&urls[0], PARTITIONS).await?;
        let members = ["a", "b", "c", "d"];
        let balanced = members.iter().all(|n| hosted_by(&placed, n, false) == 2 && hosted_by(&placed, n, true) == 1);
        let masters = serving_masters(&urls).await;
        let d_ready = partitions(&d_url).await.ok()?.iter().filter(|p| p.ready).count();
        let d_leads = *placed.iter().find(|(_, rs)| rs[0] == "d")?.0;
        (balanced
            && masters.contains(&(d_leads, "d".to_owned()))
            && masters.len() == PARTITIONS as usize
            && d_ready == 2)
            .then_some(placed)
    })
    .await
    .unwrap();
    eprintln!("{:?}: after the join: {joined:?}", started.elapsed());
    let view = cluster_view(&urls[0]).await.unwrap();
    let coordinator = view.coordinator.as_ref();
    assert!(coordinator.is_some_and(|c| c.learners.iter().any(|n| n == "d")), "d is a Raft learner: {view:?}");
    assert_eq!(coordinator.map_or(0, |c| c.voters.len()), 3, "an odd number of voters: {view:?}");
    // Only d's share moved: every other replica stayed where it was.
    let moved: usize = joined.iter().map(|(p, rs)| rs.iter().filter(|r| !before[p].contains(r)).count()).sum();
    assert_eq!(moved, 2, "two replicas moved to d: {before:?} → {joined:?}");
    let lost: Vec<(u32, String)> = before
        .iter()
        .flat_map(|(p, rs)| rs.iter().filter(|r| !joined[p].contains(r)).map(move |r| (*p, r.clone())))
        .collect();
    let relocated = watched
        .iter()
        .filter(|k| lost.iter().any(|(p, n)| subscribed.contains(n) && partition_for(k.as_bytes(), PARTITIONS) == *p))
        .count();
    assert!(relocated > 10, "watched objects of a partition that left a subscriber's node: {relocated} ({lost:?})");

    // Decommission the Raft leader, through another node. Bad calls are refused first.
    let other = c.url(&subscribed[0]);
    let http = reqwest::Client::new();
    let resp = http.post(format!("{other}/v1/admin/nodes/{leader}/decommission")).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no token");
    let resp =
        http.post(format!("{other}/v1/admin/nodes/nobody/decommission")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let body: ErrorResponse = resp.json().await.unwrap();
    assert_eq!(body.error.code, "no_such_node", "{body:?}");
    // Answered 202 with the decommission report (anything else is an error carrying the body).
    let report = decommission(&other, &leader).await.unwrap();
    eprintln!("{:?}: decommission of {leader}: {report:?}", started.elapsed());
    let rest: Vec<String> = urls.iter().filter(|u| **u != c.url(&leader)).cloned().collect();
    let after = eventually(WAIT, "the leader's replicas to move off it and the leader to leave the group", || async {
        let placed = placement(&rest[0], PARTITIONS).await?;
        let view = cluster_view(&rest[0]).await.ok()?;
        let coordinator = view.coordinator.as_ref()?;
        let left = !coordinator.voters.contains(&leader) && !coordinator.learners.contains(&leader);
        let masters = serving_masters(&rest).await;
        let hosted_on_leader =
            partitions(&c.url(&leader)).await.ok()?.iter().filter(|p| p.role != Role::NotHosted).count();
        let done = placed.values().all(|rs| rs.len() == 2 && !rs.contains(&leader))
            && left
            && hosted_on_leader == 0
            && masters.len() == PARTITIONS as usize
            && coordinator.leader.as_ref().is_some_and(|l| *l != leader);
        done.then_some((placed, view))
    })
    .await
    .unwrap();
    let (placed, view) = after;
    let voters = view.coordinator.as_ref().map(|c| c.voters.clone()).unwrap_or_default();
    eprintln!("{:?}: after the decommission: {placed:?}, voters {voters:?}", started.elapsed());
    assert!(voters.iter().any(|n| n == "d"), "d took the leaver's vote: {view:?}");
    assert_eq!(voters.len(), 3);
    let remaining: Vec<&str> = ["a", "b", "c", "d"].into_iter().filter(|n| *n != leader).collect();
    let loads: Vec<usize> = remaining.iter().map(|n| hosted_by(&placed, n, false)).collect();
    assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1, "balanced over the rest: {placed:?}");

    // The leaver tells load balancers to stop sending to it, and can go now.
    let ready = reqwest::get(format!("{}/readyz", c.url(&leader))).await.unwrap();
    assert_eq!(ready.status(), 503, "a decommissioned node is not ready");
    let i = ["a", "b", "c"].iter().position(|n| *n == leader).unwrap();
    founders[i].terminate().unwrap();
    finish(produce).await;
    wait_cluster_input(&rest, w.total(), WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let reads = reader.await.unwrap();
    eprintln!(
        "{:?}: {} reads, {} failed, {} retried on another node",
        started.elapsed(),
        reads.ok,
        reads.failed.len(),
        reads.retried
    );
    assert!(reads.failed.is_empty(), "failed reads while the cluster changed: {:?}", reads.failed);
    assert!(reads.ok > 100, "the reader kept reading ({})", reads.ok);
    for u in &rest {
        reference::check(&Client::new(u).unwrap(), &w.reference, "").await.unwrap();
    }
    for (node, watcher) in watchers {
        let seen = watcher.await.unwrap();
        assert_eq!(seen.len(), watched.len(), "{node}: every watched object was delivered");
        for (key, versions) in &seen {
            assert_eq!(versions, &vec![1, 2, 3, 4], "{node}, {key}: no gap, no duplicate while replicas moved");
        }
    }
}
