//! The embedded coordinator (openraft) with real processes on loopback: a single node is its
//! own cluster; three nodes elect a leader, replicate the node and partition tables, survive
//! the SIGKILL of the leader, and a restarted member rejoins from its persisted log.

use lightkeeper_tests::cluster::{cluster_view, Cluster};
use lightkeeper_tests::*;
use serde_json::Value;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Waits until every node in `urls` reports the same coordinator leader and `check` holds for
/// each view; returns the leader's name.
async fn agree(urls: &[String], check: impl Fn(&Value) -> bool) -> String {
    let last = std::sync::Mutex::new(Vec::new());
    let r = eventually(WAIT, "the coordinator views to agree", || async {
        let mut views = Vec::new();
        for u in urls {
            views.push(cluster_view(u).await.ok()?["coordinator"].clone());
        }
        *last.lock().unwrap() = views.clone();
        let leader = views[0]["leader"].as_str()?.to_owned();
        views.iter().all(|v| v["leader"] == leader.as_str() && check(v)).then_some(leader)
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
        v["state"] == "leader"
            && v["voters"] == serde_json::json!(["node-1"])
            && v["replicated"]["nodes"]["node-1"].is_object()
    })
    .await;
    assert_eq!(leader, "node-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_elect_replicate_and_survive_the_leaders_death() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("coordinator", &["a", "b", "c"], 2, tmp.path());
    let mut nodes: Vec<NodeProcess> = ["a", "b", "c"].iter().map(|id| c.start(id)).collect();
    for n in &nodes {
        n.wait_ready(WAIT).await.unwrap();
    }
    let urls: Vec<String> = ["a", "b", "c"].iter().map(|id| c.url(id)).collect();
    // Every node registered with its URL; both partitions recorded as mastered by a, epoch 1.
    let full = |v: &Value| {
        let r = &v["replicated"];
        v["voters"] == serde_json::json!(["a", "b", "c"])
            && ["a", "b", "c"].iter().all(|n| r["nodes"][n]["url"].is_string())
            && (0..2).all(|p| {
                r["partitions"][p.to_string()]["master"] == "a" && r["partitions"][p.to_string()]["epoch"] == 1
            })
    };
    let leader = agree(&urls, full).await;
    let term = cluster_view(&urls[0]).await.unwrap()["coordinator"]["term"].as_u64().unwrap();

    // Kill the leader: the two others elect a new one, in a later term.
    let li = ["a", "b", "c"].iter().position(|n| *n == leader).unwrap();
    nodes[li].kill();
    let rest: Vec<String> = urls.iter().enumerate().filter(|(i, _)| *i != li).map(|(_, u)| u.clone()).collect();
    let new_leader = agree(&rest, |v| v["term"].as_u64().is_some_and(|t| t > term)).await;
    assert_ne!(new_leader, leader);

    // The killed member restarts from its persisted log and vote, and agrees again.
    nodes[li] = c.start(&leader);
    nodes[li].wait_ready(WAIT).await.unwrap();
    let again = agree(&urls, full).await;
    assert_eq!(again, new_leader, "a rejoining member does not disturb the new leader");

    // A promotion is recorded in the replicated partition table.
    let p = lightkeeper_tests::cluster::promote(&c.url("b"), 1).await.unwrap();
    let epoch = p["promoted"]["epoch"].as_u64().unwrap();
    agree(&urls, |v| {
        v["replicated"]["partitions"]["1"]["master"] == "b" && v["replicated"]["partitions"]["1"]["epoch"] == epoch
    })
    .await;
}
