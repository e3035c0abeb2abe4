//! `lightkeeper mirror` against the real broker, a real node and an HTTPS upstream registry.
//!
//! Upstream: two daily ZTF topics (matched by a pattern) with real packets, one object's light
//! curve split across both days, a corrupt message; an LSST topic (named) whose real wire-format
//! packets carry *upstream* schema ids (17, 18, 19) that differ from Lightkeeper's, served by an
//! upstream registry over HTTPS with basic auth and a test CA — 19 is a schema version no node
//! ships, so the mirror must register it with the node; and one id the upstream registry does
//! not know. The mirror is SIGKILLed part-way and restarted; a third daily topic created after
//! the restart is picked up without another.
//!
//! Checked: the local topic holds every good upstream alert (by object key and alert id, after
//! dropping replays), each in the partition Kafka's murmur2 gives its key, keyed by it, with its
//! bytes unchanged but for the schema id; every id written resolves at the node's registry
//! (the node decodes the new version's alerts into objects); the two bad messages are in the
//! dead-letter topic with their reason and source; the mirror stops cleanly on SIGTERM.

use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::registry::{ConfluentRegistry, EmbeddedRegistry, Layered, SchemaRegistry};
use lightkeeper_tests::kafka::{read_topic, TopicSet};
use lightkeeper_tests::registry_stub::RegistryStub;
use lightkeeper_tests::tls::TestCa;
use lightkeeper_tests::{avro_files, broker, eventually, shared_data, unique, NodeProcess};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "mirror-admin";

/// Writes `payloads` to `topic`, round-robin over its partitions, keyless (as surveys do).
fn produce(bootstrap: &str, topic: &str, partitions: u32, payloads: &[Vec<u8>]) {
    KafkaConfig::new(bootstrap).ensure_topic(topic, partitions, None).expect("create upstream topic");
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("message.max.bytes", "8388608")
        .create()
        .expect("producer");
    for (i, payload) in payloads.iter().enumerate() {
        let rec = BaseRecord::<(), [u8]>::to(topic).payload(payload).partition((i as u32 % partitions) as i32);
        p.send(rec).map_err(|(e, _)| e).expect("enqueue");
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).expect("flush");
}

