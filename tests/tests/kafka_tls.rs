//! Kafka over TLS, end to end: a nisshi broker whose listener speaks only TLS (a per-test CA),
//! a node whose input, changelog and dead-letter topics live on it, and a mirror reading its
//! upstream from it. A node without the CA setting cannot use that broker, so the settings are
//! what makes it work.
//!
//! Not covered here: SASL. The test broker authenticates clients (SCRAM) only on its PostgreSQL
//! engine, which CI does not run; SASL settings are librdkafka properties passed through
//! unchanged, like the SSL ones this test exercises.

use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::registry::EmbeddedRegistry;
use lightkeeper_tests::kafka::{read_topic, OwnBroker, TopicSet};
use lightkeeper_tests::tls::TestCa;
use lightkeeper_tests::{avro_files, broker, eventually, shared_data, unique, NodeProcess};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

fn node_config(tls: &OwnBroker, ca: &TestCa, topics: &TopicSet, with_ca: bool) -> String {
    let properties = if with_ca {
        format!(r#"{{ "security.protocol" = "SSL", "ssl.ca.location" = "{}" }}"#, ca.ca_pem.display())
    } else {
        "{}".to_owned()
    };
    format!(
        r#"
[kafka]
bootstrap = "{bootstrap}"
timeout_ms = 3000
properties = {properties}
[topics]
input = "{input}"
changelog = "{changelog}"
dead_letter = "{dead_letter}"
schemas = "{schemas}"
"#,
        bootstrap = tls.bootstrap,
        input = topics.input,
        changelog = topics.changelog,
        dead_letter = topics.dead_letter,
        schemas = topics.schemas,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_the_mirror_use_kafka_over_tls() {
    let work = tempfile::tempdir().unwrap();
    let ca = TestCa::new(&work.path().join("tls"));
    let tls = OwnBroker::start_tls(&ca, &work.path().join("broker.log"));
    let topics = TopicSet::unique("tls");

    // Without the CA, a node cannot start on the TLS-only broker, and says so.
    let plain = work.path().join("plain.toml");
    std::fs::write(&plain, node_config(&tls, &ca, &topics, false)).unwrap();
    let refused = NodeProcess::start(&work.path().join("plain"), &["--config", plain.to_str().unwrap()], &[]);
    let Err(e) = refused else { panic!("a node without the TLS settings started on a TLS-only broker") };
    assert!(e.to_string().contains("kafka"), "the failure names Kafka: {e}");

    // With them, the node's input, changelog and dead-letter topics live there.
    let with_ca = work.path().join("tls.toml");
    std::fs::write(&with_ca, node_config(&tls, &ca, &topics, true)).unwrap();
    let node = NodeProcess::start(&work.path().join("node"), &["--config", with_ca.to_str().unwrap()], &[]).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let files = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"));
    let http = reqwest::Client::new();
    for f in &files[..3] {
        let r = http.post(format!("{}/v1/alerts", node.url)).body(std::fs::read(f).unwrap()).send().await.unwrap();
        assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    }
    eventually(Duration::from_secs(30), "the object materialized through the TLS broker", || async {
        let r = http.get(format!("{}/v1/objects/ztf:ZTF21abiuvdk", node.url)).send().await.ok()?;
        let v: serde_json::Value = r.json().await.ok()?;
        (v["n_alerts"].as_u64() == Some(3)).then_some(())
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", node.stderr()));

    // The mirror: upstream on the TLS broker, the local topic on the plain test broker.
    let base = unique("tls_mirror").replace('-', "_");
    let upstream_topic = format!("{base}_ztf_20210901_programid1");
    let later = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker/alerts-for-testing_20210901"));
    let producer: BaseProducer =
        tls.client_config(&ca).set("message.max.bytes", "8388608").create().expect("producer over TLS");
    for f in &later[..6] {
        let payload = std::fs::read(f).unwrap();
        producer.send(BaseRecord::<(), [u8]>::to(&upstream_topic).payload(&payload)).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(30)).expect("produced over TLS");
    let local_topic = format!("{base}_alerts");
    let config = work.path().join("mirror.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[upstream]
topics = ["{upstream_topic}"]
group_id = "{base}_group"
[upstream.kafka]
bootstrap = "{upstream}"
properties = {{ "security.protocol" = "SSL", "ssl.ca.location" = "{ca}" }}
[local]
topic = "{local_topic}"
dead_letter = "{base}_dlq"
[local.kafka]
bootstrap = "{local}"
"#,
            upstream = tls.bootstrap,
            ca = ca.ca_pem.display(),
            local = broker(),
        ),
    )
    .unwrap();
    let mut mirror = NodeProcess::run(
        &["mirror", "--config", config.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        &work.path().join("mirror"),
        &[],
    )
    .unwrap();
    let decoder = Decoder::new(Arc::new(EmbeddedRegistry::published()));
    let want: BTreeSet<i64> =
        later[..6].iter().map(|f| decoder.decode(&std::fs::read(f).unwrap()).unwrap().alert_id).collect();
    let got = eventually(Duration::from_secs(60), "the TLS upstream mirrored", || async {
        let records = read_topic(&broker(), &local_topic, want.len(), Duration::from_secs(1));
        let ids: BTreeSet<i64> =
            records.iter().filter_map(|r| decoder.decode(&r.payload).ok()).map(|a| a.alert_id).collect();
        (ids.len() >= want.len()).then_some(ids)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", mirror.stderr()));
    assert_eq!(got, want);
    assert!(mirror.terminate().unwrap().success());
}
