//! `bench find`: finding objects without knowing their key, on one node holding N objects (one
//! alert each, positions uniform over the sphere, default 1,000,000) in P partitions. Open-loop
//! `GET /v1/cone` of radius 2″, 1′ and 1° at R requests/s for S seconds each, a new random
//! centre every request, plus 2″ cones centred on existing objects (a crossmatch, which finds
//! something); p50, p99, max and the mean number of objects per answer. Then a `where` query
//! (`mag_g < 18.5 and n_detections >= 1`, first 100) ordered by `last_mjd desc` (the recency
//! index) and by key (the summaries in key order).
//!
//! Baseline: the same 1′ cones answered without the sky index, in the same run, on the same
//! objects and centres — `GET /v1/objects` with a box on ra/dec around the centre, ordered by
//! `ra`, which no index serves, so every partition decodes and tests every summary. That is what
//! a store without a spatial index does; the ratio of the p99s is what the HEALPix index buys.
//! Before anything is timed, a few 1° boxes are checked against 1° cones (the same objects once
//! exact distances are applied), so that both answer the same question.
//!
//! Rates: open-loop latency of a saturated server measures its queue, not the query. Each case
//! first times a few requests one at a time ("alone", the median of 11), then runs at R or at
//! half of what one request at a time sustains, whichever is less (a partitioned query can keep
//! every core busy, so that is at most half the machine); the report gives each case's rate.
//! That slows the full scan (seconds of CPU at a million objects), which also runs a fixed
//! number of requests.
//!
//! Latency runs from each request's scheduled start (no coordinated omission), as in
//! [`query`](crate::query), whose floor is measured here too: `GET /healthz` at the same rate,
//! first, is what HTTP and the load generator (on the same cores as the node) cost by
//! themselves. Where the time goes, per case: the node's own mean time per request of that
//! route and the bucket of its p99 (`lightkeeper_http_request_seconds`, diffed around the case);
//! that mean times the rate, the cores its handlers kept busy; and the CPU the node, the load
//! generator and everything else on the machine used during the case (`/proc`), since other
//! work on a shared machine shows in the tails. The cases start once the node's CPU has settled
//! after loading (RocksDB flushes and compactions), and the report says how long that took.
//!
//! Alerts are real ZTF candidates made lean ([`lean`]: no history, no cutouts, the schema in
//! canonical form, ~5 kB instead of ~60 kB) because the test broker keeps every byte in memory
//! and a million real-size alerts would not fit; the summaries, and so the indexes and what a
//! query reads, are those of the real candidates. Also reported: how fast the objects were
//! produced and materialized, the node's RSS and the store's size on disk once they are in.