/// The packet with its Confluent schema id replaced.
fn with_id(packet: &[u8], id: u32) -> Vec<u8> {
    assert_eq!(packet[0], 0, "a wire-format packet");
    let mut out = packet.to_vec();
    out[1..5].copy_from_slice(&id.to_be_bytes());
    out
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mirror_merges_daily_topics_rekeys_rewrites_schema_ids_and_survives_sigkill() {
    let bootstrap = broker();
    let work = tempfile::tempdir().unwrap();
    let base = unique("mirror").replace('-', "_");
    let ca = TestCa::new(&work.path().join("tls"));

    // The upstream registry: Rubin's schemas under ids of its own.
    let published = EmbeddedRegistry::published();
    let v71 = published.get(701).unwrap().canonical.clone();
    let v90 = published.get(900).unwrap().canonical.clone();
    let v991 = v71.replace("lsst.v7_1.", "lsst.v99_1.");
    let stub = RegistryStub::start([(17, v71), (18, v90), (19, v991)].into(), &ca, "rubin", "s3cret").await;

    // The local node: its registry is the mirror's local registry.
    let topics = TopicSet::unique("mirror-local");
    let mut env = topics.env();
    env.push(("LIGHTKEEPER_CLUSTER__ADMIN_TOKEN", TOKEN.into()));
    let node = NodeProcess::start(&work.path().join("node"), &["--kafka", &bootstrap], &env).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();

    // Upstream data.
    let ztf = shared_data().join("ztf/alerts");
    let datasim = avro_files(&ztf.join("fink-alert-simulator/datasim_20181129"));
    let curve = avro_files(&ztf.join("pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    let later = avro_files(&ztf.join("pitt-google-broker/alerts-for-testing_20210901"));
    let lsst = shared_data().join("lsst/alerts");
    let boom701 = read(&lsst.join("boom/25409136044802067.avro"));
    let boom900 = read(&lsst.join("boom/7912941781254298.avro"));
    let fake71 = read(&lsst.join("pittgoogle-client_wire/lsst.v7_1.avro"));
    let fake73 = read(&lsst.join("pittgoogle-client_wire/lsst.v7_3.avro"));
    let (half_sim, half_curve) = (datasim.len() / 2, curve.len() / 2);
    let mut day1: Vec<Vec<u8>> = datasim[..half_sim].iter().chain(&curve[..half_curve]).map(|p| read(p)).collect();
    day1.push(b"not an alert at all".to_vec());
    let day2: Vec<Vec<u8>> = datasim[half_sim..].iter().chain(&curve[half_curve..]).map(|p| read(p)).collect();
    let lsst_upstream = vec![with_id(&boom701, 17), with_id(&boom900, 18), with_id(&fake71, 19), with_id(&fake73, 55)];
    let day3: Vec<Vec<u8>> = later.iter().map(|p| read(p)).collect();

    // What must arrive: every good packet, by (key, alert id), with its original bytes.
    let decoder = Decoder::new(Arc::new(EmbeddedRegistry::published()));
    let mut expected: BTreeMap<(String, i64), Vec<u8>> = BTreeMap::new();
    for p in day1.iter().chain(&day2).chain(&day3).filter(|p| p.starts_with(b"Obj\x01")) {
        let a = decoder.decode(p).expect("a shared ZTF packet decodes");
        expected.insert((a.key, a.alert_id), p.clone());
    }
    for (original, upstream) in
        [(&boom701, &lsst_upstream[0]), (&boom900, &lsst_upstream[1]), (&fake71, &lsst_upstream[2])]
    {
        let a = decoder.decode(original).expect("a shared LSST packet decodes");
        expected.insert((a.key, a.alert_id), upstream.clone());
    }
    let first_round = expected.len() - day3.len();

    let day_topic = |d: &str| format!("{base}_ztf_{d}_programid1");
    produce(&bootstrap, &day_topic("20210830"), 2, &day1);
    produce(&bootstrap, &day_topic("20210831"), 2, &day2);
    let lsst_topic = format!("{base}_lsst_alerts");
    produce(&bootstrap, &lsst_topic, 1, &lsst_upstream);

    let dead_letter = format!("{base}_mirror_dlq");
    let config = work.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"
batch_size = 10
max_rate = 60
progress_interval_s = 1
[upstream]
topics = ["{lsst_topic}"]
topic_pattern = '^{base}_ztf_[0-9]+_programid1$'
group_id = "{base}_group"
metadata_refresh_ms = 1000
registry_url = "{registry}"
[upstream.registry_auth]
username = "rubin"
password = "s3cret"
ca_file = "{ca}"
[upstream.kafka]
bootstrap = "{bootstrap}"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "1000" }}
[local]
topic = "{input}"
dead_letter = "{dead_letter}"
registry_url = "{node}"
[local.registry_auth]
bearer_token = "{TOKEN}"
[local.kafka]
bootstrap = "{bootstrap}"
"#,
            registry = stub.url,
            ca = ca.ca_pem.display(),
            input = topics.input,
            node = node.url,
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let mirror_dir = work.path().join("mirror");
    let start_mirror =
        || NodeProcess::run(&["mirror", "--config", &config, "--listen", "127.0.0.1:0"], &mirror_dir, &[]);

    // Run, and SIGKILL it once some — not all — alerts are through.
    let mut mirror = start_mirror().unwrap();
    let killed_at = eventually(Duration::from_secs(60), "the mirror to produce a first part", || async {
        let produced =
            lightkeeper_tests::cluster::metric(&mirror.url, "lightkeeper_mirror_produced_total").await.ok()?;
        (produced >= 30.0).then_some(produced)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", mirror.stderr()));
    mirror.kill();
    assert!((killed_at as usize) < first_round, "killed part-way ({killed_at} of {first_round})");

    // Restart: the same group resumes from its commits.
    let mut mirror = start_mirror().unwrap();
    let local_registry: Arc<dyn SchemaRegistry> = Arc::new(Layered {
        first: Arc::new(EmbeddedRegistry::published()),
        then: Arc::new(ConfluentRegistry::new(&node.url, Duration::from_secs(5))),
    });
    let local_decoder = Decoder::new(local_registry);
    let partitions = 4;
    let check_local = |want: usize| {
        let records = read_topic(&bootstrap, &topics.input, usize::MAX, Duration::from_secs(2));
        let mut got: BTreeMap<(String, i64), Vec<u8>> = BTreeMap::new();
        for r in &records {
            let a = local_decoder.decode(&r.payload).unwrap_or_else(|e| panic!("a local record does not decode: {e}"));
            assert_eq!(r.key.as_deref(), Some(a.key.as_bytes()), "keyed by the object key");
            assert_eq!(
                r.partition as u32,
                partition_for(a.key.as_bytes(), partitions),
                "{} in its murmur2 partition",
                a.key
            );
            got.insert((a.key, a.alert_id), r.payload.clone());
        }
        (got.len() >= want).then_some((records, got))
    };
    let (_, got) = eventually(Duration::from_secs(90), "every first-round alert in the local topic", || async {
        check_local(first_round)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", mirror.stderr()));
    assert_eq!(got.len(), first_round);

    // A new daily topic, picked up by the running mirror.
    produce(&bootstrap, &day_topic("20210901"), 2, &day3);
    let (records, got) =
        eventually(Duration::from_secs(90), "the new daily topic's alerts in the local topic", || async {
            check_local(expected.len())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", mirror.stderr()));
    assert_eq!(got.keys().collect::<BTreeSet<_>>(), expected.keys().collect::<BTreeSet<_>>(), "every alert, once");
    let mut ids = BTreeSet::new();
    for ((key, alert_id), payload) in &got {
        let upstream = &expected[&(key.clone(), *alert_id)];
        if upstream.starts_with(b"Obj\x01") {
            assert_eq!(payload, upstream, "{key}: a container packet is copied unchanged");
        } else {
            assert_eq!(payload[5..], upstream[5..], "{key}: the wire body is unchanged");
            ids.insert(u32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]));
        }
    }
    assert_eq!(ids, [701, 900, 9901].into(), "upstream ids 17, 18, 19 became Lightkeeper's");
    println!(
        "{} local records for {} alerts (replays after the SIGKILL: {})",
        records.len(),
        got.len(),
        records.len() - got.len()
    );

    // The node resolves every id, and decoded the new version's alert into an object.
    let http = reqwest::Client::new();
    for id in &ids {
        let r = http.get(format!("{}/schemas/ids/{id}", node.url)).send().await.unwrap();
        assert_eq!(r.status(), 200, "schema {id} at the node");
    }
    let registered: serde_json::Value =
        http.get(format!("{}/schemas/ids/9901", node.url)).send().await.unwrap().json().await.unwrap();
    assert!(registered["schema"].as_str().unwrap().contains("lsst.v99_1.alert"));
    let fake_key = decoder.decode(&fake71).unwrap().key;
    eventually(Duration::from_secs(30), "the node to materialize the registered version's object", || async {
        let r = http.get(format!("{}/v1/objects/{fake_key}", node.url)).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .unwrap();

    // The two bad messages, dead-lettered with their reason and where they came from.
    let dead = read_topic(&bootstrap, &dead_letter, 2, Duration::from_secs(10));
    let codes: BTreeSet<&str> = dead.iter().map(|r| r.headers["lightkeeper.code"].as_str()).collect();
    assert_eq!(codes, ["unknown_framing", "unknown_schema"].into(), "{dead:?}");
    for r in &dead {
        assert!(r.headers["lightkeeper.source.topic"].starts_with(&base), "{:?}", r.headers);
        assert!(!r.headers["lightkeeper.reason"].is_empty());
    }
    assert!(stub.served.load(std::sync::atomic::Ordering::Relaxed) >= 3, "the upstream registry was asked over HTTPS");

    let status = mirror.terminate().unwrap();
    assert!(status.success(), "the mirror stops cleanly on SIGTERM: {status:?}\n{}", mirror.stderr());
    let _ = KafkaConfig::new(&bootstrap).delete_topics(&[
        &day_topic("20210830"),
        &day_topic("20210831"),
        &day_topic("20210901"),
        &lsst_topic,
        &dead_letter,
    ]);
}
