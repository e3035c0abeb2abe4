//! Promotion and fencing races between real replicas: worker threads over one embedded log,
//! each with its own RocksDB state store, as separate nodes would be.
//!
//! The races are made deterministic by a changelog wrapper that can hold a replica's next
//! append at the door ([`Gated`]): the test knows the replica has read what it read and decided
//! what it will write, lets the other replica act, then lets the append through. Every test
//! ends by comparing each store, and a cold replay of the changelog, with a reference merge of
//! the whole input — the contract's "no acknowledged update lost, nothing applied twice".

use lightkeeper_partition::apply::Applier;
use lightkeeper_partition::hub::Hub;
use lightkeeper_partition::merge::{merge, new_state};
use lightkeeper_partition::metrics::PartitionMetrics;
use lightkeeper_partition::worker::{
    self, Command, CommandError, Drained, Promoted, PromotionError, ReplicaHandle, Role, StartRole, WorkerDeps,
    WorkerError, READ_LEASE,
};
use lightkeeper_storage::changelog::ChangelogEntry;
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{read_to_end, Append, EmbeddedLog, LogError, Topic, TopicReader};
use lightkeeper_storage::object::{AlertSource, ObjectState};
use lightkeeper_storage::registry::EmbeddedRegistry;
use lightkeeper_storage::state::{RocksStore, StateStore, StoreOptions};
use prometheus_client::registry::Registry;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(30);
const PARTITION: u32 = 0;

fn shared() -> PathBuf {
    std::env::var_os("LIGHTKEEPER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

fn avro_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            avro_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "avro") {
            out.push(p);
        }
    }
}

/// Real ZTF packets from the shared data that decode, in a fixed order.
fn packets() -> Vec<Vec<u8>> {
    let decoder = Decoder::new(Arc::new(EmbeddedRegistry::empty()));
    let mut files = Vec::new();
    avro_files(&shared().join("ztf/alerts"), &mut files);
    let packets: Vec<Vec<u8>> =
        files.iter().map(|f| std::fs::read(f).unwrap()).filter(|b| decoder.decode(b).is_ok()).take(90).collect();
    assert!(packets.len() >= 30, "expected real ZTF packets in {}", shared().display());
    packets
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A changelog that can hold the next append until the test releases it.
struct Gated {
    inner: Arc<dyn Topic>,
    trap: Mutex<Option<(Sender<()>, Receiver<()>)>>,
    /// The next append panics (a bug in the replica thread, as far as it can tell).
    panic_next: AtomicBool,
    /// The next append lands, and the caller is told something else.
    misreport_next: Mutex<Option<Misreport>>,
}

/// What a changelog append that landed can look like to the master that made it.
#[derive(Debug, Clone, Copy)]
enum Misreport {
    /// A delivery timeout although the broker stored the records.
    Timeout,
    /// An acknowledgement without offsets (a broker answering a retried batch it had kept with
    /// `DUPLICATE_SEQUENCE_NUMBER`), as the Kafka engine reports it.
    OffsetsUnknown,
    /// What the Kafka engine used to report for that answer: offsets numbered on from -1.
    NumberedFromMinusOne,
}

/// A held append: `entered` fires when the replica reaches it; send on `release` to let it pass.
struct Held {
    entered: Receiver<()>,
    release: Sender<()>,
}

impl Held {
    fn wait_entered(&self, who: &str) {
        self.entered.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("{who} never reached its changelog append"));
    }
}

impl Gated {
    fn hold_next_append(&self) -> Held {
        let (entered_tx, entered) = channel();
        let (release, release_rx) = channel();
        *self.trap.lock().unwrap() = Some((entered_tx, release_rx));
        Held { entered, release }
    }
}

