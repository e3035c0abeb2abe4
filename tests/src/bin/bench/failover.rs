//! `bench failover`: automatic failover — three nodes, one partition (200 objects); K times,
//! SIGKILL whichever node masters the partition and time until a read through a surviving node
//! is answered by a new master (`x-lightkeeper-role: master`, another node). Nobody calls
//! promote: the coordinator detects the death and its leader promotes the most caught-up
//! standby. The killed node is then restarted and waits until it has caught up as a standby,
//! so every kill starts from the same state.
//!
//! Even-numbered kills take the coordinator's Raft leader down with the master (the benchmark
//! first moves the master onto the leader by a handover if needed), so an election comes
//! first; odd ones kill a master that is not the leader. The two halves are reported apart:
//! the second is the comparison within the run for the first (what the election adds). The
//! baseline for the promotion itself is `bench handover`'s drained-handover figure on the same
//! machine (BENCHMARKS.md); what this adds on top is failure detection.

use crate::common::{discard_run_dir, drop_topics, load_input, machine};
use crate::stats::{percentile, sorted};
use lightkeeper_clients::api::cluster::Role;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::cluster::{cluster_view, partitions, promote, Cluster};
use lightkeeper_tests::synth::object_id;
use lightkeeper_tests::{broker, NodeProcess};
use std::time::{Duration, Instant};

pub async fn run(kills: usize) -> anyhow::Result<()> {
    // Kept when the run fails or BENCH_KEEP is set, for the nodes' logs (`<id>.stderr.log`).
    let tmp = tempfile::tempdir()?.keep();
    eprintln!("failover bench: node data and logs in {}", tmp.display());
    let ids = ["a", "b", "c"];
    let cluster = Cluster::new("bench-failover", &ids, 1, &tmp).fixed_masters();
    let kafka = KafkaConfig::new(&broker());
    let mut nodes: Vec<NodeProcess> = ids.iter().map(|id| cluster.start(id)).collect();
    for n in &nodes {
        n.wait_ready(Duration::from_secs(120)).await?;
    }
    {
        let (kafka, topics) = (kafka.clone(), cluster.topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, 1000, 5, 1)).await??;
    }
    let key = format!("ztf:{}", object_id(0));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let caught_up = |url: String| async move {
        partitions(&url)
            .await
            .ok()
            .is_some_and(|ps| ps.iter().all(|p| p.ready && p.changelog_lag == 0 && p.input_next == 1000))
    };
    for id in ids {
        while !caught_up(cluster.url(id)).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut times = Vec::new();
    for k in 0..kills {
        // Even kills take the Raft leader down with the master (an election comes first), odd
        // ones a master that is not the leader: place the master by a handover if needed.
        // The leader as the member with the newest term sees it (a node just restarted may not
        // know it yet).
        let mut raft_leader = (0, String::new());
        for id in ids {
            let coordinator = cluster_view(&cluster.url(id)).await?.coordinator;
            let term = coordinator.as_ref().map_or(0, |c| c.term);
            if let Some(l) = coordinator.and_then(|c| c.leader).filter(|_| term >= raft_leader.0) {
                raft_leader = (term, l);
            }
        }
        let raft_leader = raft_leader.1;
        let mut master = None;
        for (i, id) in ids.iter().enumerate() {
            if partitions(&cluster.url(id)).await.is_ok_and(|ps| ps[0].role == Role::Master) {
                master = Some(i);
            }
        }
        let current = master.ok_or_else(|| anyhow::anyhow!("kill {k}: no master"))?;
        let want_leader = k % 2 == 0;
        let m = if (ids[current] == raft_leader) == want_leader {
            current
        } else {
            let target = ids
                .iter()
                .position(|id| (*id == raft_leader) == want_leader)
                .ok_or_else(|| anyhow::anyhow!("kill {k}: no node to place the master on"))?;
            promote(&cluster.url(ids[target]), 0).await?;
            target
        };
        let leader =
            cluster_view(&cluster.url(ids[m])).await?.coordinator.and_then(|c| c.leader).unwrap_or_default() == ids[m];
        nodes[m].kill();
        let killed = Instant::now();
        // First successful read answered by another master, through the surviving nodes.
        let others: Vec<String> =
            ids.iter().enumerate().filter(|(i, _)| *i != m).map(|(_, id)| cluster.url(id)).collect();
        let mut i = 0;
        loop {
            let url = format!("{}/v1/objects/{key}", others[i % 2]);
            if let Ok(r) = http.get(&url).send().await {
                let by =
                    r.headers().get("x-lightkeeper-served-by").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let role = r.headers().get("x-lightkeeper-role").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                if r.status().is_success() && by != ids[m] && role == "master" {
                    break;
                }
            }
            i += 1;
            anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "kill {k}: no new master after 60 s");
        }
        let t = killed.elapsed();
        eprintln!(
            "kill {k}: master {} (raft leader: {leader}) → first read on the new master after {} ms",
            ids[m],
            t.as_millis()
        );
        times.push((t.as_secs_f64() * 1e3, leader));
        // Bring the node back as a standby, caught up, before the next kill.
        nodes[m] = cluster.start(ids[m]);
        nodes[m].wait_ready(Duration::from_secs(120)).await?;
        let url = cluster.url(ids[m]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !caught_up(url.clone()).await {
            anyhow::ensure!(Instant::now() < deadline, "kill {k}: {} did not catch up", ids[m]);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    drop_topics(&kafka, &cluster.topics).await?;
    drop(nodes);
    discard_run_dir(&tmp);
    let all = sorted(times.iter().map(|(t, _)| *t).collect());
    let with_leader = sorted(times.iter().filter(|(_, l)| *l).map(|(t, _)| *t).collect());
    let without = sorted(times.iter().filter(|(_, l)| !*l).map(|(t, _)| *t).collect());
    println!("## failover: {kills} SIGKILLs of the master, 3 nodes, automatic promotion — {}", machine());
    println!("| kills | n | median | p90 | p99 | max |\n|---|---|---|---|---|---|");
    for (name, v) in
        [("all", &all), ("master was also the Raft leader", &with_leader), ("master was not the Raft leader", &without)]
    {
        if v.is_empty() {
            continue;
        }
        let n = v.len();
        println!(
            "| {name} | {n} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }
    Ok(())
}
