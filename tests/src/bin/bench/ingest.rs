//! `bench ingest`: how fast one node materializes an input topic end to end — decode, merge,
//! changelog append with acks=all, RocksDB — in alerts/s.
//!
//! Baseline: a bare rdkafka consumer reading the same topic from the beginning, in the same
//! run. A node cannot ingest faster than it can read its input, so the ratio node / bare is
//! the share of the broker's read rate the node keeps; it cancels out how fast the (noisy,
//! shared) machine and broker happen to be. The node's time runs from its `/readyz` to the
//! moment `/v1/cluster` shows every input record consumed. Also reported: the node's peak RSS,
//! its mean worker batch and the worker time per phase (poll, decode, changelog, store), which
//! is where a slowdown shows first, and the node's CPU time per 1,000 alerts (user + system,
//! from `/proc`), which the broker's share of the machine does not blur as it does the rate.
//!
//! With `--filters N`, a second node ingests a second copy of the input while N live filter
//! subscriptions (16 per WebSocket, as many connections as that takes, each read as fast as it
//! comes) follow every partition; both nodes' rates are reported and their ratio is the cost of
//! the filters (and the ratio of their CPU per alert, the same cost seen from the node). The filters are varied and realistic (magnitude and detection counts, real/bogus
//! scores, `isdiffpos`, key ranges), so a share of the changes match and are sent.

use crate::common::{bare_consumer_config, drop_output, drop_topics, load_input, machine};
use lightkeeper_clients::Client;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_tests::cluster::metric_samples;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::object_id;
use lightkeeper_tests::{broker, consumed, NodeProcess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub async fn run(
    n: usize,
    per_object: usize,
    partitions: u32,
    filters: usize,
    set: FilterSet,
    repeat: usize,
    pipeline: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(repeat > 0, "--repeat must be at least 1");
    if filters == 0 && !pipeline {
        for _ in 0..repeat {
            run_one(n, per_object, partitions, 0, set, false).await?;
        }
        return Ok(());
    }
    // Pairs in alternating order (ABBA…), so a drift of the machine or the broker over the run
    // falls on both sides alike; the median pair is the figure.
    let mut pairs: Vec<(Run, Run)> = Vec::with_capacity(repeat);
    for i in 0..repeat {
        let (plain, filtered) = if i % 2 == 0 {
            let plain = run_one(n, per_object, partitions, 0, set, false).await?;
            (plain, run_one(n, per_object, partitions, filters, set, pipeline).await?)
        } else {
            let filtered = run_one(n, per_object, partitions, filters, set, pipeline).await?;
            (run_one(n, per_object, partitions, 0, set, false).await?, filtered)
        };
        pairs.push((plain, filtered));
    }
    let what = if pipeline {
        format!("a five-processor pipeline ({})", PIPELINE_CLASSES)
    } else {
        format!("{filters} live filter subscriptions ({set:?})")
    };
    println!("## ingest with {what} against none, same run — {}", machine());
    println!(
        "| pair | alerts/s, without | alerts/s, with {what} | with / without | node CPU ms per 1,000 alerts, without / with | CPU with / without |"
    );
    println!("|---|---|---|---|---|---|");
    for (i, (plain, filtered)) in pairs.iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.0} | {:.3} | {:.0} / {:.0} | {:.3} |",
            i + 1,
            plain.rate,
            filtered.rate,
            filtered.rate / plain.rate,
            plain.cpu_ms_per_1000,
            filtered.cpu_ms_per_1000,
            filtered.cpu_ms_per_1000 / plain.cpu_ms_per_1000
        );
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let rate = median(pairs.iter().map(|(p, f)| f.rate / p.rate).collect());
    let cpu = median(pairs.iter().map(|(p, f)| f.cpu_ms_per_1000 / p.cpu_ms_per_1000).collect());
    println!(
        "| **median** | | | **{rate:.3} (cost {:.1} %)** | | **{cpu:.3} (+{:.1} % CPU)** |",
        100.0 * (1.0 - rate),
        100.0 * (cpu - 1.0)
    );
    // Where the difference goes: each thread group's median over the runs of each kind.
    let groups: std::collections::BTreeSet<&String> =
        pairs.iter().flat_map(|(p, f)| p.threads.keys().chain(f.threads.keys())).collect();
    println!("\n| node threads | CPU ms per 1,000 alerts, without (median) | with (median) | difference |");
    println!("|---|---|---|---|");
    for g in groups {
        let of = |r: &Run| r.threads.get(g).copied().unwrap_or(0.0);
        let without = median(pairs.iter().map(|(p, _)| of(p)).collect());
        let with = median(pairs.iter().map(|(_, f)| of(f)).collect());
        println!("| `{g}*` | {without:.1} | {with:.1} | {:+.1} |", with - without);
    }
    Ok(())
}