impl Topic for Gated {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn partitions(&self) -> u32 {
        self.inner.partitions()
    }
    fn append(&self, partition: u32, records: &[Append<'_>]) -> Result<Vec<u64>, LogError> {
        if self.panic_next.swap(false, Ordering::AcqRel) {
            panic!("injected: the changelog append panicked");
        }
        let trap = self.trap.lock().unwrap().take();
        if let Some((entered, release)) = trap {
            let _ = entered.send(());
            // A dropped sender (a failed test) releases too.
            let _ = release.recv();
        }
        let misreport = self.misreport_next.lock().unwrap().take();
        let offsets = self.inner.append(partition, records)?;
        match misreport {
            None => Ok(offsets),
            Some(Misreport::Timeout) => Err(LogError::Timeout(Duration::from_secs(30))),
            Some(Misreport::OffsetsUnknown) => {
                Err(LogError::OffsetsUnknown { topic: self.name().to_owned(), why: "injected".into() })
            }
            Some(Misreport::NumberedFromMinusOne) => Ok((0..offsets.len() as u64).map(|i| i.wrapping_sub(1)).collect()),
        }
    }
    fn reader(&self, partition: u32, from: u64) -> Result<Box<dyn TopicReader>, LogError> {
        self.inner.reader(partition, from)
    }
    fn end_offset(&self, partition: u32) -> Result<u64, LogError> {
        self.inner.end_offset(partition)
    }
}

/// The shared log: input, changelog and dead-letter topics of one partition.
struct Cluster {
    input: Arc<dyn Topic>,
    changelog: Arc<dyn Topic>,
    dead_letter: Arc<dyn Topic>,
    decoder: Arc<Decoder>,
    /// Last: removed once the log is closed.
    _dir: TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        Cluster {
            input: log.topic("alerts", 1).unwrap(),
            changelog: log.topic("changelog", 1).unwrap(),
            dead_letter: log.topic("dead-letter", 1).unwrap(),
            decoder: Arc::new(Decoder::new(Arc::new(EmbeddedRegistry::empty()))),
            _dir: dir,
        }
    }

    /// Starts a replica on node `name`; `first_master`: configuration names it the first master.
    fn start(&self, name: &str, first_master: bool, replicas: &[&str]) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(RocksStore::open(dir.path(), &StoreOptions::default()).unwrap());
        let changelog = Arc::new(Gated {
            inner: self.changelog.clone(),
            trap: Mutex::new(None),
            panic_next: AtomicBool::new(false),
            misreport_next: Mutex::new(None),
        });
        let metrics = PartitionMetrics::register(&mut Registry::default());
        let hub = Arc::new(Hub::new(1024));
        let deps = WorkerDeps {
            node_id: name.to_owned(),
            input: self.input.clone(),
            changelog: changelog.clone(),
            dead_letter: self.dead_letter.clone(),
            store: store.clone(),
            decoder: self.decoder.clone(),
            hub: hub.clone(),
            metrics: metrics.clone(),
            batch_size: 8,
            pipelines: Arc::new(lightkeeper_partition::pipeline::Pipelines::none()),
            intake_paused: Default::default(),
        };
        let start = StartRole {
            single_node: false,
            configured_master: first_master,
            replicas: replicas.iter().map(|r| (*r).to_owned()).collect(),
        };
        let cancel = CancellationToken::new();
        let (handle, thread) = worker::spawn(deps, PARTITION, start, cancel.clone()).unwrap();
        Node { name: name.to_owned(), store, changelog, hub, handle, thread: Some(thread), cancel, metrics, _dir: dir }
    }

    fn feed(&self, packets: &[Vec<u8>]) {
        let appends: Vec<Append<'_>> = packets.iter().map(|p| Append { key: None, payload: p, headers: &[] }).collect();
        self.input.append(PARTITION, &appends).unwrap();
    }

    fn input_end(&self) -> u64 {
        self.input.end_offset(PARTITION).unwrap()
    }

    fn changelog_end(&self) -> u64 {
        self.changelog.end_offset(PARTITION).unwrap()
    }

    /// The whole input merged in log order: what every replica must hold.
    fn reference(&self) -> BTreeMap<String, ObjectState> {
        let mut objects = BTreeMap::new();
        read_to_end(self.input.as_ref(), PARTITION, 0, |rec| {
            let alert = self.decoder.decode(&rec.payload).unwrap();
            let state = objects.entry(alert.key.clone()).or_insert_with(|| new_state(&alert));
            let source = AlertSource { topic: self.input.name().to_owned(), partition: PARTITION, offset: rec.offset };
            merge(state, &alert, source, rec.timestamp_ms);
            Ok(())
        })
        .unwrap();
        objects
    }

    /// Every changelog record, decoded, with its offset.
    fn changelog_records(&self) -> Vec<(u64, ChangelogEntry)> {
        let mut out = Vec::new();
        read_to_end(self.changelog.as_ref(), PARTITION, 0, |rec| {
            out.push((rec.offset, ChangelogEntry::decode(&rec.payload).unwrap()));
            Ok(())
        })
        .unwrap();
        out
    }

    /// A replica restored cold from the whole changelog; returns its store and the records the
    /// fence refused.
    fn cold_restore(&self) -> (TempDir, RocksStore, u64) {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let mut applier = Applier::new(PARTITION, Default::default());
        read_to_end(self.changelog.as_ref(), PARTITION, 0, |rec| {
            applier.stage(&rec).unwrap();
            Ok(())
        })
        .unwrap();
        let fenced = applier.flush(&store).unwrap().fenced;
        (dir, store, fenced)
    }
}

