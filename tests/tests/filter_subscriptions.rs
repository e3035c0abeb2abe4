//! Live filter subscriptions (issue 11) in a real three-node cluster, on the node that hosts
//! none of the partitions (every change is relayed from another node): while alerts stream in,
//! one partition is handed over and then its new master — which masters the other partition
//! too — is SIGKILLed. Each subscriber must see every matching change of every partition
//! exactly once; one that drops its connection midway and resubscribes `from` its last cursor
//! misses nothing and repeats nothing; `leave` comes when a change makes an object stop
//! matching; a snapshot afterwards lists exactly the matching objects.
//!
//! And on one node: subscriptions opened while alerts stream in start from the live matcher
//! without reading the changelog, and still see every change; a resume from an early cursor
//! replays exactly what came after it.

use lightkeeper_clients::api::partitioner::partition_for;
use lightkeeper_clients::api::ws::{FeedCursor, ServerMsg};
use lightkeeper_clients::{Client, Subscription};
use lightkeeper_tests::cluster::{metric, promote, Cluster};
use lightkeeper_tests::load::{cluster_input_next, finish, producer, wait_cluster_input};
use lightkeeper_tests::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(120);
/// Objects whose id starts (after `ZTF99`) with a letter before `n`: `synth::object_id(i)`
/// starts with `a + i % 26`, so half of them.
const HALF: &str = "object_id < 'ZTF99n'";
const OBJECTS: usize = 300;
const PER_OBJECT: usize = 4;

fn matching(i: usize) -> bool {
    i % 26 < 13
}

/// Reads messages until `done` says the collection is complete or nothing comes for 30 s.
async fn collect(sub: &mut Subscription, out: &mut Vec<ServerMsg>, done: impl Fn(&[ServerMsg]) -> bool) {
    while !done(out) {
        match sub.next(Duration::from_secs(30)).await.expect("a message that decodes") {
            Some(m) => out.push(m),
            None => return,
        }
    }
}

/// The changes (key → versions, in arrival order) and leaves of a subscription's messages.
fn changes(msgs: &[ServerMsg]) -> (BTreeMap<String, Vec<u64>>, BTreeMap<String, Vec<u64>>) {
    let (mut updates, mut leaves): (BTreeMap<String, Vec<u64>>, BTreeMap<String, Vec<u64>>) = Default::default();
    for m in msgs {
        match m {
            ServerMsg::Update { key, version, cursor, .. } => {
                assert!(cursor.is_some(), "every message carries a cursor: {m:?}");
                updates.entry(key.clone()).or_default().push(*version);
            }
            ServerMsg::Leave { key, version, .. } => leaves.entry(key.clone()).or_default().push(*version),
            ServerMsg::Subscribed { .. } | ServerMsg::Snapshot { .. } => {}
            ServerMsg::Error { .. } => panic!("error on a filter subscription: {m:?}"),
        }
    }
    (updates, leaves)
}

fn updates_count(msgs: &[ServerMsg]) -> usize {
    msgs.iter().filter(|m| matches!(m, ServerMsg::Update { .. })).count()
}

fn last_cursor(msgs: &[ServerMsg]) -> String {
    msgs.iter()
        .rev()
        .find_map(|m| match m {
            ServerMsg::Update { cursor: Some(c), .. } | ServerMsg::Snapshot { cursor: Some(c), .. } => Some(c.clone()),
            ServerMsg::Leave { cursor, .. } | ServerMsg::Subscribed { cursor, .. } => Some(cursor.clone()),
            _ => None,
        })
        .expect("a message with a cursor")
}

