//! Broker outages (issue 14, part 2), each for 30 s under load, on a broker of the test's own
//! (the shared broker is never stopped):
//!
//! - the broker hangs (SIGSTOP, then SIGCONT; the memory engine keeps its data): every
//!   connection stays open and no request is answered, the harder case for clients;
//! - the broker dies and is started again (SIGKILL, then a new process on the same address
//!   and storage: nisshi's durable PostgreSQL engine).
//!
//! Either way the node keeps serving reads, marked `x-lightkeeper-stale` — single objects and
//! scattered queries (a cone search) alike; `/readyz` says which partitions cannot reach their
//! logs and why; the node does not spin; and when the broker is back, ingest resumes by itself
//! and every alert is materialized, equal to the independent reference — nothing lost.

use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::Cluster;
use lightkeeper_tests::kafka::{DurableBroker, OwnBroker};
use lightkeeper_tests::load::{cluster_input_next, finish, producer_on, wait_cluster_input, Workload};
use lightkeeper_tests::*;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(120);
const OUTAGE: Duration = Duration::from_secs(30);

/// The two outages run one after the other: each is a node under load on two cores, and the
/// CPU figure of one must not be the other's.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// User + system CPU time of process `pid` so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

async fn degraded(http: &reqwest::Client, url: &str) -> Option<Vec<String>> {
    let r = http.get(format!("{url}/readyz")).send().await.ok()?;
    if !r.status().is_success() {
        return None;
    }
    let ready: serde_json::Value = r.json().await.ok()?;
    Some(ready["degraded"].as_array()?.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
}

/// How a test takes its broker away and brings it back.
trait Outage {
    fn bootstrap(&self) -> String;
    fn begin(&mut self);
    fn end(&mut self);
}

impl Outage for OwnBroker {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }
    fn begin(&mut self) {
        self.signal(libc::SIGSTOP);
    }
    fn end(&mut self) {
        self.signal(libc::SIGCONT);
    }
}

impl Outage for DurableBroker {
    fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }
    fn begin(&mut self) {
        self.kill();
    }
    fn end(&mut self) {
        self.restart();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hung_broker_under_load_keeps_reads_served_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let broker = OwnBroker::start(&tmp.path().join("broker.log"));
    outage_under_load(broker, tmp.path(), 4_000_000_000_000_000_000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_durable_broker_killed_and_restarted_under_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let tmp = tempfile::tempdir().unwrap();
    let broker = tokio::task::block_in_place(|| DurableBroker::start(&tmp.path().join("broker.log"))).unwrap();
    outage_under_load(broker, tmp.path(), 4_100_000_000_000_000_000).await;
}

async fn outage_under_load(mut broker: impl Outage, dir: &std::path::Path, candid_base: i64) {
    let bootstrap = broker.bootstrap();
    let mut c = Cluster::new("outage", &["a"], 2, dir);
    c.bootstrap = Some(bootstrap.clone());
    let w = Workload::new(&dir.join("synthetic"), 900, 3, candid_base);
    let nodes = c.start_all(WAIT).await;
    let urls = c.urls();
    let url = urls[0].clone();
    finish(producer_on(&bootstrap, &c.topics.input, &w.real, None)).await;
    wait_cluster_input(&urls, w.real.len() as u64, WAIT).await;
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    assert_eq!(degraded(&http, &url).await, Some(Vec::new()), "nothing is degraded before the outage");
    let cone = format!("{url}/v1/cone?ra=0&dec=0&radius_arcsec=3600&limit=5");
    let fresh = http.get(&cone).send().await.unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(!fresh.headers().contains_key("x-lightkeeper-stale"), "a cone search is fresh before the outage");

    // Load: 50 alerts/s for 18 s of producing, which the outage interrupts.
    let produce = producer_on(&bootstrap, &c.topics.input, &w.synthetic, Some(50));
    eventually(WAIT, "the stream to be flowing", || async {
        (cluster_input_next(&urls).await > w.real.len() as u64 + 50).then_some(())
    })
    .await
    .unwrap();

    tokio::task::block_in_place(|| broker.begin());
    let stopped = Instant::now();
    let why = eventually(WAIT, "/readyz to say both partitions' logs cannot be reached", || async {
        degraded(&http, &url).await.filter(|d| d.len() == 2)
    })
    .await
    .unwrap();
    eprintln!("{} ms after the broker stopped, /readyz: {why:?}", stopped.elapsed().as_millis());
    // Until its read lease runs out (500 ms) a master answers as it did; then, unable to renew
    // it, it answers marked stale.
    eventually(WAIT, "a cone search to be marked stale for both partitions", || async {
        let r = http.get(&cone).send().await.ok()?;
        let marked = r.headers().get("x-lightkeeper-stale")?.to_str().ok()?.to_owned();
        marked.starts_with("partitions [0, 1]:").then_some(())
    })
    .await
    .unwrap();

    let pid = nodes[0].child.id();
    let (cpu_before, wall_before) = (cpu_time(pid), Instant::now());
    let keys = w.real_keys();
    let (mut reads, mut stale, mut cones) = (0u64, 0u64, 0u64);
    while stopped.elapsed() < OUTAGE {
        for key in keys.iter().take(5) {
            let r = http.get(format!("{url}/v1/objects/{key}")).send().await.unwrap();
            assert_eq!(r.status(), 200, "a read during the outage: {:?}", r.text().await);
            stale += u64::from(r.headers().contains_key("x-lightkeeper-stale"));
            reads += 1;
        }
        // A scattered query: every partition's master is cut off, so the answer says so.
        let r = http.get(&cone).send().await.unwrap();
        assert_eq!(r.status(), 200, "a cone search during the outage: {:?}", r.text().await);
        let marked = r.headers().get("x-lightkeeper-stale").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let marked = marked.unwrap_or_else(|| panic!("a cone search during the outage is marked stale"));
        assert!(marked.starts_with("partitions [0, 1]:"), "the stale mark names the partitions: {marked}");
        cones += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cpu = cpu_time(pid) - cpu_before;
    let wall = wall_before.elapsed();
    eprintln!(
        "during the outage: {reads} reads, {stale} marked stale, {cones} cone searches; node CPU {cpu:?} in {wall:?}"
    );
    assert!(stale > 0 && stale == reads, "every read during the outage is marked stale ({stale} of {reads})");
    assert!(cpu < wall / 4, "the node must not spin while the broker is down: {cpu:?} of CPU in {wall:?}");

    tokio::task::block_in_place(|| broker.end());
    let resumed = Instant::now();
    finish(produce).await;
    wait_cluster_input(&urls, w.total(), WAIT).await;
    eprintln!("all input materialized {} ms after the broker returned", resumed.elapsed().as_millis());
    eventually(WAIT, "/readyz to be clean again", || async { degraded(&http, &url).await.filter(|d| d.is_empty()) })
        .await
        .unwrap();
    let client = Client::new(&url).unwrap();
    reference::check(&client, &w.reference, "").await.unwrap();
    let r = http.get(format!("{url}/v1/objects/{}", keys[0])).send().await.unwrap();
    assert!(!r.headers().contains_key("x-lightkeeper-stale"), "fresh again after the outage");
    let r = http.get(&cone).send().await.unwrap();
    assert!(!r.headers().contains_key("x-lightkeeper-stale"), "cone searches fresh again after the outage");
}
