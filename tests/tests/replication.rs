//! Replication with real processes on loopback and the real broker (issue 3's tests):
//! - SIGKILL the master while a real external producer writes; promote the standby; the final
//!   state equals the independent fastavro reference (nothing lost, nothing doubled). The old
//!   master restarts as a standby reading only the changelog tail and serves `max_lag` reads.
//! - A graceful handover there and back under continuous writes and reads: zero failed reads.
//! - A deposed master paused with SIGSTOP and resumed after a promotion elsewhere, plus a late
//!   write of the old epoch: no replica applies it, and a cold restore from an empty data
//!   directory equals the live state.

use lightkeeper_clients::api::cluster::{PartitionView, Role};
use lightkeeper_clients::api::error::ErrorResponse;
use lightkeeper_clients::Client;
use lightkeeper_storage::changelog::{Change, ChangelogEntry};
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::model::Survey;
use lightkeeper_storage::object::ObjectState;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::cluster::{metric, partitions, promote, Cluster};
use lightkeeper_tests::load::{self, finish, input_next, producer, watch_versions, Workload};
use lightkeeper_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);

async fn wait_input(url: &str, total: u64) {
    load::wait_input(url, total, WAIT).await
}

/// Waits until every partition on `url` has `role`, `master` and a changelog lag of 0.
async fn wait_role(url: &str, role: Role, master: &str) -> Vec<PartitionView> {
    let last = std::sync::Mutex::new(Vec::new());
    let r = eventually(WAIT, &format!("{url}: every partition {role} of master {master}"), || async {
        let ps = partitions(url).await.ok()?;
        *last.lock().unwrap() = ps.clone();
        ps.iter().all(|p| p.role == role && p.master == master && p.changelog_lag == 0 && p.ready).then_some(ps)
    })
    .await;
    r.unwrap_or_else(|e| panic!("{e}; last seen: {:?}", last.lock().unwrap()))
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, BTreeMap<String, String>) {
    match client.get(url).send().await {
        Ok(r) => {
            let headers = r
                .headers()
                .iter()
                .filter(|(k, _)| k.as_str().starts_with("x-lightkeeper-"))
                .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            (status, headers)
        }
        Err(_) => (0, BTreeMap::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_the_master_promote_the_standby_nothing_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("failover", &["a", "b"], 2, tmp.path()).fixed_masters();
    let w = Workload::new(&tmp.path().join("synthetic"), 1200, 4, 6_000_000_000_000_000_000);
    let mut a = c.start("a");
    let b = c.start("b");
    a.wait_ready(WAIT).await.unwrap();
    b.wait_ready(WAIT).await.unwrap();
    wait_role(&b.url, Role::Standby, "a").await;

    // A live subscriber on the standby's node, to 150 synthetic objects (4 alerts each) whose
    // alerts span the middle of the stream, where the kill lands: it must see every version
    // once, across the failover.
    let watched: Vec<String> = (50..200).map(|i| format!("ztf:{}", synth::object_id(i))).collect();
    let refs: Vec<&str> = watched.iter().map(String::as_str).collect();
    let sub = Client::new(&b.url).unwrap().subscribe("failover", &refs, None).await.unwrap();
    let watcher = watch_versions(sub, 150, 4);

    // A continuous external producer: every packet, ~5 s at 280/s.
    let files: Vec<PathBuf> = w.real.iter().chain(&w.synthetic).cloned().collect();
    let produce = producer(&c.topics.input, &files, Some(280));
    // Kill the master once the standby has replicated a good part of the stream.
    eventually(WAIT, "the standby to replicate a third of the stream", || async {
        (input_next(&b.url).await > w.total() / 3).then_some(())
    })
    .await
    .unwrap();
    a.kill();
    let killed = Instant::now();
    assert!(input_next(&b.url).await < w.total(), "the kill must land mid-stream");

    for p in 0..2 {
        let r = promote(&b.url, p).await.unwrap();
        assert!(r.promoted.changed, "{r:?}");
        assert_eq!(r.promoted.epoch, 2, "{r:?}");
        assert_eq!(r.promoted.previous_master, "a", "{r:?}");
        assert!(r.drain_error.is_some(), "the dead master cannot be drained: {r:?}");
    }
    let key = w.real_keys()[0].clone();
    let http = reqwest::Client::new();
    let (status, headers) = get(&http, &format!("{}/v1/objects/{key}", b.url)).await;
    eprintln!("first read on the promoted standby {} ms after SIGKILL", killed.elapsed().as_millis());
    assert_eq!(status, 200);
    assert_eq!((headers["x-lightkeeper-served-by"].as_str(), headers["x-lightkeeper-role"].as_str()), ("b", "master"));

    finish(produce).await;
    wait_input(&b.url, w.total()).await;
    reference::check(&Client::new(&b.url).unwrap(), &w.reference, "").await.unwrap();
    // Versions 1..4 of every watched object, each once, in order, across the failover
    // (updates came from b as a standby, then from b as the master).
    let seen = watcher.await.unwrap();
    assert_eq!(seen.len(), 150, "{seen:?}");
    for (key, versions) in &seen {
        assert_eq!(versions, &vec![1, 2, 3, 4], "{key}: no gap, no duplicate across the failover");
    }

    // The old master comes back as a standby: the log says b is master now.
    let mut a = c.start("a");
    a.wait_ready(WAIT).await.unwrap();
    let ps = wait_role(&a.url, Role::Standby, "b").await;
    assert!(ps.iter().all(|p| p.epoch == 2), "{ps:?}");

    // A clean restart reads only the changelog written while the node was down.
    a.terminate().unwrap();
    let extra = synth::write_alerts(&tmp.path().join("extra"), 40, 1, 1_000_000, 7_000_000_000_000_000_000);
    finish(producer(&c.topics.input, &extra, None)).await;
    wait_input(&b.url, w.total() + extra.len() as u64).await;
    let a = c.start("a");
    a.wait_ready(WAIT).await.unwrap();
    wait_role(&a.url, Role::Standby, "b").await;
    let tail = metric(&a.url, "lightkeeper_changelog_applied_total").await.unwrap() as u64;
    assert_eq!(tail, extra.len() as u64, "a restart applies the 40 new changes only, not the whole changelog");

    // Standby reads: within max_lag the standby answers and says so; without it, the master.
    reference::check(&Client::new(&a.url).unwrap(), &w.reference, "?max_lag=0").await.unwrap();
    let (_, h) = get(&http, &format!("{}/v1/objects/{key}?max_lag=0", a.url)).await;
    assert_eq!((h["x-lightkeeper-served-by"].as_str(), h["x-lightkeeper-role"].as_str()), ("a", "standby"));
    assert_eq!(h["x-lightkeeper-lag"], "0");
    let (_, h) = get(&http, &format!("{}/v1/objects/{key}", a.url)).await;
    assert_eq!((h["x-lightkeeper-served-by"].as_str(), h["x-lightkeeper-role"].as_str()), ("b", "master"));
    let (status, _) = get(&http, &format!("{}/v1/objects/{key}?max_lag=-1", a.url)).await;
    assert_eq!(status, 400);

    // Admin calls: a token is required, and the partition must exist and be hosted here.
    let promote_url = |p: u32| format!("{}/v1/admin/partitions/{p}/promote", a.url);
    let r = http.post(promote_url(0)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http.post(promote_url(0)).bearer_auth("wrong").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: ErrorResponse = r.json().await.unwrap();
    assert_eq!(body.error.code, "unauthorized");
    let r = http.post(promote_url(7)).bearer_auth(lightkeeper_tests::cluster::TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn graceful_handover_there_and_back_under_load_fails_no_read() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("handover", &["a", "b"], 2, tmp.path()).fixed_masters();
    let w = Workload::new(&tmp.path().join("synthetic"), 1200, 4, 6_000_000_000_000_000_000);
    let a = c.start("a");
    let b = c.start("b");
    a.wait_ready(WAIT).await.unwrap();
    b.wait_ready(WAIT).await.unwrap();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_input(&a.url, w.real.len() as u64).await;

    // Writes continue for ~5 s while a client reads continuously through both nodes.
    let produce = producer(&c.topics.input, &w.synthetic, Some(240));
    let stop = Arc::new(AtomicBool::new(false));
    let keys = w.real_keys();
    let urls = [a.url.clone(), b.url.clone()];
    let reader = tokio::spawn({
        let stop = stop.clone();
        async move {
            let http = reqwest::Client::new();
            let (mut ok, mut failed, mut worst) = (0u64, Vec::new(), Duration::ZERO);
            let mut served_by = BTreeSet::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let url = format!("{}/v1/objects/{}", urls[i % 2], keys[i % keys.len()]);
                let started = Instant::now();
                let (status, h) = get(&http, &url).await;
                worst = worst.max(started.elapsed());
                if status == 200 {
                    ok += 1;
                    served_by.insert(h.get("x-lightkeeper-served-by").cloned().unwrap_or_default());
                } else {
                    failed.push((url, status));
                }
                i += 1;
            }
            (ok, failed, worst, served_by)
        }
    });

    tokio::time::sleep(Duration::from_millis(800)).await;
    for p in 0..2 {
        let r = promote(&b.url, p).await.unwrap();
        assert!(r.drain_error.is_none(), "a live master is drained: {r:?}");
        assert_eq!(r.promoted.epoch, 2, "{r:?}");
        assert!(r.drained.as_ref().expect("the drain answer").changelog_next <= r.promoted.marker_offset);
        eprintln!("handover of partition {p} to b took {} ms", r.elapsed_ms);
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    for p in 0..2 {
        let r = promote(&a.url, p).await.unwrap();
        assert!(r.drain_error.is_none(), "{r:?}");
        assert_eq!(r.promoted.epoch, 3, "{r:?}");
    }
    finish(produce).await;
    wait_input(&a.url, w.total()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (ok, failed, worst, served_by) = reader.await.unwrap();
    eprintln!("{ok} reads, {} failed, slowest {} ms, served by {served_by:?}", failed.len(), worst.as_millis());
    assert!(failed.is_empty(), "failed reads during the handovers: {failed:?}");
    assert!(ok > 200, "the reader kept reading ({ok})");
    assert!(served_by.contains("a") && served_by.contains("b"), "{served_by:?}");
    wait_role(&b.url, Role::Standby, "a").await;
    reference::check(&Client::new(&a.url).unwrap(), &w.reference, "").await.unwrap();
    reference::check(&Client::new(&b.url).unwrap(), &w.reference, "?max_lag=0").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_deposed_master_changes_no_replica_and_cold_restore_matches() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("zombie", &["a", "b", "c"], 2, tmp.path()).fixed_masters();
    let w = Workload::new(&tmp.path().join("synthetic"), 1500, 4, 6_000_000_000_000_000_000);
    let a = c.start("a");
    let b = c.start("b");
    a.wait_ready(WAIT).await.unwrap();
    b.wait_ready(WAIT).await.unwrap();
    finish(producer(&c.topics.input, &w.real, None)).await;
    wait_input(&a.url, w.real.len() as u64).await;

    // A backlog, so the master is busy when it is paused.
    let backlog = producer(&c.topics.input, &w.synthetic, None);
    eventually(WAIT, "the master to work on the backlog", || async {
        (input_next(&a.url).await > w.real.len() as u64 + 50).then_some(())
    })
    .await
    .unwrap();
    a.signal(libc::SIGSTOP);
    for p in 0..2 {
        let r = promote(&b.url, p).await.unwrap();
        assert!(r.drain_error.is_some(), "a paused master cannot answer the drain: {r:?}");
        assert_eq!(r.promoted.epoch, 2, "{r:?}");
    }

    // A write of the old epoch landing after the new epoch started — what a deposed master's
    // in-flight append does. It claims a bogus version of a real object.
    let key = w.real_keys()[0].clone();
    let bootstrap = broker();
    let changelog = c.topics.changelog.clone();
    let k = key.clone();
    tokio::task::spawn_blocking(move || {
        let topic = KafkaTopic::open(&KafkaConfig::new(&bootstrap), &changelog).unwrap();
        let state = ObjectState {
            key: k.clone(),
            survey: Survey::Ztf,
            object_id: k.trim_start_matches("ztf:").to_owned(),
            version: 9_999,
            ra: None,
            dec: None,
            solar_system: None,
            points: vec![],
            alerts: vec![],
            updated_at_ms: 0,
            attributes: Default::default(),
            watchlists: Vec::new(),
        };
        let entry = ChangelogEntry::Change(Box::new(Change { epoch: 1, input_next: 0, state, new_points: vec![] }));
        let payload = entry.encode();
        topic
            .append(
                partition_for(k.as_bytes(), 2),
                &[Append { key: Some(&entry.key()), payload: &payload, headers: &[] }],
            )
            .unwrap();
    })
    .await
    .unwrap();

    // The zombie resumes: whatever it was doing, it must end as a standby of epoch 2.
    a.signal(libc::SIGCONT);
    finish(backlog).await;
    wait_input(&b.url, w.total()).await;
    let ps = wait_role(&a.url, Role::Standby, "b").await;
    assert!(ps.iter().all(|p| p.epoch == 2), "{ps:?}");
    eprintln!(
        "zombie: {} step-downs, {} fenced records seen",
        metric(&a.url, "lightkeeper_stepdowns_total").await.unwrap(),
        metric(&a.url, "lightkeeper_changelog_fenced_total").await.unwrap()
    );

    // A replica restored cold from an empty data directory.
    let fresh = c.start("c");
    fresh.wait_ready(WAIT).await.unwrap();
    wait_role(&fresh.url, Role::Standby, "b").await;

    let live = Client::new(&b.url).unwrap();
    reference::check(&live, &w.reference, "").await.unwrap();
    let want = live.object(&key).await.unwrap();
    for node in [&a, &fresh] {
        assert!(
            metric(&node.url, "lightkeeper_changelog_fenced_total").await.unwrap() >= 1.0,
            "{} fenced nothing",
            node.url
        );
        let client = Client::new(&node.url).unwrap();
        reference::check(&client, &w.reference, "?max_lag=0").await.unwrap();
        let got = client.get_json(&format!("/v1/objects/{key}?max_lag=0")).await.unwrap();
        assert_eq!(got, want, "{}: the old epoch's write must have no effect", node.url);
    }
    // Cold restore equals the live state, object by object, light curves included.
    let cold = Client::new(&fresh.url).unwrap();
    for k in w.reference.keys() {
        let q = "?max_lag=0";
        assert_eq!(
            cold.get_json(&format!("/v1/objects/{k}/lightcurve{q}")).await.unwrap(),
            live.lightcurve(k, "").await.unwrap(),
            "{k}"
        );
    }
}