use crate::common::{drop_topics, machine};
use crate::stats::{percentile, sorted};
use lightkeeper_clients::api::query::{ConeAnswer, ObjectsPage};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::{KafkaConfig, KafkaTopic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::{lean, load_templates, object_id, reissue_at, Template};
use lightkeeper_tests::{broker, consumed, shared_data, NodeProcess};
use std::collections::BTreeSet;
use std::ops::Range;
use std::path::Path;
use std::time::{Duration, Instant};

/// Candids of this benchmark's alerts start here (other benchmarks use other ranges).
const CANDID_BASE: i64 = 5_000_000_000_000_000_000;
/// Seeds of the object positions and of each case's centres: every run asks the same questions.
const OBJECT_SEED: u64 = 0x5eed_0b1e_c750_0001;
const CENTRE_SEED: u64 = 0x5eed_ce47_7e50_0002;
/// The filter of the `where` cases.
const WHERE: &str = "mag_g < 18.5 and n_detections >= 1";
/// Sequential requests timed before each case's open-loop run (their median caps its rate).
const PROBES: usize = 11;
/// A case runs at `--rate`, or at this share of what one request at a time sustains if that is
/// less: open-loop latency of a saturated server measures its queue, not the query.
const SHARE_ALONE: f64 = 0.5;
/// The node is idle (settled after loading) below this much CPU; polling its input takes ~0.1.
const IDLE_CORES: f64 = 0.2;
/// The longest wait for the node to settle after loading.
const SETTLE_MAX: Duration = Duration::from_secs(240);
/// The baseline's name in the report.
const BASELINE: &str = "full scan: 1′ box on ra/dec, order=ra (baseline)";
/// A node that materializes nothing for this long has failed the run.
const STALLED: Duration = Duration::from_secs(120);
/// 1° cones checked against 1° boxes before anything is timed.
const CHECKS: usize = 3;

/// What `bench find` asks (its command-line arguments).
#[derive(Debug, Clone, Copy)]
pub struct Params {
    pub objects: usize,
    pub rate: u64,
    pub seconds: u64,
    pub scan_rate: Option<f64>,
    pub scan_requests: usize,
    pub partitions: u32,
}

pub async fn run(params: Params) -> anyhow::Result<()> {
    let Params { objects, rate, seconds, scan_requests, .. } = params;
    anyhow::ensure!(objects > 0 && rate > 0 && seconds > 0 && scan_requests > 0, "every count must be positive");
    let bootstrap = broker();
    let topics = TopicSet::unique("bench-find");
    let kafka = KafkaConfig::new(&bootstrap);
    let outcome = measure(&bootstrap, &kafka, &topics, params).await;
    // The test broker keeps every topic in memory: they go whether or not the run succeeded.
    drop_topics(&kafka, &topics).await?;
    outcome
}

async fn measure(bootstrap: &str, kafka: &KafkaConfig, topics: &TopicSet, params: Params) -> anyhow::Result<()> {
    let Params { objects, rate, seconds, scan_rate, scan_requests, partitions } = params;
    let (produced_bytes, produce_time) = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || load_sky(&kafka, &topics, objects, partitions)).await??
    };

    // One node materializes them all.
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let node = NodeProcess::start(&tmp.path().join("node"), &["--kafka", bootstrap], &topics.env())?;
    node.wait_ready(Duration::from_secs(120)).await?;
    let ready = started.elapsed();
    let client = Client::new(&node.url)?;
    let (mut last_print, mut last_done, mut progressed) = (Instant::now(), 0usize, Instant::now());
    loop {
        let done = consumed(&client).await.unwrap_or(0) as usize;
        if done >= objects {
            break;
        }
        if done > last_done {
            (last_done, progressed) = (done, Instant::now());
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            let rate = done as f64 / (started.elapsed() - ready).as_secs_f64();
            eprint!("\rnode: {done}/{objects} materialized ({rate:.0} alerts/s)   ");
            last_print = Instant::now();
        }
        if progressed.elapsed() > STALLED {
            let stderr = node.stderr();
            let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
            anyhow::bail!(
                "the node materialized nothing for {STALLED:?} ({done}/{objects}); the end of its log:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let materialize = started.elapsed() - ready;
    eprintln!("\rnode: {objects} materialized in {:.1} s                              ", materialize.as_secs_f64());
    let rss_kib = proc_status_kib(node.child.id(), "VmRSS");
    let hwm_kib = proc_status_kib(node.child.id(), "VmHWM");
    let settle = quiesce(node.child.id()).await;
    let disk = dir_bytes(&node.data_dir);

    // The baseline answers the same question as the cone.
    let mut rng = SplitMix(CENTRE_SEED);
    let mut checked = 0usize;
    for _ in 0..CHECKS {
        let (ra, dec) = rng.sky();
        checked += check_box_against_cone(&node.url, ra, dec).await?;
    }
    eprintln!("baseline check: {CHECKS} 1° boxes = 1° cones ({checked} objects)");

    // The cases, each with its own centres.
    let n = (rate * seconds) as usize;
    let cone = |case: u64, radius: f64| -> Vec<String> {
        let mut rng = SplitMix(CENTRE_SEED ^ case);
        (0..n).map(|_| cone_url(&node.url, rng.sky(), radius)).collect()
    };
    let crossmatch: Vec<String> = {
        let mut rng = SplitMix(CENTRE_SEED ^ 4);
        (0..n).map(|_| cone_url(&node.url, sky_position(rng.below(objects)), 2.0)).collect()
    };
    let where_url = |order: Option<&str>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("where", WHERE);
        if let Some(o) = order {
            q.append_pair("order", o);
        }
        q.append_pair("limit", "100");
        format!("{}/v1/objects?{}", node.url, q.finish())
    };
    let scans: Vec<String> = {
        // The first centres of the 1′ cone case.
        let mut rng = SplitMix(CENTRE_SEED ^ 2);
        (0..scan_requests).map(|_| scan_url(&node.url, rng.sky(), 60.0)).collect()
    };
    let cases = vec![
        Case::new(
            "GET /healthz (floor: HTTP and the load generator)",
            "/healthz",
            vec![format!("{}/healthz", node.url); n],
        ),
        Case::new("cone 2″, random centres", "/v1/cone", cone(1, 2.0)),
        Case::new("cone 2″ on an existing object (crossmatch)", "/v1/cone", crossmatch),
        Case::new("cone 1′, random centres", "/v1/cone", cone(2, 60.0)),
        Case::new("cone 1°, random centres", "/v1/cone", cone(3, 3600.0)),
        Case { requests: Some(scan_requests), rate: scan_rate, ..Case::new(BASELINE, "/v1/objects", scans) },
        Case::new(
            &format!("where {WHERE}, order=last_mjd desc, limit 100"),
            "/v1/objects",
            vec![where_url(Some("last_mjd desc")); n],
        ),
        Case::new(&format!("where {WHERE}, key order, limit 100"), "/v1/objects", vec![where_url(None); n]),
    ];
    let load_before = load_average();
    let mut results = Vec::new();
    for case in cases {
        // One request at a time first: what the query costs alone, and the rate it can take.
        let mut alone = Vec::new();
        for url in case.urls.iter().take(PROBES) {
            let t = Instant::now();
            reqwest::get(url).await?.error_for_status()?.bytes().await?;
            alone.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let alone_ms = percentile(&sorted(alone), 0.5);
        let r = case.rate.unwrap_or((rate as f64).min(SHARE_ALONE * 1000.0 / alone_ms));
        let count = case.requests.unwrap_or((r * seconds as f64).round() as usize).clamp(1, case.urls.len());
        let mut urls = case.urls;
        urls.truncate(count);
        eprintln!("{}: alone {alone_ms:.2} ms; {count} requests at {r:.2}/s", case.name);
        let before = (server_time(&node.url, case.route).await?, Cpu::now(node.child.id()));
        let res = load(urls, r).await;
        let after = (server_time(&node.url, case.route).await?, Cpu::now(node.child.id()));
        if let Some(e) = &res.first_error {
            eprintln!("  {} errors, the first: {e}", res.errors);
        }
        results.push(Outcome {
            name: case.name,
            rate: r,
            alone_ms,
            server_mean_ms: before.0.mean_ms(&after.0),
            server_p99_ms: before.0.quantile_bound_ms(&after.0, 0.99),
            cpu: before.1.cores_until(&after.1),
            res,
        });
    }
    let load_after = load_average();
    drop(node);

    println!(
        "## find: {objects} objects (one lean ZTF alert each, uniform over the sky), {partitions} partitions, \
         one node — {}",
        machine()
    );
    println!(
        "Loaded: produced {:.0} MB (mean {} B/alert) at {:.0} alerts/s; the node materialized them at {:.0} alerts/s \
         ({:.1} s after ready; RSS then {} MiB, peak {} MiB); its background work (flushes, compactions) went on \
         for {:.0} s more{}; store {:.0} MiB on disk.",
        produced_bytes as f64 / 1e6,
        produced_bytes / objects,
        objects as f64 / produce_time.as_secs_f64(),
        objects as f64 / materialize.as_secs_f64(),
        materialize.as_secs_f64(),
        rss_kib / 1024,
        hwm_kib / 1024,
        settle.0.as_secs_f64(),
        if settle.1 { "" } else { " (still not idle: measured anyway)" },
        disk as f64 / (1 << 20) as f64
    );
    println!(
        "Open loop, {seconds} s per case at {rate} req/s, or at {:.0} % of what one request at a time sustains \
         when that is less (the baseline: {scan_requests} requests); cones with limit=10000. \
         Load average {load_before} before the cases, {load_after} after.\n",
        SHARE_ALONE * 100.0
    );
    println!(
        "| case | req/s | sent | errors | mean objects | mean KiB | alone ms | p50 ms | p99 ms | max ms \
         | node mean ms | node p99 ms | node busy | CPU cores: node / load generator / rest of machine |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in &results {
        println!(
            "| {} | {:.2} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | ≤ {:.2} | {:.2} \
             | {:.2} / {:.2} / {:.2} |",
            o.name,
            o.rate,
            o.res.sent,
            o.res.errors,
            o.res.mean_objects(),
            o.res.mean_bytes() / 1024.0,
            o.alone_ms,
            o.res.p(0.5),
            o.res.p(0.99),
            o.res.p(1.0),
            o.server_mean_ms,
            o.server_p99_ms,
            o.rate * o.server_mean_ms / 1000.0,
            o.cpu.0,
            o.cpu.1,
            o.cpu.2
        );
    }
    let (floor, cone_1, scan) = (&results[0], &results[3], &results[5]);
    println!("\n| measure | value |\n|---|---|");
    println!(
        "| ratio p99 cone 1′ / full scan | {:.5} (the scan {:.0}× slower, at {:.2} req/s against {:.0}) |",
        cone_1.res.p(0.99) / scan.res.p(0.99),
        scan.res.p(0.99) / cone_1.res.p(0.99),
        scan.rate,
        cone_1.rate
    );
    println!(
        "| ratio alone cone 1′ / full scan | {:.5} (the scan {:.0}× slower) |",
        cone_1.alone_ms / scan.alone_ms,
        scan.alone_ms / cone_1.alone_ms
    );
    println!(
        "| ratio p99 cone 1′ / healthz (what the query adds to the floor) | {:.2} |",
        cone_1.res.p(0.99) / floor.res.p(0.99)
    );
    println!(
        "| target: cone 1′ p99 < 5 ms | {} ({:.2} ms) |",
        if cone_1.res.p(0.99) < 5.0 { "met" } else { "missed" },
        cone_1.res.p(0.99)
    );
    println!("| check: 1° boxes = 1° cones | {CHECKS} centres, {checked} objects, same keys |");
    Ok(())
}

/// One open-loop run: what it is called, the route whose node-side time is reported, the
/// requests in order; the rate and count if they are not the usual ones.
struct Case {
    name: String,
    route: &'static str,
    urls: Vec<String>,
    /// Requests/s, instead of `--rate` capped by what one request alone sustains.
    rate: Option<f64>,
    /// How many requests, instead of the rate times `--seconds`.
    requests: Option<usize>,
}

impl Case {
    fn new(name: &str, route: &'static str, urls: Vec<String>) -> Case {
        Case { name: name.to_owned(), route, urls, rate: None, requests: None }
    }
}

/// What one case measured.
struct Outcome {
    name: String,
    rate: f64,
    /// Median of [`PROBES`] sequential requests before the run.
    alone_ms: f64,
    server_mean_ms: f64,
    server_p99_ms: f64,
    /// Cores used during the run: (node, this process, everything else).
    cpu: (f64, f64, f64),
    res: LoadResult,
}

/// CPU time so far, in clock ticks: the node's, this process's, and the machine's busy time
/// (all cores); two of them give who kept the cores busy in between.
struct Cpu {
    at: Instant,
    node: f64,
    own: f64,
    machine: f64,
}

impl Cpu {
    fn now(node_pid: u32) -> Cpu {
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let ticks: Vec<f64> =
                    s.lines().next()?.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal …: busy is all but idle and iowait.
                Some(ticks.iter().sum::<f64>() - ticks.get(3)? - ticks.get(4)?)
            })
            .unwrap_or(0.0);
        Cpu {
            at: Instant::now(),
            node: process_ticks(&format!("/proc/{node_pid}/stat")),
            own: process_ticks("/proc/self/stat"),
            machine,
        }
    }

    /// Cores kept busy from `self` to `later`: (node, this process, the rest of the machine).
    fn cores_until(&self, later: &Cpu) -> (f64, f64, f64) {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let secs = (later.at - self.at).as_secs_f64() * hz;
        let (node, own) = ((later.node - self.node) / secs, (later.own - self.own) / secs);
        (node, own, ((later.machine - self.machine) / secs - node - own).max(0.0))
    }
}