struct Node {
    name: String,
    store: Arc<RocksStore>,
    changelog: Arc<Gated>,
    hub: Arc<Hub>,
    handle: ReplicaHandle,
    thread: Option<JoinHandle<()>>,
    cancel: CancellationToken,
    metrics: PartitionMetrics,
    _dir: TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.cancel.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Node {
    fn role(&self) -> Role {
        self.handle.status.role()
    }
    fn ready(&self) -> bool {
        self.handle.status.ready.load(Ordering::Acquire)
    }
    fn epoch(&self) -> u64 {
        self.handle.status.epoch.load(Ordering::Relaxed)
    }
    fn input_next(&self) -> u64 {
        self.handle.status.input_next.load(Ordering::Relaxed)
    }
    fn changelog_next(&self) -> u64 {
        self.handle.status.changelog_next.load(Ordering::Relaxed)
    }

    fn wait_serving_master(&self, epoch: u64) {
        wait_until(&format!("{} to serve as master of epoch {epoch}", self.name), || {
            self.handle.status.is_serving_master() && self.epoch() == epoch
        });
    }

    fn wait_standby(&self) {
        wait_until(&format!("{} to be a ready standby", self.name), || self.ready() && self.role() == Role::Standby);
    }

    fn wait_caught_up(&self, cluster: &Cluster) {
        wait_until(&format!("{} to apply the whole changelog", self.name), || {
            self.changelog_next() == cluster.changelog_end()
        });
    }

    fn send_promote(&self, through: Option<u64>) -> oneshot::Receiver<Result<Promoted, CommandError>> {
        let (reply, rx) = oneshot::channel();
        self.handle.send(Command::Promote { through, reply }).unwrap();
        rx
    }

    fn drain(&self) -> Result<Drained, CommandError> {
        let (reply, rx) = oneshot::channel();
        self.handle.send(Command::Drain { reply }).unwrap();
        answer(&self.name, rx)
    }

    fn assert_holds(&self, reference: &BTreeMap<String, ObjectState>) {
        assert_store_holds(&self.name, self.store.as_ref(), reference);
    }
}

fn answer<T>(who: &str, mut rx: oneshot::Receiver<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(oneshot::error::TryRecvError::Empty) => {
                assert!(Instant::now() < deadline, "{who} did not answer its command");
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(oneshot::error::TryRecvError::Closed) => panic!("{who}'s replica stopped"),
        }
    }
}

fn assert_store_holds(who: &str, store: &dyn StateStore, reference: &BTreeMap<String, ObjectState>) {
    for (key, expected) in reference {
        let got = store.get(key).unwrap();
        assert_eq!(got.as_ref(), Some(expected), "{who}: object {key} differs from the reference merge");
    }
}

/// Splits the packets into three feeds.
fn thirds(packets: &[Vec<u8>]) -> [&[Vec<u8>]; 3] {
    let n = packets.len() / 3;
    [&packets[..n], &packets[n..2 * n], &packets[2 * n..]]
}

/// Starts `a` as the first master and the others as standbys, and feeds `first`, applied
/// everywhere.
fn bring_up(cluster: &Cluster, names: &[&str], first: &[Vec<u8>]) -> Vec<Node> {
    let nodes: Vec<Node> = names.iter().enumerate().map(|(i, n)| cluster.start(n, i == 0, names)).collect();
    nodes[0].wait_serving_master(1);
    for n in &nodes[1..] {
        n.wait_standby();
    }
    cluster.feed(first);
    wait_until("the master to consume the first feed", || nodes[0].input_next() == cluster.input_end());
    for n in &nodes {
        n.wait_caught_up(cluster);
    }
    nodes
}

/// The newest admitted epoch marker's offset and node for `epoch` (the first in the log).
fn first_marker(records: &[(u64, ChangelogEntry)], epoch: u64) -> Option<(u64, String)> {
    records.iter().find_map(|(o, e)| match e {
        ChangelogEntry::EpochStart { epoch: e, node, .. } if *e == epoch => Some((*o, node.clone())),
        _ => None,
    })
}

