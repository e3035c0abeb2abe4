//! The Confluent Schema Registry API a node serves, on a real embedded node: the shipped Rubin
//! versions by id and by subject version, registration of a version the binary does not ship
//! (admin), idempotence and conflicts, errors Confluent clients read, the registration kept
//! across a restart, and an alert written with the registered id decoded into an object.

use lightkeeper_storage::registry::{EmbeddedRegistry, SchemaRegistry};
use lightkeeper_tests::{shared_data, NodeProcess};
use serde_json::{json, Value};
use std::time::Duration;

const TOKEN: &str = "registry-admin";

async fn get(http: &reqwest::Client, url: String) -> (u16, Value) {
    let r = http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn register(http: &reqwest::Client, node: &str, token: Option<&str>, schema: &str) -> (u16, Value) {
    let mut req = http
        .post(format!("{node}/subjects/alerts-value/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({ "schema": schema }).to_string());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_and_register_rubin_schemas_as_a_confluent_registry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let env = [("LIGHTKEEPER_CLUSTER__ADMIN_TOKEN", TOKEN.to_owned())];
    let mut node = NodeProcess::start(&data, &[], &env).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let http = reqwest::Client::new();
    let url = node.url.clone();

    // Reads: a shipped version, self-contained, by id and as a subject version.
    let (status, body) = get(&http, format!("{url}/schemas/ids/701")).await;
    assert_eq!(status, 200);
    let text = body["schema"].as_str().unwrap();
    apache_avro::Schema::parse_str(text).expect("the served schema parses alone");
    assert_eq!(get(&http, format!("{url}/subjects")).await, (200, json!(["alerts-value"])));
    let (_, versions) = get(&http, format!("{url}/subjects/alerts-value/versions")).await;
    let versions: Vec<u32> = serde_json::from_value(versions).unwrap();
    assert_eq!(versions, EmbeddedRegistry::published().known_ids());
    let (status, v) = get(&http, format!("{url}/subjects/alerts-value/versions/701")).await;
    assert_eq!((status, v["id"].as_u64(), v["version"].as_u64()), (200, Some(701), Some(701)));
    assert_eq!(v["schema"].as_str(), Some(text));
    let (_, latest) = get(&http, format!("{url}/subjects/alerts-value/versions/latest")).await;
    assert_eq!(latest["id"].as_u64(), versions.last().map(|v| u64::from(*v)));

    // Errors carry both bodies.
    let (status, e) = get(&http, format!("{url}/schemas/ids/4242")).await;
    assert_eq!(
        (status, e["error_code"].as_u64(), e["error"]["code"].as_str()),
        (404, Some(40403), Some("schema_not_found"))
    );
    let (status, e) = get(&http, format!("{url}/subjects/nope-value/versions")).await;
    assert_eq!((status, e["error_code"].as_u64()), (404, Some(40401)));
    let (status, e) = get(&http, format!("{url}/subjects/alerts-value/versions/first")).await;
    assert_eq!((status, e["error_code"].as_u64()), (422, Some(42202)));

    // Registration: v7.1 renamed to a version no binary ships.
    let v991 = EmbeddedRegistry::published().get(701).unwrap().canonical.replace("lsst.v7_1.", "lsst.v99_1.");
    assert_eq!(register(&http, &url, None, &v991).await.0, 401);
    assert_eq!(register(&http, &url, Some("wrong"), &v991).await.0, 401);
    assert_eq!(register(&http, &url, Some(TOKEN), &v991).await, (200, json!({"id": 9901})));
    assert_eq!(register(&http, &url, Some(TOKEN), &v991).await, (200, json!({"id": 9901})), "idempotent");
    assert_eq!(register(&http, &url, Some(TOKEN), text).await, (200, json!({"id": 701})), "a shipped one: its id");
    let (status, e) = register(&http, &url, Some(TOKEN), &v991.replace("\"diaSourceId\"", "\"diaSourceIdX\"")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str(), e["error_code"].as_u64()),
        (409, Some("schema_conflict"), Some(409))
    );
    let (status, e) = register(&http, &url, Some(TOKEN), &text.replace("\"diaSourceId\"", "\"diaSourceIdX\"")).await;
    assert_eq!(
        (status, e["error"]["code"].as_str()),
        (409, Some("schema_conflict")),
        "a shipped id cannot be redefined"
    );
    let ztf = r#"{"type":"record","name":"alert","namespace":"ztf","fields":[]}"#;
    let (status, e) = register(&http, &url, Some(TOKEN), ztf).await;
    assert_eq!((status, e["error_code"].as_u64()), (422, Some(42201)), "{e}");
    assert_eq!(register(&http, &url, Some(TOKEN), "{not json").await.0, 422);
    assert!(get(&http, format!("{url}/subjects/alerts-value/versions"))
        .await
        .1
        .as_array()
        .unwrap()
        .contains(&json!(9901)));

    // Kept across a restart, and used to decode alerts written with it.
    node.terminate().unwrap();
    let node = NodeProcess::start(&data, &[], &env).unwrap();
    node.wait_ready(Duration::from_secs(60)).await.unwrap();
    let (status, body) = get(&http, format!("{}/schemas/ids/9901", node.url)).await;
    assert_eq!(status, 200);
    assert!(body["schema"].as_str().unwrap().contains("lsst.v99_1.alert"));
    let mut packet = std::fs::read(shared_data().join("lsst/alerts/pittgoogle-client_wire/lsst.v7_1.avro")).unwrap();
    packet[1..5].copy_from_slice(&9901u32.to_be_bytes());
    let r = http.post(format!("{}/v1/alerts", node.url)).body(packet).send().await.unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
    let key = r.json::<Value>().await.unwrap()["key"].as_str().map(str::to_owned);
    let key = key.expect("the ingest answer names the key");
    lightkeeper_tests::eventually(Duration::from_secs(20), "the object of the registered version", || async {
        let r = http.get(format!("{}/v1/objects/{key}", node.url)).send().await.ok()?;
        (r.status() == 200).then_some(())
    })
    .await
    .unwrap();
}
