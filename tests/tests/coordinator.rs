//! The embedded coordinator (openraft) with real processes on loopback: a single node is its
//! own cluster; three nodes elect a leader and replicate the node and partition tables; the
//! SIGKILL of the leader (not a master) is survived with no master moved; a restarted member
//! rejoins from its persisted log; the new leader still fails a killed master over; a cluster
//! forms without its first peer; and a peer that never starts can be decommissioned.

use lightkeeper_clients::api::cluster::{CoordinatorView, RaftState, Role};
use lightkeeper_tests::cluster::{cluster_view, Cluster};
use lightkeeper_tests::*;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Waits until every node in `urls` reports the same coordinator leader and `check` holds for
/// each view; returns the leader's name.
async fn agree(urls: &[String], check: impl Fn(&CoordinatorView) -> bool) -> String {
    let last = std::sync::Mutex::new(Vec::new());
    let r = eventually(WAIT, "the coordinator views to agree", || async {
        let mut views: Vec<Option<CoordinatorView>> = Vec::new();
        for u in urls {
            views.push(cluster_view(u).await.ok()?.coordinator);
        }
        *last.lock().unwrap() = views.clone();
        let leader = views[0].as_ref()?.leader.clone()?;
        views
            .iter()
            .all(|v| v.as_ref().is_some_and(|v| v.leader.as_deref() == Some(leader.as_str()) && check(v)))
            .then_some(leader)
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}; last views: {:#?}", last.lock().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_single_node_is_its_own_coordinator() {
    let tmp = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let leader = agree(std::slice::from_ref(&node.url), |v| {
        v.state == RaftState::Leader && v.voters == ["node-1"] && v.replicated.nodes.contains_key("node-1")
    })
    .await;
    assert_eq!(leader, "node-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_replicate_and_survive_the_leaders_death() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("coordinator", &["a", "b", "c"], 2, tmp.path()).fixed_masters();
    let ids = ["a", "b", "c"];
    let mut nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    let masters = |v: &CoordinatorView, who: &str, epoch: u64| {
        (0..2).all(|p| v.replicated.partitions.get(&p).is_some_and(|e| e.master == who && e.epoch == epoch))
    };
    let members =
        |v: &CoordinatorView| v.voters == ["a", "b", "c"] && ids.iter().all(|n| v.replicated.nodes.contains_key(*n));
    // Every node registered with its URL; both partitions recorded as mastered by a, epoch 1.
    let leader = agree(&urls, |v| members(v) && masters(v, "a", 1)).await;
    let term = cluster_view(&urls[0]).await.unwrap().coordinator.expect("a coordinator").term;

    // Move both masters off the leader (a promotion is recorded in the table), so that killing
    // the leader kills no master.
    let m = ids.iter().find(|n| **n != leader).unwrap().to_string();
    for p in 0..2 {
        let r = lightkeeper_tests::cluster::promote(&c.url(&m), p).await.unwrap();
        assert_eq!(r.promoted.epoch, 2, "{r:?}");
    }
    agree(&urls, |v| masters(v, &m, 2)).await;

    // Kill the leader: the two others elect a new one in a later term, record the death, and
    // move no master.
    let li = ids.iter().position(|n| *n == leader).unwrap();
    nodes[li].kill();
    let rest: Vec<String> = urls.iter().enumerate().filter(|(i, _)| *i != li).map(|(_, u)| u.clone()).collect();
    let new_leader = agree(&rest, |v| v.term > term && v.replicated.nodes.get(&leader).is_some_and(|n| !n.alive)).await;
    assert_ne!(new_leader, leader);
    agree(&rest, |v| masters(v, &m, 2)).await;

    // The killed member restarts from its persisted log and vote, and agrees again.
    nodes[li] = c.start(&leader);
    nodes[li].wait_ready(WAIT).await.unwrap();
    let again = agree(&urls, |v| members(v) && v.replicated.nodes.get(&leader).is_some_and(|n| n.alive)).await;
    assert_eq!(again, new_leader, "a rejoining member does not disturb the new leader");

    // Failover still works under the new leader: kill the master (which may be the leader
    // itself); a standby is promoted with a new epoch, nobody calling promote.
    let mi = ids.iter().position(|n| *n == m).unwrap();
    nodes[mi].kill();
    let rest: Vec<String> = urls.iter().enumerate().filter(|(i, _)| *i != mi).map(|(_, u)| u.clone()).collect();
    agree(&rest, |v| (0..2).all(|p| v.replicated.partitions.get(&p).is_some_and(|e| e.master != m && e.epoch == 3)))
        .await;
    // And the old master rejoins as a standby of both partitions.
    nodes[mi] = c.start(&m);
    nodes[mi].wait_ready(WAIT).await.unwrap();
    eventually(WAIT, "the old master to rejoin as a standby", || async {
        let ps = lightkeeper_tests::cluster::partitions(&c.url(&m)).await.ok()?;
        ps.iter().all(|p| p.role == Role::Standby && p.ready && p.epoch == 3).then_some(())
    })
    .await
    .unwrap();
}

/// First bring-up with a node missing: a — the first peer by id, and partition 0's preferred
/// master — never starts. The other founding peers form the coordinator group without it (each
/// proposes the same voters), no epoch is ever written for partition 0, and after a grace period
/// the coordinator gives it to its standby (b). When a finally starts, it joins as a standby of
/// what it would have mastered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partition_whose_preferred_master_never_starts_gets_a_master() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("first-bring-up", &["a", "b", "c"], 3, tmp.path()).fixed_masters();
    // Partition p on the two nodes from position p: 0 → [a, b], 1 → [b, c], 2 → [c, a].
    c.replication_factor = Some(2);
    let b = c.start("b");
    let c_node = c.start("c");
    b.wait_ready(WAIT).await.unwrap();
    c_node.wait_ready(WAIT).await.unwrap();
    let p0 = eventually(WAIT, "b to master partition 0", || async {
        let ps = lightkeeper_tests::cluster::partitions(&b.url).await.ok()?;
        let p = ps.into_iter().find(|p| p.partition == 0)?;
        (p.role == Role::Master && p.ready).then_some(p)
    })
    .await
    .unwrap();
    assert_eq!(p0.epoch, 1, "{p0:?}");
    let view = lightkeeper_tests::cluster::cluster_view(&b.url).await.unwrap();
    let leader = view.coordinator.as_ref().and_then(|c| c.leader.clone()).unwrap_or_default();
    assert!(leader == "b" || leader == "c", "b and c formed the group without a: {view:?}");
    let late = c.start("a");
    late.wait_ready(WAIT).await.unwrap();
    eventually(WAIT, "a to host partition 0 as a standby of b", || async {
        let ps = lightkeeper_tests::cluster::partitions(&late.url).await.ok()?;
        let p = ps.into_iter().find(|p| p.partition == 0)?;
        (p.role == Role::Standby && p.master == "b" && p.ready).then_some(())
    })
    .await
    .unwrap();
}

/// A configured peer that never starts can be decommissioned: its replicas are re-created on
/// the nodes that run (the partition it should have mastered first gets a master from its
/// standby), and it leaves the Raft voters, so the group stops counting on it for a majority.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_peer_that_never_starts_is_decommissioned() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("never-started", &["a", "b", "c"], 3, tmp.path());
    // Partition p on the two nodes from position p: 0 → [a, b], 1 → [b, c], 2 → [c, a].
    c.replication_factor = Some(2);
    let b = c.start("b");
    let c_node = c.start("c");
    b.wait_ready(WAIT).await.unwrap();
    c_node.wait_ready(WAIT).await.unwrap();
    // Answered 202 with the decommission report (anything else is an error carrying the body).
    let report = match lightkeeper_tests::cluster::decommission(&b.url, "a").await {
        Ok(r) => r,
        Err(e) => panic!("{e}\n--- b:\n{}\n--- c:\n{}", b.stderr(), c_node.stderr()),
    };
    eprintln!("decommission of a: {report:?}");
    let urls = vec![b.url.clone(), c_node.url.clone()];
    agree(&urls, |v| {
        let placed = (0..3).all(|p| {
            let rs = v.replicated.partitions.get(&p).map(|e| &e.replicas);
            rs.is_some_and(|rs| rs.len() == 2 && rs.iter().all(|r| r == "b" || r == "c"))
        });
        placed && v.voters == ["b", "c"] && v.learners.is_empty()
    })
    .await;
    eventually(WAIT, "every partition served by a master on b or c", || async {
        let mut masters = 0;
        for u in &urls {
            let ps = lightkeeper_tests::cluster::partitions(u).await.ok()?;
            masters += ps.iter().filter(|p| p.role == Role::Master && p.ready).count();
        }
        (masters == 3).then_some(())
    })
    .await
    .unwrap();
}