#[test]
fn a_master_deposed_mid_append_is_fenced_and_steps_down_without_losing_input() {
    let cluster = Cluster::new();
    let packets = packets();
    let [first, second, third] = thirds(&packets);
    let nodes = bring_up(&cluster, &["a", "b"], first);
    let (a, b) = (&nodes[0], &nodes[1]);

    // A is mid-batch: it has merged part of the second feed and is about to append it.
    let held = a.changelog.hold_next_append();
    cluster.feed(second);
    held.wait_entered("a");

    // B is promoted over it (a failover: A is not drained).
    let promoted = answer("b", b.send_promote(None)).expect("b's promotion");
    assert_eq!((promoted.epoch, promoted.changed, promoted.previous_master.as_str()), (2, true, "a"));
    // A's append now lands after B's marker.
    held.release.send(()).unwrap();

    a.wait_standby();
    b.wait_serving_master(2);
    cluster.feed(third);
    wait_until("b to consume the whole input", || b.input_next() == cluster.input_end());
    a.wait_caught_up(&cluster);
    b.wait_caught_up(&cluster);

    let records = cluster.changelog_records();
    let (marker, node) = first_marker(&records, 2).expect("b's epoch marker");
    assert_eq!(node, "b");
    // Every record a appended after b's marker: its changes and the statistics of its batch.
    let late = records
        .iter()
        .filter(|(o, e)| *o > marker && e.epoch() == 1 && !matches!(e, ChangelogEntry::EpochStart { .. }))
        .count() as u64;
    assert!(late > 0, "a's held append should have landed after b's marker");

    let reference = cluster.reference();
    a.assert_holds(&reference);
    b.assert_holds(&reference);
    let (_dir, cold, fenced) = cluster.cold_restore();
    assert_eq!(fenced, late, "a cold replay must refuse exactly a's late records");
    assert_store_holds("cold replay", &cold, &reference);
    for n in [a, b] {
        let p = n.store.progress(PARTITION).unwrap();
        assert_eq!((p.epoch, p.master.as_str()), (2, "b"), "{}'s stored progress", n.name);
    }
}

#[test]
fn a_drain_then_a_promotion_through_the_drained_end_loses_and_duplicates_nothing() {
    let cluster = Cluster::new();
    let packets = packets();
    let [first, second, third] = thirds(&packets);
    let nodes = bring_up(&cluster, &["a", "b"], first);
    let (a, b) = (&nodes[0], &nodes[1]);

    let drained = a.drain().expect("a drains");
    assert_eq!(drained.epoch, 1);
    assert_eq!(a.role(), Role::Standby, "a drained master is a standby at once");
    assert!(matches!(b.drain(), Err(CommandError::NotMaster { .. })), "only a master drains");

    // Input arriving during the handover waits for the new master.
    cluster.feed(second);
    let promoted = answer("b", b.send_promote(Some(drained.changelog_next))).expect("b's promotion");
    assert_eq!(promoted.epoch, 2);
    assert_eq!(promoted.marker_offset, drained.changelog_next, "nothing was written between drain and marker");
    assert!(promoted.input_next <= drained.input_next);
    b.wait_serving_master(2);
    cluster.feed(third);
    wait_until("b to consume the whole input", || b.input_next() == cluster.input_end());
    a.wait_caught_up(&cluster);
    b.wait_caught_up(&cluster);

    let reference = cluster.reference();
    a.assert_holds(&reference);
    b.assert_holds(&reference);
    let records = cluster.changelog_records();
    let mut versions = HashSet::new();
    for (offset, e) in &records {
        if let ChangelogEntry::Change(c) = e {
            assert!(versions.insert((c.state.key.clone(), c.state.version)), "duplicate change at {offset}");
        }
    }
    let applied: u64 = reference.values().map(|s| s.version).sum();
    assert_eq!(versions.len() as u64, applied, "one changelog record per applied alert");
    let (_dir, cold, fenced) = cluster.cold_restore();
    assert_eq!(fenced, 0);
    assert_store_holds("cold replay", &cold, &reference);
}