/// One node's run: its ingest rate, and its CPU time per 1,000 alerts over the same span.
struct Run {
    rate: f64,
    cpu_ms_per_1000: f64,
    /// CPU ms per 1,000 alerts by thread group (see [`thread_cpu`]).
    threads: BTreeMap<String, f64>,
}

/// CPU time used so far by each of process `pid`'s threads (by thread id), with the thread's
/// group: its name without trailing digits (`partition-3` → `partition-`, `rdk:broker1` →
/// `rdk:broker`), so the runtime's workers, the partition workers, rdkafka's and RocksDB's
/// threads each add up. A thread that ended before a later reading is missing from it: its
/// time shows in the process total only, which [`Run`] reports as `(exited)`.
fn thread_cpu(pid: u32) -> BTreeMap<u32, (String, Duration)> {
    let mut threads = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return threads };
    for task in tasks.flatten() {
        let path = task.path();
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else { continue };
        let Ok(name) = std::fs::read_to_string(path.join("comm")) else { continue };
        let group = name.trim().trim_end_matches(|c: char| c.is_ascii_digit()).to_owned();
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else { continue };
        threads.insert(tid, (group, stat_cpu(&stat)));
    }
    threads
}

/// Each thread group's CPU time between two [`thread_cpu`] readings, in ms per 1,000 of
/// `alerts`; `(exited)` is what `total` has beyond them (threads that ended in between).
fn thread_groups(
    then: &BTreeMap<u32, (String, Duration)>,
    now: &BTreeMap<u32, (String, Duration)>,
    total: Duration,
    alerts: f64,
) -> BTreeMap<String, f64> {
    let per_1000 = |d: Duration| d.as_secs_f64() * 1e6 / alerts;
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    let mut listed = Duration::ZERO;
    for (tid, (group, cpu)) in now {
        let used = cpu.saturating_sub(then.get(tid).map_or(Duration::ZERO, |t| t.1));
        listed += used;
        *groups.entry(group.clone()).or_default() += per_1000(used);
    }
    groups.insert("(exited)".into(), per_1000(total.saturating_sub(listed)));
    groups
}

/// utime + stime from a `/proc/…/stat` line.
fn stat_cpu(stat: &str) -> Duration {
    // Fields after the command name (which may hold spaces), from field 3 on: utime and stime
    // are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    Ok(stat_cpu(&std::fs::read_to_string(format!("/proc/{pid}/stat"))?))
}

/// Which filters `--filters` subscribes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FilterSet {
    /// Watchlists, as most users' filters are: each follows a few dozen of the input's
    /// objects (a key range, a list of keys, with a condition on the alert or without), so a
    /// change matches about one filter in a thousand. A fifth are `or`s, which no guard serves:
    /// those are evaluated on every change.
    Selective,
    /// Cuts on the alerts' attributes and positions. The input re-issues 64 real alerts, so
    /// each cut takes whole templates: a change matches ~29 of 1,000 such filters, and the run
    /// measures delivering ~30 messages per alert more than matching.
    Broad,
}

/// Filter `i` of the set.
fn filter(set: FilterSet, i: usize) -> String {
    match set {
        FilterSet::Selective => selective_filter(i),
        FilterSet::Broad => broad_filter(i),
    }
}

/// Watchlists over the input's object ids (`synth::object_id`: `ZTF99` then the object's
/// number in base 26, least significant letter first, so a two-letter prefix picks every 676th
/// object — ~15 of the 10,000 objects of a 50,000-alert run).
fn selective_filter(i: usize) -> String {
    let id = |n: usize| object_id(n * 7919 % 10_000);
    let prefix = |n: usize| {
        let l = |k: usize| (b'a' + (k % 26) as u8) as char;
        (format!("ZTF99{}{}", l(n), l(n / 26)), format!("ZTF99{}{}", l(n), (b'a' + (n / 26 % 26) as u8 + 1) as char))
    };
    match i % 5 {
        0 => {
            let (lo, hi) = prefix(i);
            format!("object_id >= '{lo}' and object_id < '{hi}'")
        }
        1 => format!("object_id in ('{}', '{}', '{}', '{}') and mag_g < 21", id(i), id(i + 1), id(i + 2), id(i + 3)),
        2 => {
            let (lo, hi) = prefix(i + 1);
            format!("object_id >= '{lo}' and object_id < '{hi}' and ndethist > {}", i % 7)
        }
        3 => format!("key = 'ztf:{}' and isdiffpos = true", id(i)),
        _ => format!("object_id = '{}' or object_id = '{}'", id(i), id(i + 5)),
    }
}