/// utime + stime of a process, in clock ticks, from its `/proc/<pid>/stat` (0 if unreadable).
fn process_ticks(stat: &str) -> f64 {
    std::fs::read_to_string(stat)
        .ok()
        .and_then(|s| {
            // Fields after the command (which may hold spaces) start at the state, field 3.
            let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
        .unwrap_or(0.0)
}

/// Waits until the node has stayed under [`IDLE_CORES`] of CPU for 3 s (its flushes and
/// compactions after the load are over), at most [`SETTLE_MAX`]; the time it took, and whether it
/// got there.
async fn quiesce(node_pid: u32) -> (Duration, bool) {
    let started = Instant::now();
    let mut quiet_since: Option<Instant> = None;
    while started.elapsed() < SETTLE_MAX {
        let before = Cpu::now(node_pid);
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (node, _, _) = before.cores_until(&Cpu::now(node_pid));
        eprint!("\rnode settling: {node:.2} cores   ");
        if node < IDLE_CORES {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(3) {
                eprintln!();
                return (since - started, true);
            }
        } else {
            quiet_since = None;
        }
    }
    eprintln!();
    (started.elapsed(), false)
}

/// The machine's 1-minute load average (other work on the machine shows here).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// Produces one lean alert for each of `n` objects, at [`sky_position`], to a new input topic of
/// `partitions` partitions, printing the rate as it goes. Returns the bytes produced and the time.
fn load_sky(kafka: &KafkaConfig, topics: &TopicSet, n: usize, partitions: u32) -> anyhow::Result<(usize, Duration)> {
    kafka.ensure_topic(&topics.input, partitions, None)?;
    let templates: Vec<Template> =
        load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64)
            .iter()
            .map(lean)
            .collect();
    eprintln!("producing {n} lean alerts from {} real templates", templates.len());
    let input = KafkaTopic::open(kafka, &topics.input)?;
    let started = Instant::now();
    let (mut bytes, mut waited) = (0usize, Duration::ZERO);
    const BATCH: usize = 8192;
    let batch_of = |first: usize| first..(first + BATCH).min(n);
    // The next batch is made while this one is produced.
    std::thread::scope(|s| -> anyhow::Result<()> {
        let mut next = Some(s.spawn(|| generate(&templates, batch_of(0), partitions)));
        for first in (0..n).step_by(BATCH) {
            let t = Instant::now();
            let batch = next.take().expect("a batch is being made").join().expect("generator thread");
            waited += t.elapsed();
            if first + BATCH < n {
                let templates = &templates;
                next = Some(s.spawn(move || generate(templates, batch_of(first + BATCH), partitions)));
            }
            bytes += batch.iter().map(|(_, _, p)| p.len()).sum::<usize>();
            crate::common::append_by_partition(&input, partitions, &batch)?;
            let end = batch_of(first).end;
            eprint!("\rproduced {end}/{n} ({:.0} alerts/s)   ", end as f64 / started.elapsed().as_secs_f64());
        }
        Ok(())
    })?;
    let took = started.elapsed();
    eprintln!(
        "\rproduced {n} alerts, {:.1} MB, mean {} B, in {:.1} s ({:.1} s of it waiting for the generators)",
        bytes as f64 / 1e6,
        bytes / n,
        took.as_secs_f64(),
        waited.as_secs_f64()
    );
    Ok((bytes, took))
}

/// Alerts `range` as (partition, key, packet), made on every core.
fn generate(templates: &[Template], range: Range<usize>, partitions: u32) -> Vec<(u32, String, Vec<u8>)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    std::thread::scope(|s| {
        let parts: Vec<_> = (0..threads)
            .map(|t| {
                let range = range.clone();
                s.spawn(move || {
                    range
                        .skip(t)
                        .step_by(threads)
                        .map(|i| {
                            let oid = object_id(i);
                            let (ra, dec) = sky_position(i);
                            let t = &templates[i % templates.len()];
                            let packet = reissue_at(t, &oid, CANDID_BASE + i as i64, ra, dec);
                            let key = format!("ztf:{oid}");
                            (partition_for(key.as_bytes(), partitions), key, packet)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        parts.into_iter().flat_map(|h| h.join().expect("generator thread")).collect()
    })
}

/// SplitMix64: a small deterministic generator, enough for positions and centres.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }

    /// A point uniform on the sphere, (ra, dec) in degrees: ra uniform, sin(dec) uniform.
    fn sky(&mut self) -> (f64, f64) {
        let ra = 360.0 * self.unit();
        let dec = (2.0 * self.unit() - 1.0).clamp(-1.0, 1.0).asin().to_degrees();
        (ra, dec)
    }
}

/// Where object `i` is: its own draw, so any object's position can be found again (the
/// crossmatch case aims at them).
fn sky_position(i: usize) -> (f64, f64) {
    SplitMix(SplitMix(i as u64).next() ^ OBJECT_SEED).sky()
}

fn cone_url(base: &str, (ra, dec): (f64, f64), radius_arcsec: f64) -> String {
    format!("{base}/v1/cone?ra={ra:.7}&dec={dec:.7}&radius_arcsec={radius_arcsec}&limit=10000")
}

/// The baseline's question: every object in the box around the cone, by a full scan.
fn scan_url(base: &str, (ra, dec): (f64, f64), radius_arcsec: f64) -> String {
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("where", &box_filter(ra, dec, radius_arcsec / 3600.0))
        .append_pair("order", "ra")
        .append_pair("limit", "10000")
        .finish();
    format!("{base}/v1/objects?{q}")
}

/// A filter on ra/dec that matches every object within `radius_deg` of the centre (and some
/// more): the box around the circle, widened a little against rounding; the whole ra range
/// when the circle reaches a pole, two ra ranges when it crosses ra = 0.
fn box_filter(ra: f64, dec: f64, radius_deg: f64) -> String {
    let r = radius_deg * (1.0 + 1e-6) + 1e-7;
    let (lo, hi) = (dec - r, dec + r);
    let decs = format!("dec >= {lo:.8} and dec <= {hi:.8}");
    // The widest ra half-width of the circle is asin(sin r / cos dec) at the centre's dec; the
    // edge furthest from the equator bounds it from above.
    let s = r.to_radians().sin() / lo.abs().max(hi.abs()).to_radians().cos();
    if lo <= -90.0 || hi >= 90.0 || s >= 1.0 {
        return decs;
    }
    let half = s.asin().to_degrees() * (1.0 + 1e-6) + 1e-7;
    let (a, b) = (ra - half, ra + half);
    let ras = if a < 0.0 {
        format!("(ra >= {:.8} or ra <= {b:.8})", a + 360.0)
    } else if b >= 360.0 {
        format!("(ra >= {a:.8} or ra <= {:.8})", b - 360.0)
    } else {
        format!("ra >= {a:.8} and ra <= {b:.8}")
    };
    format!("{ras} and {decs}")
}

/// Angular distance in degrees (haversine).
fn distance_deg(ra1: f64, dec1: f64, ra2: f64, dec2: f64) -> f64 {
    let (d1, d2) = (dec1.to_radians(), dec2.to_radians());
    let h = ((d2 - d1) / 2.0).sin().powi(2) + d1.cos() * d2.cos() * ((ra2 - ra1).to_radians() / 2.0).sin().powi(2);
    2.0 * h.sqrt().min(1.0).asin().to_degrees()
}

/// A 1° cone and the full scan of its box find the same objects once exact distances are
/// applied to the box. Returns how many.
async fn check_box_against_cone(base: &str, ra: f64, dec: f64) -> anyhow::Result<usize> {
    let cone: ConeAnswer = reqwest::get(cone_url(base, (ra, dec), 3600.0)).await?.error_for_status()?.json().await?;
    let page: ObjectsPage = reqwest::get(scan_url(base, (ra, dec), 3600.0)).await?.error_for_status()?.json().await?;
    anyhow::ensure!(page.next_cursor.is_none(), "the 1° box at ({ra}, {dec}) holds more than a page");
    let by_cone: BTreeSet<String> = cone.objects.into_iter().map(|h| h.object.key).collect();
    let by_scan: BTreeSet<String> = page
        .objects
        .into_iter()
        .filter(|o| matches!((o.ra, o.dec), (Some(ora), Some(odec)) if distance_deg(ra, dec, ora, odec) <= 1.0))
        .map(|o| o.key)
        .collect();
    anyhow::ensure!(
        by_cone == by_scan,
        "at ({ra}, {dec}) the 1° cone found {} objects and the box scan {}: {:?}",
        by_cone.len(),
        by_scan.len(),
        by_cone.symmetric_difference(&by_scan).take(5).collect::<Vec<_>>()
    );
    Ok(by_cone.len())
}

/// The node's histogram of request time on one route (`lightkeeper_http_request_seconds`) at
/// one moment; two of them give a case's share.
struct ServerTime {
    sum_s: f64,
    count: f64,
    /// (upper bound in s, requests at most that long), ascending.
    buckets: Vec<(f64, f64)>,
}

impl ServerTime {
    /// The node's mean time per request between `self` (before) and `after`, in ms.
    fn mean_ms(&self, after: &ServerTime) -> f64 {
        (after.sum_s - self.sum_s) * 1000.0 / (after.count - self.count).max(1.0)
    }

    /// The upper bound (ms) of the histogram bucket holding the `q`-quantile of the requests
    /// between `self` and `after` (the buckets double: this bounds it within a factor 2).
    fn quantile_bound_ms(&self, after: &ServerTime, q: f64) -> f64 {
        let n = after.count - self.count;
        after
            .buckets
            .iter()
            .find(|(le, cum)| {
                let before = self.buckets.iter().find(|(l, _)| l == le).map_or(0.0, |(_, c)| *c);
                cum - before >= q * n
            })
            .map_or(f64::INFINITY, |(le, _)| le * 1000.0)
    }
}

/// The node's request-time histogram of `route` so far, from `/metrics`.
async fn server_time(base: &str, route: &str) -> anyhow::Result<ServerTime> {
    let text = reqwest::get(format!("{base}/metrics")).await?.error_for_status()?.text().await?;
    let label = format!("route=\"{route}\"");
    let (text, label) = (text.as_str(), label.as_str());
    let lines = |name: &'static str| {
        text.lines().filter(move |l| l.split(['{', ' ']).next() == Some(name) && l.contains(label))
    };
    let value = |l: &str| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let mut buckets: Vec<(f64, f64)> = lines("lightkeeper_http_request_seconds_bucket")
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, value(l)?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    Ok(ServerTime {
        sum_s: lines("lightkeeper_http_request_seconds_sum").filter_map(value).sum(),
        count: lines("lightkeeper_http_request_seconds_count").filter_map(value).sum(),
        buckets,
    })
}

/// A `/proc/<pid>/status` field in KiB (0 if unreadable).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(field))?.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Bytes of the files below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// What an open-loop [`load`] run saw.
struct LoadResult {
    sent: usize,
    errors: usize,
    /// Successful requests only, ascending.
    latencies_ms: Vec<f64>,
    /// Objects in each successful answer (0 for an answer that is not a list of objects).
    objects: Vec<usize>,
    /// Body bytes of each successful answer.
    bytes: Vec<usize>,
    first_error: Option<String>,
}

impl LoadResult {
    /// The `q`-quantile of the successful requests' latency in ms (NaN if none succeeded).
    fn p(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        percentile(&self.latencies_ms, q)
    }

    fn mean_objects(&self) -> f64 {
        self.objects.iter().sum::<usize>() as f64 / self.objects.len().max(1) as f64
    }

    fn mean_bytes(&self) -> f64 {
        self.bytes.iter().sum::<usize>() as f64 / self.bytes.len().max(1) as f64
    }
}

/// Just the size of an answer: `objects` of a cone answer or a page, not decoded.
#[derive(serde::Deserialize)]
struct Counted {
    objects: Vec<serde::de::IgnoredAny>,
    missing_partitions: Vec<u32>,
}

/// GETs `urls` in turn at `rate` requests/s, each request on its own task at its scheduled time
/// whether or not the earlier ones have finished (open loop, [`crate::pace`]). The clock stops when the body is
/// in; counting its objects comes after.
async fn load(urls: Vec<String>, rate: f64) -> LoadResult {
    let http = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let total = urls.len();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<(f64, usize, usize), String>>(total.max(1));
    let sender = tx.clone();
    crate::pace::open_loop(urls, interval, move |url, scheduled| {
        let (http, tx) = (http.clone(), sender.clone());
        async move {
            let outcome = match http.get(&url).send().await {
                Ok(r) => {
                    let status = r.status();
                    match r.bytes().await {
                        Ok(body) if status.is_success() => {
                            let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
                            if !body.starts_with(b"{\"objects\"") {
                                Ok((ms, 0, body.len()))
                            } else {
                                match serde_json::from_slice::<Counted>(&body) {
                                    Ok(c) if c.missing_partitions.is_empty() => Ok((ms, c.objects.len(), body.len())),
                                    Ok(c) => Err(format!("missing partitions {:?}", c.missing_partitions)),
                                    Err(e) => Err(format!("undecodable answer: {e}")),
                                }
                            }
                        }
                        Ok(body) => Err(format!("{status}: {}", String::from_utf8_lossy(&body[..body.len().min(300)]))),
                        Err(e) => Err(format!("reading the body: {e}")),
                    }
                }
                Err(e) => Err(format!("sending: {e}")),
            };
            let _ = tx.send(outcome).await;
        }
    })
    .await;
    drop(tx);
    let (mut errors, mut first_error) = (0, None);
    let mut latencies_ms = Vec::with_capacity(total);
    let mut objects = Vec::with_capacity(total);
    let mut bytes = Vec::with_capacity(total);
    while let Some(v) = rx.recv().await {
        match v {
            Ok((ms, n, b)) => {
                latencies_ms.push(ms);
                objects.push(n);
                bytes.push(b);
            }
            Err(e) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    LoadResult { sent: total, errors, latencies_ms: sorted(latencies_ms), objects, bytes, first_error }
}