async fn subscribed(sub: &mut Subscription) -> String {
    match sub.next(WAIT).await.unwrap() {
        Some(ServerMsg::Subscribed { cursor, .. }) => cursor,
        other => panic!("expected subscribed first: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn filter_subscribers_on_a_node_hosting_nothing_see_every_change_once_through_handover_and_failover() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = Cluster::new("filter-subs", &["a", "b", "c"], 2, tmp.path()).fixed_masters();
    // c hosts nothing: every change reaches its subscribers from a or b.
    c.cluster_extra.push_str(
        "assignment = [{ partition = 0, replicas = [\"a\", \"b\"] }, { partition = 1, replicas = [\"b\", \"a\"] }]\n",
    );
    let files = synth::write_alerts(&tmp.path().join("synthetic"), OBJECTS * PER_OBJECT, PER_OBJECT, 0, 5_000_000_000);
    let mut nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    let on_c = Client::new(&urls[2]).unwrap();

    let expected: BTreeMap<String, Vec<u64>> = (0..OBJECTS)
        .filter(|i| matching(*i))
        .map(|i| (format!("ztf:{}", synth::object_id(i)), (1..=PER_OBJECT as u64).collect()))
        .collect();
    let want = expected.len() * PER_OBJECT;

    let mut all = on_c.subscribe_filter("all", HALF, None, false).await.unwrap();
    let mut leaving =
        on_c.subscribe_filter("leaving", &format!("n_alerts <= 2 and {HALF}"), None, false).await.unwrap();
    let mut resumed = on_c.subscribe_filter("resumed", HALF, None, false).await.unwrap();
    for s in [&mut all, &mut leaving, &mut resumed] {
        subscribed(s).await;
    }

    // Stream the alerts; once flowing, hand partition 1 over to a (which then masters both),
    // then SIGKILL a: both partitions fail over to b.
    let produce = producer(&c.topics.input, &files, Some(150));
    eventually(WAIT, "the stream to be flowing", || async { (cluster_input_next(&urls).await > 150).then_some(()) })
        .await
        .unwrap();
    let report = promote(&urls[0], 1).await.expect("hand partition 1 over to a");
    eprintln!("handover of partition 1: {report:?}");

    // The reconnecting subscriber drops its connection after a third of its changes, then
    // resumes from the last cursor it got, on the same node, while alerts keep coming.
    let mut first = Vec::new();
    collect(&mut resumed, &mut first, |m| updates_count(m) >= want / 3).await;
    drop(resumed);
    let cursor = last_cursor(&first);

    eventually(WAIT, "the stream to go on after the handover", || async {
        (cluster_input_next(&urls).await > 450).then_some(())
    })
    .await
    .unwrap();
    nodes[0].kill();
    eprintln!("killed a, the master of both partitions");
    let mut again = on_c.subscribe_filter("resumed", HALF, Some(&cursor), false).await.unwrap();
    subscribed(&mut again).await;

    finish(produce).await;
    wait_cluster_input(&urls[1..], (OBJECTS * PER_OBJECT) as u64, WAIT).await;

    let mut got_all = Vec::new();
    collect(&mut all, &mut got_all, |m| updates_count(m) >= want).await;
    let mut second = Vec::new();
    collect(&mut again, &mut second, |m| updates_count(&first) + updates_count(m) >= want).await;
    // Two alerts per matching object while it matches, then its leave.
    let mut got_leaving = Vec::new();
    collect(&mut leaving, &mut got_leaving, |m| {
        let (u, l) = changes(m);
        u.values().map(Vec::len).sum::<usize>() >= 2 * expected.len() && l.len() >= expected.len()
    })
    .await;

    let (updates, leaves) = changes(&got_all);
    assert!(leaves.is_empty(), "nothing stops matching a filter on the id: {leaves:?}");
    assert_eq!(updates, expected, "every matching change, once, in order");

    let mut resumed_msgs = first.clone();
    resumed_msgs.extend(second);
    let (updates, _) = changes(&resumed_msgs);
    assert_eq!(updates, expected, "across the reconnect: no gap, no duplicate");

    let (updates, leaves) = changes(&got_leaving);
    let two: BTreeMap<String, Vec<u64>> = expected.keys().map(|k| (k.clone(), vec![1, 2])).collect();
    let third: BTreeMap<String, Vec<u64>> = expected.keys().map(|k| (k.clone(), vec![3])).collect();
    assert_eq!(updates, two, "updates while n_alerts <= 2");
    assert_eq!(leaves, third, "one leave, at the change that made n_alerts 3");

    // A snapshot now: exactly the matching objects, at their last version; then nothing more.
    let mut snap = on_c.subscribe_filter("snap", HALF, None, true).await.unwrap();
    subscribed(&mut snap).await;
    let mut snapshot = Vec::new();
    collect(&mut snap, &mut snapshot, |m| m.len() >= expected.len()).await;
    let got: BTreeMap<String, u64> = snapshot
        .iter()
        .map(|m| match m {
            ServerMsg::Snapshot { key, version, cursor: Some(_), .. } => (key.clone(), *version),
            other => panic!("expected only snapshots: {other:?}"),
        })
        .collect();
    let keys: BTreeSet<&String> = got.keys().collect();
    assert_eq!(keys, expected.keys().collect::<BTreeSet<_>>());
    assert!(got.values().all(|v| *v == PER_OBJECT as u64), "{got:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fresh_filter_subscriptions_during_ingest_read_no_changelog_and_resumes_replay_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let c = Cluster::new("filter-fresh", &["a"], 2, tmp.path());
    let files = synth::write_alerts(&tmp.path().join("synthetic"), OBJECTS * PER_OBJECT, PER_OBJECT, 0, 6_000_000_000);
    let _nodes = c.start_all(WAIT).await;
    let url = c.urls().remove(0);
    let client = Client::new(&url).unwrap();
    let expected: BTreeMap<String, Vec<u64>> = (0..OBJECTS)
        .filter(|i| matching(*i))
        .map(|i| (format!("ztf:{}", synth::object_id(i)), (1..=PER_OBJECT as u64).collect()))
        .collect();

    // One subscription before the stream (its `subscribed` cursor is where a resume starts),
    // then more while the alerts flow: each starts where the live matcher's deliveries do.
    let mut first = client.subscribe_filter("first", HALF, None, false).await.unwrap();
    let start = subscribed(&mut first).await;
    let produce = producer(&c.topics.input, &files, Some(300));
    let mut during = Vec::new();
    for i in 0..8 {
        let target = 100 + 100 * i as u64;
        eventually(WAIT, "the stream to be flowing", || async {
            (cluster_input_next(std::slice::from_ref(&url)).await > target).then_some(())
        })
        .await
        .unwrap();
        let mut s = client.subscribe_filter(&format!("during-{i}"), HALF, None, false).await.unwrap();
        let start = subscribed(&mut s).await;
        during.push((s, start));
    }
    finish(produce).await;
    wait_cluster_input(std::slice::from_ref(&url), (OBJECTS * PER_OBJECT) as u64, WAIT).await;

    let want = expected.len() * PER_OBJECT;
    let mut got = Vec::new();
    collect(&mut first, &mut got, |m| updates_count(m) >= want).await;
    assert_eq!(changes(&got).0, expected, "the subscription from before the stream: every change, once");
    // Each change's changelog position, from the cursor it came with (its partition's
    // position is the change's offset + 1).
    let placed: Vec<(String, u64, u32, u64)> = got
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Update { key, version, cursor: Some(c), .. } => {
                let p = partition_for(key.as_bytes(), 2);
                Some((key.clone(), *version, p, FeedCursor::decode(c).unwrap().0[&p].next - 1))
            }
            _ => None,
        })
        .collect();
    for (i, (s, start)) in during.iter_mut().enumerate() {
        // Exactly the changes at or after the position it started from, once, in order.
        let from = FeedCursor::decode(start).unwrap();
        let mut expected: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        for (key, version, p, offset) in &placed {
            if *offset >= from.0[p].next {
                expected.entry(key.clone()).or_default().push(*version);
            }
        }
        let want: usize = expected.values().map(Vec::len).sum();
        let mut got = Vec::new();
        collect(s, &mut got, |m| updates_count(m) >= want).await;
        assert_eq!(changes(&got).0, expected, "subscription {i}, opened during the stream");
    }
    assert_eq!(
        metric(&url, "lightkeeper_filter_replays_total").await.unwrap(),
        0.0,
        "subscriptions from now on are served by the matcher alone"
    );

    // A resume from the first cursor replays the partitions' changes from the changelog: all of them, once.
    let mut again = client.subscribe_filter("again", HALF, Some(&start), false).await.unwrap();
    subscribed(&mut again).await;
    let mut replayed = Vec::new();
    collect(&mut again, &mut replayed, |m| updates_count(m) >= want).await;
    assert_eq!(changes(&replayed).0, expected, "the resume from before the stream: every change, once");
    assert!(metric(&url, "lightkeeper_filter_replays_total").await.unwrap() >= 1.0);
}