/// The attribute cuts of [`FilterSet::Broad`] (a watchlist's key range, bright or well-detected
/// sources, a 1°-wide strip of sky).
fn broad_filter(i: usize) -> String {
    let k = i % 10;
    let letter = |n: usize| (b'a' + (n % 26) as u8) as char;
    match i % 5 {
        0 => format!(
            "object_id >= 'ZTF99{0}{1}' and object_id < 'ZTF99{0}{2}'",
            letter(i),
            letter(i / 26),
            letter(i / 26 + 1)
        ),
        1 => format!("mag_g < {} and drb > 0.9", 14.0 + k as f64 * 0.2),
        2 => format!("ndethist > {} and isdiffpos = true and sgscore1 < 0.{k}", 20 + k),
        3 => format!("ra > {} and ra < {} and dec > 0", k * 36, k * 36 + 1),
        _ => format!("n_alerts >= {} and mag_r < {}", 2 + k % 3, 15.0 + k as f64 * 0.1),
    }
}

/// Opens `n` filter subscriptions on `url` and reads them in the background, counting messages
/// in `received`; returns the reading tasks once every subscription has said `subscribed`.
async fn subscribe_filters(
    url: &str,
    n: usize,
    set: FilterSet,
    received: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    use futures::{SinkExt, StreamExt};
    use lightkeeper_clients::api::ws::{ClientOp, Envelope, MsgType};
    use tokio_tungstenite::tungstenite::Message;
    let ws_url = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    // One connection per 16 filters (the per-connection bound), all opened at once. Messages are
    // counted, not decoded: the subscribers share the node's two cores, and their JSON parsing
    // is not the node's cost.
    let connections = (0..n).step_by(16).map(|first| {
        let (ws_url, received, lost) = (ws_url.clone(), received.clone(), lost.clone());
        async move {
            let here = (n - first).min(16);
            let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
            for j in 0..here {
                let op = ClientOp::subscribe_filter(format!("f{}", first + j), filter(set, first + j), None, false);
                ws.send(Message::Text(op.to_text().into())).await?;
            }
            let mut ready = 0;
            while ready < here {
                let Some(msg) = tokio::time::timeout(Duration::from_secs(60), ws.next()).await?.transpose()? else {
                    anyhow::bail!("a filter subscription closed before it was ready");
                };
                if let Message::Text(t) = msg {
                    let env: Envelope = serde_json::from_str(&t)?;
                    match env.kind {
                        MsgType::Subscribed => ready += 1,
                        MsgType::Error => anyhow::bail!("filter subscription refused: {t}"),
                        _ => {}
                    }
                }
            }
            Ok(tokio::spawn(async move {
                while let Some(Ok(m)) = ws.next().await {
                    match m {
                        Message::Text(_) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                // The server closed the connection (a slow consumer, or it went away): the run
                // no longer measures what it says.
                lost.fetch_add(1, Ordering::Relaxed);
            }))
        }
    });
    futures::future::try_join_all(connections).await
}

/// The processors of `--pipeline`, in order.
const PIPELINE_CLASSES: &str = "filter → sky_region → solar_system → watchlist → kafka (Avro)";

/// Puts `--pipeline`'s chain and the 1,000-entry watch list it names into the settings topic
/// before the node starts, so the node runs them from its first alert. The chain passes nearly
/// every alert to its writer, so the writer's cost is measured on (almost) every alert.
fn put_pipeline(kafka: &KafkaConfig, topics: &TopicSet) -> anyhow::Result<String> {
    use lightkeeper_storage::log::KafkaTopic;
    use lightkeeper_storage::settings::{SettingKey, SettingKind, SettingsLog};
    kafka.ensure_topic(&topics.settings, 1, Some(Duration::ZERO))?;
    let log = SettingsLog::open(Arc::new(KafkaTopic::open(kafka, &topics.settings)?))?;
    let out = format!("{}-out", topics.input);
    let definition = format!(
        "processors:\n\
         \x20 - class: filter\n    params: {{ where: \"n_detections >= 1\" }}\n\
         \x20 - class: sky_region\n    params: {{ exclude: true, cones: [{{ ra: 1.0, dec: -89.0, radius_arcsec: 60 }}] }}\n\
         \x20 - class: solar_system\n    params: {{ exclude: [ceres, vesta, pallas] }}\n\
         \x20 - class: watchlist\n    params: {{ name: bench, require: false }}\n\
         \x20 - class: kafka\n    params: {{ topic: {out}, format: avro }}\n"
    );
    log.put(&SettingKey::new(SettingKind::Pipeline, "bench"), definition.as_bytes())?;
    let entries: Vec<lightkeeper_api::pipeline::WatchEntry> = (0..1000)
        .map(|i| lightkeeper_api::pipeline::WatchEntry {
            name: format!("w{i}"),
            ra: (i as f64 * 0.359) % 360.0,
            dec: -60.0 + (i as f64 * 0.117) % 120.0,
            radius_arcsec: 5.0,
        })
        .collect();
    log.put(&SettingKey::new(SettingKind::Watchlist, "bench"), &serde_json::to_vec(&entries)?)?;
    Ok(out)
}

/// One node ingesting a fresh copy of the input with `filters` filter subscriptions (and, with
/// `pipeline`, the five-processor chain of [`put_pipeline`]).
async fn run_one(
    n: usize,
    per_object: usize,
    partitions: u32,
    filters: usize,
    set: FilterSet,
    pipeline: bool,
) -> anyhow::Result<Run> {
    let bootstrap = broker();
    let topics = TopicSet::unique("bench");
    let kafka = KafkaConfig::new(&bootstrap);
    let bytes_total = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || load_input(&kafka, &topics, n, per_object, partitions)).await??
    };
    let output = if pipeline {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        Some(tokio::task::spawn_blocking(move || put_pipeline(&kafka, &topics)).await??)
    } else {
        None
    };

    // Baseline: a bare consumer reading the same topic.
    let (bare, _) = tokio::task::spawn_blocking({
        let (b, t) = (bootstrap.clone(), topics.input.clone());
        move || bare_consume(&b, &t, partitions, n)
    })
    .await??;
    let bare_rate = n as f64 / bare.as_secs_f64();
    eprintln!("bare consumer: {n} records in {:.2} s = {bare_rate:.0}/s", bare.as_secs_f64());

    // The node, end to end.
    let tmp = tempfile::tempdir()?;
    let started = Instant::now();
    let node = NodeProcess::start(&tmp.path().join("node"), &["--kafka", &bootstrap], &topics.env())?;
    node.wait_ready(Duration::from_secs(120)).await?;
    let client = Client::new(&node.url)?;
    let received = Arc::new(AtomicU64::new(0));
    let lost = Arc::new(AtomicU64::new(0));
    let subscribers = subscribe_filters(&node.url, filters, set, received.clone(), lost.clone()).await?;
    // The rate counts from here: with filters, once every one of them follows every partition.
    let ready = started.elapsed();
    let consumed_at_ready = consumed(&client).await.unwrap_or(0) as usize;
    let cpu_at_ready = cpu_time(node.child.id())?;
    let threads_at_ready = thread_cpu(node.child.id());
    let own_at_ready = cpu_time(std::process::id())?;
    let mut last_print = Instant::now();
    loop {
        let done = consumed(&client).await.unwrap_or(0);
        if done as usize >= n {
            break;
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            eprint!("\rnode: {done}/{n}");
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = started.elapsed();
    let cpu = cpu_time(node.child.id())? - cpu_at_ready;
    let threads_now = thread_cpu(node.child.id());
    // This process: the filter subscribers' reading, on the same cores as the node.
    let own = cpu_time(std::process::id())? - own_at_ready;
    let metrics = reqwest::get(format!("{}/metrics", node.url)).await?.text().await?;
    let batches: f64 = metric_samples(&metrics, "lightkeeper_batch_seconds_count").sum();
    let timed = (n - consumed_at_ready.min(n)) as f64;
    let node_rate = timed / (total - ready).as_secs_f64();
    let cpu_ms_per_1000 = cpu.as_secs_f64() * 1e6 / timed;
    let threads = thread_groups(&threads_at_ready, &threads_now, cpu, timed);
    let rss = std::fs::read_to_string(format!("/proc/{}/status", node.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0))
        })
        .unwrap_or(0);
    println!(
        "## ingest: {n} alerts ({} per object, {partitions} partitions, mean {} B/alert, {filters} filter subscriptions) — {}",
        per_object,
        bytes_total / n,
        machine()
    );
    println!("| measure | value |\n|---|---|");
    println!("| bare rdkafka consumer | {bare_rate:.0} records/s ({:.2} s) |", bare.as_secs_f64());
    println!(
        "| lightkeeper end to end (after ready) | {node_rate:.0} alerts/s ({:.2} s; start-up {:.2} s) |",
        (total - ready).as_secs_f64(),
        ready.as_secs_f64()
    );
    println!("| ratio node / bare | {:.2} |", node_rate / bare_rate);
    println!("| node CPU (user + system) per 1,000 alerts | {cpu_ms_per_1000:.0} ms |");
    println!(
        "| load generator CPU (this process: the subscribers, polling the node) per 1,000 alerts | {:.0} ms |",
        own.as_secs_f64() * 1e6 / timed
    );
    for (group, ms) in &threads {
        println!("| node CPU per 1,000 alerts in threads `{group}*` | {ms:.1} ms |");
    }
    println!("| node peak RSS | {} MiB |", rss / 1024);
    println!("| mean worker batch | {:.0} alerts |", n as f64 / batches);
    if filters > 0 {
        println!("| consumed before every filter was subscribed (not timed) | {consumed_at_ready} alerts |");
    }
    // What the subscribers had received when the last alert was consumed, and once delivery
    // has settled (nothing new for a second): every message the filters produced.
    let delivered = received.load(Ordering::Relaxed);
    let mut settled = delivered;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = received.load(Ordering::Relaxed);
        if now == settled {
            break;
        }
        settled = now;
    }
    let after = reqwest::get(format!("{}/metrics", node.url)).await?.text().await?;
    let slow_closed: f64 = metric_samples(&after, "lightkeeper_ws_slow_closed_total").sum();
    let lagged: f64 = metric_samples(&after, "lightkeeper_filter_lagged_total").sum();
    // Read before the subscribers and the node go, which closes every connection.
    let lost = lost.load(Ordering::Relaxed);
    for t in subscribers {
        t.abort();
    }
    drop(node);
    if filters > 0 {
        println!("| filter messages received by then (all subscriptions) | {delivered} |");
        println!(
            "| filter messages in all, once delivery settled | {settled} ({:.2} per alert) |",
            settled as f64 / n as f64
        );
        println!("| connections closed by the node as slow consumers / lost | {slow_closed} / {lost} |");
        println!("| followers that fell behind the matcher and replayed the changelog | {lagged} |");
        anyhow::ensure!(
            lost == 0,
            "{lost} of the filter connections were closed during the run: the rate does not count their filters"
        );
    }
    if let Some(out) = &output {
        let passed: f64 = metric_samples(&metrics, "lightkeeper_pipeline_passed_total").sum();
        let errors: f64 = metric_samples(&metrics, "lightkeeper_pipeline_errors_total").sum();
        println!("| pipeline: processor passes (all five) / errors | {passed} / {errors} |");
        anyhow::ensure!(errors == 0.0, "the pipeline had {errors} errors: the run does not measure what it says");
        drop_output(&kafka, out).await?;
    }
    drop_topics(&kafka, &topics).await?;
    for phase in ["poll", "decode", "pipelines", "changelog", "store"] {
        let sum: f64 = metrics
            .lines()
            .find(|l| l.starts_with("lightkeeper_phase_seconds_sum") && l.contains(&format!("phase=\"{phase}\"")))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN);
        println!("| worker time in {phase} (all partitions) | {sum:.2} s |");
    }
    Ok(Run { rate: node_rate, cpu_ms_per_1000, threads })
}

/// Reads `n` records of `topic` from the beginning; returns the time and the payload bytes.
fn bare_consume(bootstrap: &str, topic: &str, partitions: u32, n: usize) -> anyhow::Result<(Duration, usize)> {
    let c: BaseConsumer = bare_consumer_config(bootstrap).create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    let started = Instant::now();
    let mut seen = 0usize;
    let mut bytes = 0usize;
    while seen < n {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::Message;
            bytes += m.payload().map_or(0, <[u8]>::len);
            seen += 1;
        }
        if started.elapsed() > Duration::from_secs(600) {
            anyhow::bail!("bare consumer stalled at {seen}/{n}");
        }
    }
    Ok((started.elapsed(), std::hint::black_box(bytes)))
}
