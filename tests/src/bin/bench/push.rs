//! `bench push`: how soon a produced alert reaches a WebSocket subscriber, and how soon it is
//! readable over REST — against how soon a bare rdkafka consumer sees the same record, in the
//! same run.
//!
//! A producer thread writes real-size ZTF alerts (the fink datasim templates re-issued,
//! cutouts included) open-loop at `--rate` alerts/s, round-robin over `--objects` objects, each
//! stamped with its send time. Measured from that send time:
//! - **bare consumer**: a `BaseConsumer` assigned to every input partition at its end before the
//!   first send — the floor (the broker's produce → fetch path);
//! - **object subscription**: one WebSocket subscribed to every object; an update is matched to
//!   its alert by (object, version), since every alert is one new version of its object;
//! - **filter subscription**: one WebSocket with a filter every object matches (`n_alerts >= 1`);
//! - **REST**: for every `--rest-every`-th alert, `GET /v1/objects/{key}` every millisecond until
//!   the object's version includes it (so the figure is rounded up to the polling step).
//!
//! The first `WARMUP` seconds are produced but not counted. The subscribers and pollers run in
//! this process, on the same two cores as the node and the broker: their JSON parsing is part of
//! what the figures include, as it would be for a client on the same machine.

use crate::common::{bare_consumer_config, drop_topics, machine};
use crate::stats::{percentile, sorted};
use lightkeeper_clients::api::ws::ServerMsg;
use lightkeeper_clients::Client;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_tests::kafka::TopicSet;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::{broker, shared_data, NodeProcess};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Seconds produced before measuring (connections warm, the node's caches filled).
const WARMUP: u64 = 2;
/// First candid of a run; alert `i` has candid `CANDID_BASE + i`.
const CANDID_BASE: i64 = 4_000_000_000_000_000_000;

pub struct Params {
    pub rate: u64,
    pub seconds: u64,
    pub objects: usize,
    pub partitions: u32,
    pub rest_every: usize,
    /// The node's `kafka.fetch_wait_max_ms` (its default when `None`).
    pub fetch_wait_ms: Option<u64>,
}

/// Send times (ns since the run's start; 0 = not sent yet) and the latencies seen by each
/// observer, indexed by alert.
struct Clock {
    start: Instant,
    sent: Vec<AtomicU64>,
    counted_from: usize,
}

impl Clock {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
    /// Latency in ms of alert `i` seen now; `None` for warm-up alerts and unknown ones.
    fn latency(&self, i: usize) -> Option<f64> {
        let sent = self.sent.get(i)?.load(Ordering::Acquire);
        (i >= self.counted_from && sent > 0).then(|| (self.now().saturating_sub(sent)) as f64 / 1e6)
    }
}

#[derive(Default)]
struct Seen {
    latencies: Mutex<Vec<f64>>,
}

impl Seen {
    fn record(&self, ms: Option<f64>) {
        if let Some(ms) = ms {
            self.latencies.lock().unwrap().push(ms);
        }
    }
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    anyhow::ensure!(p.rate > 0 && p.seconds > 0 && p.objects > 0, "--rate, --seconds and --objects must be positive");
    anyhow::ensure!(p.objects <= 1000, "--objects: one connection follows at most 1,000 objects");
    let bootstrap = broker();
    let kafka = KafkaConfig::new(&bootstrap);
    let topics = TopicSet::unique("push");
    kafka.ensure_topic(&topics.input, p.partitions, None)?;

    // Every packet is made before the clock starts: re-encoding a 53 kB alert is not free, and
    // the producer must keep its pace.
    let total = (p.rate * (p.seconds + WARMUP)) as usize;
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    let keys: Vec<String> = (0..p.objects).map(|j| format!("ztf:{}", object_id(j))).collect();
    eprintln!("generating {total} alerts");
    let packets: Vec<(u32, Vec<u8>)> = (0..total)
        .map(|i| {
            let j = i % p.objects;
            let packet = reissue(&templates[i % templates.len()], &object_id(j), CANDID_BASE + i as i64);
            (partition_for(keys[j].as_bytes(), p.partitions), packet)
        })
        .collect();

    let tmp = tempfile::tempdir()?;
    let mut env = topics.env();
    if let Some(ms) = p.fetch_wait_ms {
        env.push(("LIGHTKEEPER_KAFKA__FETCH_WAIT_MAX_MS", ms.to_string()));
    }
    let node = NodeProcess::start(&tmp.path().join("node"), &["--kafka", &bootstrap], &env)?;
    node.wait_ready(Duration::from_secs(120)).await?;
    let client = Client::new(&node.url)?;

    let clock = Arc::new(Clock {
        start: Instant::now(),
        sent: (0..total).map(|_| AtomicU64::new(0)).collect(),
        counted_from: (p.rate * WARMUP) as usize,
    });
    let index_of: Arc<HashMap<String, usize>> =
        Arc::new(keys.iter().cloned().enumerate().map(|(j, k)| (k, j)).collect());
    // Alert of object `j` at `version`: the object's `version`-th alert.
    let alert_of = {
        let (index_of, objects) = (index_of.clone(), p.objects);
        move |key: &str, version: u64| Some(index_of.get(key)? + (version.checked_sub(1)? as usize) * objects)
    };
    let stop = Arc::new(AtomicBool::new(false));

    // The bare consumer, at the end of every partition before anything is sent.
    let bare = Arc::new(Seen::default());
    let consumer: BaseConsumer = bare_consumer_config(&bootstrap).create()?;
    let mut tpl = TopicPartitionList::new();
    for part in 0..p.partitions {
        let (_, high) = consumer.fetch_watermarks(&topics.input, part as i32, Duration::from_secs(10))?;
        tpl.add_partition_offset(&topics.input, part as i32, Offset::Offset(high))?;
    }
    consumer.assign(&tpl)?;
    let bare_thread = {
        let (clock, bare, stop) = (clock.clone(), bare.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) else { continue };
                let candid = m.headers().and_then(|h| h.iter().find(|h| h.key == "candid")).and_then(|h| h.value);
                if let Some(i) = candid.and_then(|v| <[u8; 8]>::try_from(v).ok()).map(i64::from_be_bytes) {
                    bare.record(clock.latency((i - CANDID_BASE) as usize));
                }
            }
        })
    };

    // The WebSocket subscribers, ready before anything is sent.
    let objects_seen = Arc::new(Seen::default());
    let filter_seen = Arc::new(Seen::default());
    let key_refs: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut object_sub = client.subscribe("objects", &key_refs, None).await?;
    let mut snapshots = 0;
    while snapshots < p.objects {
        match object_sub.next(Duration::from_secs(30)).await? {
            Some(ServerMsg::Snapshot { .. }) => snapshots += 1,
            Some(ServerMsg::Error { error, .. }) => anyhow::bail!("object subscription refused: {}", error.message),
            Some(_) => {}
            None => anyhow::bail!("the object subscription closed before its snapshots"),
        }
    }
    let mut filter_sub = client.subscribe_filter("all", "n_alerts >= 1", None, false).await?;
    loop {
        match filter_sub.next(Duration::from_secs(30)).await? {
            Some(ServerMsg::Subscribed { .. }) => break,
            Some(ServerMsg::Error { error, .. }) => anyhow::bail!("filter subscription refused: {}", error.message),
            Some(_) => {}
            None => anyhow::bail!("the filter subscription closed before it was ready"),
        }
    }
    let readers = [(object_sub, objects_seen.clone()), (filter_sub, filter_seen.clone())].map(|(mut sub, seen)| {
        let (clock, alert_of, stop) = (clock.clone(), alert_of.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match sub.next(Duration::from_millis(200)).await {
                    Ok(Some(ServerMsg::Update { key, version, .. })) => {
                        seen.record(alert_of(&key, version).and_then(|i| clock.latency(i)));
                    }
                    Ok(Some(ServerMsg::Error { error, .. })) => {
                        eprintln!("subscription error: {}", error.message);
                        return false;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("subscription failed: {e}");
                        return false;
                    }
                }
            }
            true
        })
    });

    // The producer, open loop.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "0")
        .set("acks", "all")
        .set("message.max.bytes", "8388608")
        .create()?;
    let rest_seen = Arc::new(Seen::default());
    let rest_missed = Arc::new(AtomicU64::new(0));
    let (rest_tx, mut rest_rx) = tokio::sync::mpsc::channel::<usize>(4096);
    let producer_thread = {
        let (clock, topic, keys, rate) = (clock.clone(), topics.input.clone(), keys.clone(), p.rate);
        let (rest_every, counted_from) = (p.rest_every.max(1), clock.counted_from);
        std::thread::spawn(move || -> anyhow::Result<u64> {
            let mut late = 0u64;
            for (i, (partition, packet)) in packets.iter().enumerate() {
                let due = Duration::from_nanos(i as u64 * 1_000_000_000 / rate);
                match due.checked_sub(clock.start.elapsed()) {
                    Some(wait) => std::thread::sleep(wait),
                    None => late += 1,
                }
                let candid = (CANDID_BASE + i as i64).to_be_bytes();
                let headers = OwnedHeaders::new().insert(Header { key: "candid", value: Some(&candid[..]) });
                clock.sent[i].store(clock.now(), Ordering::Release);
                let record = BaseRecord::to(&topic)
                    .partition(*partition as i32)
                    .key(&keys[i % keys.len()])
                    .payload(packet)
                    .headers(headers);
                producer.send(record).map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
                producer.poll(Duration::ZERO);
                if i >= counted_from && i % rest_every == 0 {
                    let _ = rest_tx.try_send(i);
                }
            }
            producer.flush(Duration::from_secs(30))?;
            Ok(late)
        })
    };

    // REST pollers: one task per sampled alert.
    let rest = {
        let (client, clock, keys, seen, missed) =
            (client.clone(), clock.clone(), keys.clone(), rest_seen.clone(), rest_missed.clone());
        let objects = p.objects;
        tokio::spawn(async move {
            let mut polls = tokio::task::JoinSet::new();
            while let Some(i) = rest_rx.recv().await {
                let (client, clock, seen, missed) = (client.clone(), clock.clone(), seen.clone(), missed.clone());
                let key = keys[i % objects].clone();
                let version = (i / objects + 1) as u64;
                polls.spawn(async move {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while Instant::now() < deadline {
                        if let Ok(s) = client.summary(&key).await {
                            if s.version >= version {
                                seen.record(clock.latency(i));
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    missed.fetch_add(1, Ordering::Relaxed);
                });
            }
            while polls.join_next().await.is_some() {}
        })
    };

    let late =
        tokio::task::spawn_blocking(move || producer_thread.join().expect("the producer thread panicked")).await??;
    rest.await?;
    // Everything sent: wait until every observer has seen every counted alert (or 30 s).
    let counted = total - clock.counted_from;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && [&bare, &objects_seen, &filter_seen].iter().any(|s| s.latencies.lock().unwrap().len() < counted)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let [a, b] = readers;
    let (objects_ok, filter_ok) = (a.await?, b.await?);
    bare_thread.join().expect("the bare consumer panicked");
    // Where a batch's time goes in the node (mean per batch, all partitions): the latency an
    // alert spends inside the node is about one batch.
    let metrics = client.metrics().await?;
    let phase = |what: &str, phase: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(what) && l.contains(&format!("phase=\"{phase}\"")))
            .and_then(|l| l.split_whitespace().last()?.parse().ok())
            .unwrap_or(f64::NAN)
    };
    // The p99 of each phase from its histogram: the upper bound of the first bucket holding
    // 99 % of the batches.
    let p99 = |phase: &str| -> f64 {
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter(|l| l.starts_with("lightkeeper_phase_seconds_bucket") && l.contains(&format!("phase=\"{phase}\"")))
            .filter_map(|l| {
                let le = l.split("le=\"").nth(1)?.split('"').next()?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, l.split_whitespace().last()?.parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last().map_or(0.0, |b| b.1);
        buckets.iter().find(|(_, n)| *n >= 0.99 * total).map_or(f64::NAN, |(le, _)| *le)
    };
    let phases: Vec<String> = ["poll", "decode", "changelog", "store"]
        .iter()
        .map(|p| {
            let mean = phase("lightkeeper_phase_seconds_sum", p) / phase("lightkeeper_phase_seconds_count", p);
            format!("{p} mean {:.2} ms, p99 ≤ {:.1} ms", mean * 1e3, p99(p) * 1e3)
        })
        .collect();
    drop(node);
    drop_topics(&kafka, &topics).await?;

    println!(
        "## push latency and freshness: {} alerts/s for {} s over {} objects ({} partitions, real-size ZTF alerts) — {}",
        p.rate,
        p.seconds,
        p.objects,
        p.partitions,
        machine()
    );
    println!("| produced → | seen | p50 ms | p99 ms | max ms | p50 / bare | p99 / bare |");
    println!("|---|---|---|---|---|---|---|");
    let bare_sorted = sorted(std::mem::take(&mut *bare.latencies.lock().unwrap()));
    anyhow::ensure!(!bare_sorted.is_empty(), "the bare consumer saw nothing");
    let (bare50, bare99) = (percentile(&bare_sorted, 0.5), percentile(&bare_sorted, 0.99));
    let expected_rest = counted.div_ceil(p.rest_every.max(1));
    for (name, seen, expected) in [
        ("bare consumer (baseline)", &bare, counted),
        ("WebSocket object subscription", &objects_seen, counted),
        ("WebSocket filter subscription", &filter_seen, counted),
        ("REST, readable (1 ms polling)", &rest_seen, expected_rest),
    ] {
        let v = if name.starts_with("bare") {
            bare_sorted.clone()
        } else {
            sorted(std::mem::take(&mut *seen.latencies.lock().unwrap()))
        };
        if v.is_empty() {
            println!("| {name} | 0 of {expected} | – | – | – | – | – |");
            continue;
        }
        let (p50, p99) = (percentile(&v, 0.5), percentile(&v, 0.99));
        println!(
            "| {name} | {} of {expected} | {p50:.2} | {p99:.2} | {:.2} | {:.2} | {:.2} |",
            v.len(),
            percentile(&v, 1.0),
            p50 / bare50,
            p99 / bare99
        );
    }
    println!(
        "\nsends behind schedule: {late} of {total}; REST polls given up after 10 s: {}; subscriptions intact: objects {objects_ok}, filter {filter_ok}",
        rest_missed.load(Ordering::Relaxed)
    );
    println!("node, time per batch in each phase: {}", phases.join("; "));
    println!(
        "command: `bench push --rate {} --seconds {} --objects {} --partitions {} --rest-every {}`",
        p.rate, p.seconds, p.objects, p.partitions, p.rest_every
    );
    anyhow::ensure!(objects_ok && filter_ok, "a subscription failed during the run");
    Ok(())
}
