//! The soak's producer and its ledger.
//!
//! A real Kafka producer (rdkafka, `acks=all`, Kafka's murmur2 partitioner as any Java or
//! librdkafka producer uses — not the node's code) sends alerts at a steady rate to a pool of
//! objects. Each alert is a real ZTF packet in its lean form (`synth::lean`, ~5 kB: the whole
//! `candidate`, no cutouts), re-issued with a fresh candid, so every alert adds one detection
//! and raises its object's version by one. The ledger records what the broker acknowledged and
//! what it did not confirm either way (a delivery that timed out may still have been written):
//! that is the independent reference every replica is checked against — it comes from what was
//! sent, not from any decoder of the node's.

use crate::synth::{self, Template};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::history::Task;

/// How long the producer keeps retrying one alert (librdkafka's `message.timeout.ms`): longer
/// than any broker restart of the soak, so that an outage delays alerts rather than failing them.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(180);

/// Alerts handed to librdkafka whose delivery is not known yet, at most (the producer waits
/// for acknowledgements beyond this: the bound on its memory during a broker outage).
const IN_FLIGHT: usize = 20_000;

/// What the broker acknowledged, per object.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Object key → candid → the detection's magnitude, for every acknowledged alert.
    pub acked: BTreeMap<String, BTreeMap<i64, f64>>,
    /// Alerts whose delivery failed (timed out): they may or may not be in the topic.
    pub unknown: BTreeMap<String, BTreeSet<i64>>,
    pub acked_count: u64,
    pub failed_count: u64,
}

/// The pool of objects and the templates their alerts are made from.
pub struct Workload {
    pub keys: Vec<String>,
    templates: Vec<(Template, f64)>,
    next_candid: i64,
}

impl Workload {
    /// `objects` objects (ZTF-like ids from `first`), alerts from 16 real packets.
    pub fn new(objects: usize, first: usize, candid_base: i64) -> Workload {
        let templates =
            synth::load_templates(&crate::shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 16)
                .iter()
                .map(|t| {
                    let lean = synth::lean(t);
                    let mag = synth::candidate_number(&lean, "magpsf").expect("a ZTF candidate has magpsf");
                    (lean, mag)
                })
                .collect();
        let keys = (0..objects).map(|i| format!("ztf:{}", synth::object_id(first + i))).collect();
        Workload { keys, templates, next_candid: candid_base }
    }

    /// The next alert for object `i`: (key, candid, magnitude, packet).
    pub fn alert(&mut self, i: usize) -> (String, i64, f64, Vec<u8>) {
        let candid = self.next_candid;
        self.next_candid += 1;
        let (t, mag) = &self.templates[candid as usize % self.templates.len()];
        let key = self.keys[i].clone();
        let packet = synth::reissue(t, key.trim_start_matches("ztf:"), candid);
        (key, candid, *mag, packet)
    }
}

/// The producer's client: acknowledged by every replica the broker has (`acks=all`), not
/// idempotent and one request in flight, for the reason `tests/py/produce.py` gives (nisshi
/// refuses idempotent producers' sequences under load); retries keep the order.
pub fn kafka_producer(bootstrap: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("partitioner", "murmur2_random")
        .set("acks", "all")
        .set("enable.idempotence", "false")
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "5")
        .set("message.timeout.ms", DELIVERY_TIMEOUT.as_millis().to_string())
        .set("queue.buffering.max.messages", (IN_FLIGHT * 2).to_string())
        .create()
        .expect("producer")
}

/// Sends one alert to each object of `workload` (the warm-up: every object exists before the
/// faults begin) and waits for every acknowledgement.
pub async fn warm_up(producer: &FutureProducer, topic: &str, workload: &mut Workload, ledger: &Arc<Mutex<Ledger>>) {
    let mut pending = Vec::new();
    for i in 0..workload.keys.len() {
        let (key, candid, mag, packet) = workload.alert(i);
        let f = producer.send_result(FutureRecord::to(topic).key(&key).payload(&packet)).expect("queue has room");
        pending.push((key, candid, mag, f));
    }
    for (key, candid, mag, f) in pending {
        let delivered = f.await.expect("delivery future");
        assert!(delivered.is_ok(), "warm-up alert {candid} of {key} not delivered: {delivered:?}");
        let mut l = ledger.lock().unwrap();
        l.acked.entry(key).or_default().insert(candid, mag);
        l.acked_count += 1;
    }
}

/// Sends alerts to random objects of `workload` at `rate` per second until `stop`; returns
/// once every alert sent has been acknowledged or has failed (recorded in `ledger`).
pub async fn run(
    producer: FutureProducer,
    topic: String,
    mut workload: Workload,
    rate: u32,
    seed: u64,
    ledger: Arc<Mutex<Ledger>>,
    task: Task,
) {
    let Task { history, stop } = task;
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Acknowledgements are awaited in send order by a task of their own; the bounded channel
    // is the bound on alerts in flight.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(String, i64, f64, rdkafka::producer::DeliveryFuture)>(IN_FLIGHT);
    let acker = {
        let ledger = ledger.clone();
        let history = history.clone();
        tokio::spawn(async move {
            while let Some((key, candid, mag, f)) = rx.recv().await {
                let result = f.await;
                let mut l = ledger.lock().unwrap();
                match result {
                    Ok(Ok(_)) => {
                        l.acked.entry(key).or_default().insert(candid, mag);
                        l.acked_count += 1;
                    }
                    Ok(Err((e, _))) => {
                        history
                            .record("produce_failed", json!({ "key": key, "candid": candid, "error": e.to_string() }));
                        l.unknown.entry(key).or_default().insert(candid);
                        l.failed_count += 1;
                    }
                    Err(_) => {
                        l.unknown.entry(key).or_default().insert(candid);
                        l.failed_count += 1;
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) {
        // Open loop at `rate`: after a stall (a full queue during an outage) it sends the
        // backlog as fast as the queue takes it.
        let due = started + Duration::from_secs_f64(sent as f64 / f64::from(rate));
        tokio::time::sleep_until(due.into()).await;
        let (key, candid, mag, packet) = workload.alert(rng.random_range(0..workload.keys.len()));
        let mut record = FutureRecord::to(&topic).key(&key).payload(&packet);
        let future = loop {
            match producer.send_result(record) {
                Ok(f) => break f,
                Err((_, r)) => {
                    // Queue full: librdkafka is retrying against a broker that is down.
                    record = r;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        if tx.send((key, candid, mag, future)).await.is_err() {
            break;
        }
        sent += 1;
    }
    drop(tx);
    acker.await.expect("acker task");
    history.record("producer_stopped", json!({ "sent": sent, "seconds": started.elapsed().as_secs_f64() }));
}