/// Every (object, version) in the changelog once, and one change per applied alert.
fn assert_each_version_logged_once(cluster: &Cluster, reference: &BTreeMap<String, ObjectState>) {
    let mut versions = HashSet::new();
    for (offset, e) in &cluster.changelog_records() {
        if let ChangelogEntry::Change(c) = e {
            assert!(
                versions.insert((c.state.key.clone(), c.state.version)),
                "changelog offset {offset}: {} version {} appended twice",
                c.state.key,
                c.state.version
            );
        }
    }
    let applied: u64 = reference.values().map(|s| s.version).sum();
    assert_eq!(versions.len() as u64, applied, "one changelog record per applied alert");
}

#[test]
fn a_batch_whose_append_landed_although_it_failed_is_not_appended_twice() {
    for misreport in [Misreport::Timeout, Misreport::OffsetsUnknown, Misreport::NumberedFromMinusOne] {
        let cluster = Cluster::new();
        let packets = packets();
        let [first, second, third] = thirds(&packets);
        let nodes = bring_up(&cluster, &["a", "b"], first);
        let (a, b) = (&nodes[0], &nodes[1]);
        let from = cluster.changelog_end();
        let mut feeds = [a.hub.follow(PARTITION), b.hub.follow(PARTITION)];

        // A's next batch lands in the changelog, and a is told otherwise.
        *a.changelog.misreport_next.lock().unwrap() = Some(misreport);
        cluster.feed(second);
        wait_until("a to consume the second feed", || a.input_next() == cluster.input_end());
        cluster.feed(third);
        wait_until("a to consume the whole input", || a.input_next() == cluster.input_end());
        a.wait_caught_up(&cluster);
        b.wait_caught_up(&cluster);
        assert!(a.changelog.misreport_next.lock().unwrap().is_none(), "{misreport:?} was injected");

        let reference = cluster.reference();
        assert_each_version_logged_once(&cluster, &reference);
        a.assert_holds(&reference);
        b.assert_holds(&reference);
        let p = a.store.progress(PARTITION).unwrap();
        assert_eq!(p.changelog_next, cluster.changelog_end(), "{misreport:?}: a's stored changelog position");
        // Both nodes' feeds carry every change after `from` exactly once, at increasing offsets.
        for (who, feed) in ["a", "b"].iter().zip(&mut feeds) {
            let (mut seen, mut last) = (HashSet::new(), None);
            while let Ok(batch) = feed.try_recv() {
                for item in batch.iter() {
                    assert!(item.offset >= from, "{misreport:?}: {who}'s feed went back to offset {}", item.offset);
                    assert!(last < Some(item.offset), "{misreport:?}: {who}'s feed offsets do not increase");
                    last = Some(item.offset);
                    let key = (item.update.summary.key.clone(), item.update.version);
                    assert!(seen.insert(key.clone()), "{misreport:?}: {who} published {key:?} twice");
                }
            }
            let changes_after = cluster
                .changelog_records()
                .iter()
                .filter(|(o, e)| *o >= from && matches!(e, ChangelogEntry::Change(_)))
                .count();
            assert_eq!(seen.len(), changes_after, "{misreport:?}: {who}'s feed has every change once");
        }
        let (_dir, cold, _) = cluster.cold_restore();
        assert_store_holds("cold replay", &cold, &reference);
    }
}

#[test]
fn of_two_racing_promotions_exactly_one_takes_the_epoch() {
    let cluster = Cluster::new();
    let packets = packets();
    let [first, second, third] = thirds(&packets);
    let nodes = bring_up(&cluster, &["a", "b", "c"], first);
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);

    // Both standbys read the log to its end and pick epoch 2 before either marker is written.
    let held_b = b.changelog.hold_next_append();
    let held_c = c.changelog.hold_next_append();
    let reply_b = b.send_promote(None);
    let reply_c = c.send_promote(None);
    held_b.wait_entered("b");
    held_c.wait_entered("c");
    held_b.release.send(()).unwrap();
    held_c.release.send(()).unwrap();
    let results = [("b", answer("b", reply_b)), ("c", answer("c", reply_c))];

    let records = cluster.changelog_records();
    let (_, winner) = first_marker(&records, 2).expect("an epoch-2 marker");
    let markers = records.iter().filter(|(_, e)| matches!(e, ChangelogEntry::EpochStart { epoch: 2, .. })).count();
    assert_eq!(markers, 2, "both promotions appended a marker for epoch 2");
    for (name, result) in &results {
        if *name == winner {
            let p = result.as_ref().expect("the first marker's promotion succeeds");
            assert_eq!((p.epoch, p.changed), (2, true));
        } else {
            match result {
                Err(CommandError::PromotionFailed(WorkerError::Promotion(PromotionError::EpochTaken {
                    epoch: 2,
                    winner: w,
                }))) => assert_eq!(w, &winner),
                other => panic!("{name}: expected the epoch to be taken by {winner}, got {other:?}"),
            }
        }
    }
    let (master, others): (Vec<&Node>, Vec<&Node>) = [a, b, c].into_iter().partition(|n| n.name == winner);
    master[0].wait_serving_master(2);
    for n in &others {
        n.wait_standby();
    }

    cluster.feed(second);
    cluster.feed(third);
    wait_until("the winner to consume the whole input", || master[0].input_next() == cluster.input_end());
    let reference = cluster.reference();
    for n in [a, b, c] {
        n.wait_caught_up(&cluster);
        n.assert_holds(&reference);
        let p = n.store.progress(PARTITION).unwrap();
        assert_eq!((p.epoch, p.master.as_str()), (2, winner.as_str()), "{}'s stored progress", n.name);
    }
    let (_dir, cold, fenced) = cluster.cold_restore();
    assert_eq!(fenced, 1, "the losing marker is the one record the fence refuses");
    assert_store_holds("cold replay", &cold, &reference);
}

/// A replica thread that panics (here: inside its changelog append, mid-batch) is restarted
/// from its stored progress, counted, and loses nothing: it comes back as master (the log still
/// names it), in a new epoch, and materializes the whole input like the reference merge.
#[test]
fn a_panicking_replica_is_restarted_counted_and_loses_nothing() {
    let cluster = Cluster::new();
    let packets = packets();
    let [first, second, third] = thirds(&packets);
    let nodes = bring_up(&cluster, &["a", "b"], first);
    let (a, b) = (&nodes[0], &nodes[1]);
    a.changelog.panic_next.store(true, Ordering::Release);
    cluster.feed(second);
    wait_until("a's replica to panic and be counted", || {
        a.metrics.worker_panics.get_or_create(&lightkeeper_partition::metrics::partition_label(PARTITION)).get() == 1
    });
    a.wait_serving_master(2);
    cluster.feed(third);
    wait_until("a to consume the whole input", || a.input_next() == cluster.input_end());
    a.wait_caught_up(&cluster);
    b.wait_caught_up(&cluster);
    let reference = cluster.reference();
    a.assert_holds(&reference);
    b.assert_holds(&reference);
    assert!(a.handle.status.answers_as_master(), "the restarted master holds its read lease");
}

/// A master promoted by failover holds its input for the read lease (the old master may be
/// paused, not dead, and may still answer reads as master until its lease runs out), while one
/// promoted by a handover, whose old master drained and gave its lease up, holds one at once.
#[test]
fn a_failover_waits_out_the_read_lease_before_taking_input() {
    let cluster = Cluster::new();
    let packets = packets();
    let [first, second, third] = thirds(&packets);
    let nodes = bring_up(&cluster, &["a", "b"], first);
    let (a, b) = (&nodes[0], &nodes[1]);
    assert!(a.handle.status.answers_as_master());
    assert!(!b.handle.status.answers_as_master(), "a standby never answers as master");

    cluster.feed(second);
    let asked = Instant::now();
    answer("b", b.send_promote(None)).expect("b's promotion");
    wait_until("b to take input", || b.input_next() == cluster.input_end());
    let took = asked.elapsed();
    assert!(took >= READ_LEASE, "b took input {took:?} after a failover promotion, inside the lease of {READ_LEASE:?}");
    // a finds b's marker and steps down, giving its lease up.
    a.wait_standby();
    assert!(!a.handle.status.answers_as_master());
    assert!(a.handle.status.lease_left().is_zero());
    a.wait_caught_up(&cluster);

    // Handover back (drain, then promote through the drained end): a holds its lease at once.
    let drained = b.drain().expect("b drains");
    assert!(!b.handle.status.answers_as_master(), "a drained master gives its lease up");
    cluster.feed(third);
    answer("a", a.send_promote(Some(drained.changelog_next))).expect("a's promotion");
    assert!(!a.handle.status.lease_left().is_zero(), "a handover's new master holds its lease at once");
    wait_until("a to take input", || a.input_next() == cluster.input_end());
    b.wait_caught_up(&cluster);
    let reference = cluster.reference();
    a.assert_holds(&reference);
    b.assert_holds(&reference);
}
