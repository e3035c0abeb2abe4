//! Access control (API.md, "Access"), against real `lightkeeper` processes: tokens made by
//! `lightkeeper token` and configured by their hash, every scope, anonymous reads and ingest
//! off, WebSocket tokens (header and `access_token`) and origins, rate limits with
//! `Retry-After`, and a cluster whose nodes forward reads, relay subscriptions and scatter
//! queries to each other with the cluster token while anonymous callers are refused.

use futures::{SinkExt, StreamExt};
use lightkeeper_clients::api::ws::{ClientOp, ServerMsg};
use lightkeeper_clients::Client;
use lightkeeper_tests::cluster::Cluster;
use lightkeeper_tests::*;
use reqwest::StatusCode;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(60);

fn make_token(name: &str, scopes: &str) -> MadeToken {
    let made = lightkeeper_tests::make_token(name, scopes);
    assert!(!made.entry.contains(&made.token), "the configuration entry holds the hash, never the token");
    assert!(made.entry.contains(&format!("name = {name:?}")), "{}", made.entry);
    made
}

fn write_config(dir: &Path, text: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("node.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// Subscribes `client` to every one of `keys` and waits until each has sent a snapshot or an
/// update (`via` names the node in the failure message).
async fn hears_of_every_key(client: &Client, keys: &std::collections::BTreeSet<String>, via: &str) {
    let all: Vec<&str> = keys.iter().map(String::as_str).collect();
    let mut sub =
        client.subscribe("all", &all, None).await.unwrap_or_else(|e| panic!("subscribing through {via}: {e}"));
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < keys.len() {
        match sub.next(WAIT).await.unwrap() {
            Some(ServerMsg::Snapshot { key, .. } | ServerMsg::Update { key, .. }) => {
                seen.insert(key);
            }
            other => panic!("through {via}: expected snapshots and updates, got {other:?}"),
        }
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// `(status, error code)` of a response with the API's error body.
async fn refusal(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    (status, body["error"]["code"].as_str().unwrap_or_default().to_owned())
}

async fn ws_status(url: &str, headers: &[(&'static str, &str)]) -> Result<(), u16> {
    let mut req = url.into_client_request().unwrap();
    for &(k, v) in headers {
        req.headers_mut().insert(k, HeaderValue::from_str(v).unwrap());
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_scope_is_enforced_and_anonymous_callers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("node");
    let reader = make_token("reader", "read");
    let producer = make_token("producer", "ingest");
    let admin = make_token("operator", "admin");
    let config = write_config(
        tmp.path(),
        &format!(
            "[access]\nanonymous_reads = false\nanonymous_ingest = false\n\n{}\n{}\n{}",
            reader.entry, producer.entry, admin.entry
        ),
    );
    let schemas = lsst_schemas().display().to_string();
    let node = NodeProcess::start(&dir, &["--config", &config, "--schemas", &schemas], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let url = &node.url;
    let h = http();

    // Health and the API's description stay open: load balancers and clients need them.
    for open in ["/healthz", "/readyz", "/openapi.json", "/"] {
        let resp = h.get(format!("{url}{open}")).send().await.unwrap();
        assert!(resp.status().is_success(), "{open}: {}", resp.status());
    }

    // Ingest: anonymous 401 (with WWW-Authenticate), a reader 403 naming the scope, a producer
    // through `lightkeeper ingest --token`.
    let packet = shared_data().join("lsst/alerts/boom/25409136044802067.avro");
    let body = std::fs::read(&packet).unwrap();
    let resp = h.post(format!("{url}/v1/alerts")).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.headers().get("www-authenticate").map(|v| v.to_str().unwrap()), Some("Bearer"));
    assert_eq!(refusal(resp).await, (401, "unauthorized".into()));
    let resp = h.post(format!("{url}/v1/alerts")).bearer_auth(&reader.token).body(body.clone()).send().await.unwrap();
    let (status, text) = (resp.status(), resp.text().await.unwrap());
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    assert!(text.contains("\"forbidden\"") && text.contains("reader") && text.contains("ingest"), "{text}");
    let ztf = shared_data().join("ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk");
    let out = Command::new(binary())
        .args(["ingest", "--url", url, ztf.to_str().unwrap(), packet.to_str().unwrap()])
        .env("LIGHTKEEPER_TOKEN", &producer.token)
        .output()
        .unwrap();
    assert!(out.status.success(), "ingest with the producer's token: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(binary()).args(["ingest", "--url", url, packet.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success(), "ingest without a token fails");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"), "{}", String::from_utf8_lossy(&out.stderr));

    // Reads: anonymous 401, unknown token 401, the producer 403, the reader 200.
    let object = format!("{url}/v1/objects/ztf:ZTF21abiuvdk");
    assert_eq!(refusal(h.get(&object).send().await.unwrap()).await, (401, "unauthorized".into()));
    assert_eq!(refusal(h.get(&object).bearer_auth("not-a-token").send().await.unwrap()).await.0, 401);
    assert_eq!(refusal(h.get(&object).bearer_auth(&producer.token).send().await.unwrap()).await.0, 403);
    let client = Client::with_token(url, Some(&reader.token)).unwrap();
    let obj = eventually(WAIT, "the object readable with the reader's token", || async {
        client.object("ztf:ZTF21abiuvdk").await.ok().filter(|o| o["n_alerts"] == 22)
    })
    .await
    .unwrap();
    assert_eq!(obj["key"], "ztf:ZTF21abiuvdk");
    assert!(client.cone(obj["ra"].as_f64().unwrap(), obj["dec"].as_f64().unwrap(), 5.0, None, None).await.is_ok());
    let out = Command::new(binary())
        .args(["get", "--url", url, "ztf:ZTF21abiuvdk", "--token", &reader.token])
        .output()
        .unwrap();
    assert!(out.status.success(), "lightkeeper get --token: {}", String::from_utf8_lossy(&out.stderr));

    // Admin: the reader 403, the operator 200; registering a schema answers in the registry's
    // own error format.
    let pipelines = format!("{url}/v1/pipelines");
    assert_eq!(refusal(h.get(&pipelines).bearer_auth(&reader.token).send().await.unwrap()).await.0, 403);
    assert_eq!(h.get(&pipelines).bearer_auth(&admin.token).send().await.unwrap().status(), StatusCode::OK);
    let resp = h.post(format!("{url}/subjects/alerts-value/versions")).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error_code"], 40101, "{body}");

    // Node-to-node routes take only the cluster token (none is configured here).
    let internal = format!("{url}/v1/internal/partitions/0/objects");
    assert_eq!(refusal(h.get(&internal).send().await.unwrap()).await.0, 401);
    assert_eq!(refusal(h.get(&internal).bearer_auth(&admin.token).send().await.unwrap()).await.0, 403);

    // WebSockets: refused without a token; the header or `access_token` let the reader in; a
    // foreign origin is refused even with a token, the node's own origin is not.
    let ws = format!("{}/v1/ws", url.replacen("http", "ws", 1));
    assert_eq!(ws_status(&ws, &[]).await, Err(401));
    assert_eq!(ws_status(&format!("{ws}?access_token={}", producer.token), &[]).await, Err(403));
    let bearer = format!("Bearer {}", reader.token);
    assert_eq!(ws_status(&ws, &[("authorization", &bearer)]).await, Ok(()));
    let evil = [("authorization", bearer.as_str()), ("origin", "https://evil.example")];
    assert_eq!(ws_status(&ws, &evil).await, Err(403));
    let own = url.clone();
    assert_eq!(ws_status(&ws, &[("authorization", &bearer), ("origin", &own)]).await, Ok(()));
    // DNS rebinding: a page on a domain pointed at this node's address sends that domain as
    // both Host and Origin; a matching pair is not enough.
    let port = url.rsplit(':').next().unwrap();
    let (host, origin) = (format!("rebound.evil.example:{port}"), format!("http://rebound.evil.example:{port}"));
    let rebound = [("authorization", bearer.as_str()), ("host", host.as_str()), ("origin", origin.as_str())];
    assert_eq!(ws_status(&ws, &rebound).await, Err(403));
    // A browser's way in: the token in the query string, then a live subscription.
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("{ws}?access_token={}", reader.token)).await.unwrap();
    socket
        .send(Message::Text(ClientOp::subscribe_objects("s", vec!["ztf:ZTF21abiuvdk".into()], None).to_text().into()))
        .await
        .unwrap();
    let first = tokio::time::timeout(WAIT, socket.next()).await.unwrap().unwrap().unwrap();
    match serde_json::from_str::<ServerMsg>(first.to_text().unwrap()).unwrap() {
        ServerMsg::Snapshot { key, .. } => assert_eq!(key, "ztf:ZTF21abiuvdk"),
        other => panic!("expected the object's snapshot, got {other:?}"),
    }
    // The Rust client's subscriptions carry its token too.
    let mut sub = client.subscribe("c", &["ztf:ZTF21abiuvdk"], None).await.unwrap();
    assert!(matches!(sub.next(WAIT).await.unwrap(), Some(ServerMsg::Snapshot { .. })));

    // Every refusal is counted, by reason.
    let metrics =
        h.get(format!("{url}/metrics")).bearer_auth(&reader.token).send().await.unwrap().text().await.unwrap();
    let denied = |reason: &str| -> f64 {
        let series = format!("lightkeeper_access_denied_total{{reason=\"{reason}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok()).unwrap_or(0.0)
    };
    assert!(denied("unauthorized") >= 6.0, "{}", denied("unauthorized"));
    assert!(denied("forbidden") >= 6.0, "{}", denied("forbidden"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callers_over_their_rate_get_429_with_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let alice = make_token("alice", "read");
    let bob = make_token("bob", "read");
    let config = write_config(
        tmp.path(),
        &format!(
            "[access]\nper_token_per_sec = 1\nper_address_per_sec = 1\nburst = 3\n\n{}\n{}",
            alice.entry, bob.entry
        ),
    );
    let node = NodeProcess::start(&tmp.path().join("node"), &["--config", &config], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let h = http();
    let cluster = format!("{}/v1/cluster", node.url);
    let get = |token: Option<&str>| {
        let mut req = h.get(&cluster);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // A token: its burst, then 429 with Retry-After; another token is not held back by it.
    for i in 0..3 {
        assert_eq!(get(Some(&alice.token)).await.unwrap().status(), StatusCode::OK, "alice's request {i}");
    }
    let over = get(Some(&alice.token)).await.unwrap();
    let retry_after: u64 = over.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    let (status, code) = refusal(over).await;
    assert_eq!((status, code.as_str()), (429, "rate_limited"));
    assert_eq!(get(Some(&bob.token)).await.unwrap().status(), StatusCode::OK, "bob has his own bucket");
    // After the time the node asked for, alice is served again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(get(Some(&alice.token)).await.unwrap().status(), StatusCode::OK, "alice after Retry-After");

    // An address without a token: the same, and wrong tokens count against it (guessing is slow).
    let started = Instant::now();
    let mut served = 0;
    let mut limited = None;
    for i in 0..10 {
        let token = (i % 2 == 1).then_some("a-guess");
        let resp = get(token).await.unwrap();
        match resp.status() {
            StatusCode::OK | StatusCode::UNAUTHORIZED => served += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(resp.headers().contains_key("retry-after"));
                limited = Some(i);
                break;
            }
            other => panic!("unexpected {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let limited = limited.expect("the address was limited");
    // The burst of 3, plus at most one more per second that passed.
    assert!(served >= 3 && served as f64 <= 3.0 + elapsed.ceil(), "{served} served in {elapsed:.1} s before 429");
    assert!(limited >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_call_each_other_with_the_cluster_token_when_anonymous_reads_are_off() {
    let tmp = tempfile::tempdir().unwrap();
    let reader = make_token("reader", "read");
    let mut cluster = Cluster::new("access", &["a", "b"], 2, tmp.path()).fixed_masters();
    cluster.extra_tables = format!("\n[access]\nanonymous_reads = false\n\n{}", reader.entry);
    let nodes = cluster.start_all(WAIT).await;
    let (a, b) = (&nodes[0].url, &nodes[1].url);

    // Ingest through node a (anonymous ingest is on). Node a masters both partitions, so reads
    // through b are forwarded to a, b's cone searches scatter to a's internal routes, and b's
    // subscriptions are served from a.
    let anonymous = Client::new(a).unwrap();
    let files = avro_files(&shared_data().join("ztf/alerts/pitt-google-broker"));
    let mut keys = std::collections::BTreeSet::new();
    for f in files.iter().take(40) {
        keys.insert(anonymous.ingest(std::fs::read(f).unwrap()).await.unwrap().key);
    }
    for url in [a, b] {
        let client = Client::with_token(url, Some(&reader.token)).unwrap();
        for key in &keys {
            let obj = eventually(WAIT, "every object readable through every node", || async {
                client.object(key).await.ok()
            })
            .await
            .unwrap();
            assert_eq!(&obj["key"], key);
        }
        // A cone search scatters to every partition's master over the internal routes.
        let obj = client.object(keys.first().unwrap()).await.unwrap();
        let found = client.cone(obj["ra"].as_f64().unwrap(), obj["dec"].as_f64().unwrap(), 2.0, None, None).await;
        let found = found.unwrap_or_else(|e| panic!("cone through {url}: {e}"));
        assert!(found.missing_partitions.is_empty(), "every partition answered: {:?}", found.missing_partitions);
        assert!(found.objects.iter().any(|o| &o.object.key == keys.first().unwrap()));
        // A subscription to every object: through b, served by a's masters over a relay.
        hears_of_every_key(&client, &keys, url).await;
        // Anonymous readers are refused on every node.
        let anonymous = http().get(format!("{url}/v1/objects/{}", keys.first().unwrap())).send().await.unwrap();
        assert_eq!(refusal(anonymous).await.0, 401);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_serves_and_calls_itself_over_tls_with_a_test_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = lightkeeper_tests::tls::TestCa::new(&tmp.path().join("tls"));
    let reader = make_token("reader", "read");
    let mut cluster = Cluster::new("tls", &["a", "b"], 2, tmp.path()).fixed_masters();
    cluster.scheme = "https";
    cluster.extra_tables = format!(
        "\n[tls]\ncert_file = {:?}\nkey_file = {:?}\nca_file = {:?}\n\n[access]\nanonymous_reads = false\n\n{}",
        ca.cert_pem, ca.key_pem, ca.ca_pem, reader.entry
    );
    let nodes = cluster.start_all(WAIT).await;
    let (a, b) = (&nodes[0].url, &nodes[1].url);
    assert!(a.starts_with("https://") && b.starts_with("https://"), "the nodes announce https: {a} {b}");
    let ca_pem = std::fs::read(&ca.ca_pem).unwrap();
    let options = |token: Option<&str>| lightkeeper_clients::ClientOptions {
        token: token.map(str::to_owned),
        ca_pem: Some(ca_pem.clone()),
    };

    // Plain HTTP to a TLS port gets no answer; a client that does not trust the test CA fails
    // its handshake.
    let plain = b.replacen("https", "http", 1);
    assert!(http().get(format!("{plain}/healthz")).send().await.is_err(), "plain HTTP is not served");
    assert!(http().get(format!("{b}/healthz")).send().await.is_err(), "an unknown CA is refused");

    // The coordinator's Raft runs over TLS (the cluster formed: every node is ready), and so do
    // forwarded reads, scattered queries and relays: node a masters both partitions.
    let ingest = Client::with_options(a, options(None)).unwrap();
    let mut keys = std::collections::BTreeSet::new();
    for f in avro_files(&shared_data().join("ztf/alerts/pitt-google-broker")).iter().take(20) {
        keys.insert(ingest.ingest(std::fs::read(f).unwrap()).await.unwrap().key);
    }
    let client = Client::with_options(b, options(Some(&reader.token))).unwrap();
    for key in &keys {
        let obj =
            eventually(WAIT, "objects readable through b", || async { client.object(key).await.ok() }).await.unwrap();
        assert_eq!(&obj["key"], key);
    }
    let first = client.object(keys.first().unwrap()).await.unwrap();
    let found = client.cone(first["ra"].as_f64().unwrap(), first["dec"].as_f64().unwrap(), 2.0, None, None).await;
    assert!(found.unwrap().objects.iter().any(|o| &o.object.key == keys.first().unwrap()));
    hears_of_every_key(&client, &keys, b).await;
    let view = client.cluster().await.unwrap();
    let coordinator = view.coordinator.expect("the coordinator's view");
    assert_eq!(coordinator.voters.len(), 2, "both nodes vote: {coordinator:?}");
}

/// A client that trusts only the CA in `ca_pem`.
fn trusting(ca_pem: &Path) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(ca_pem).unwrap()).unwrap();
    reqwest::Client::builder().add_root_certificate(ca).timeout(Duration::from_secs(5)).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_node_reloads_its_certificate_on_sighup_and_keeps_it_when_the_new_one_is_bad() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (
        lightkeeper_tests::tls::TestCa::new(&tmp.path().join("old")),
        lightkeeper_tests::tls::TestCa::new(&tmp.path().join("new")),
    );
    // The node reads its certificate from these paths; a renewal replaces the files.
    let (cert, key) = (tmp.path().join("node.pem"), tmp.path().join("node.key"));
    std::fs::copy(&old.cert_pem, &cert).unwrap();
    std::fs::copy(&old.key_pem, &key).unwrap();
    let config = write_config(&tmp.path().join("conf"), &format!("[tls]\ncert_file = {cert:?}\nkey_file = {key:?}\n"));
    let schemas = lsst_schemas().display().to_string();
    let node =
        NodeProcess::start(&tmp.path().join("node"), &["--config", &config, "--schemas", &schemas], &[]).unwrap();
    node.wait_ready(WAIT).await.unwrap();
    let health = format!("{}/healthz", node.url);
    assert!(trusting(&old.ca_pem).get(&health).send().await.is_ok(), "the old certificate is served");
    assert!(trusting(&new.ca_pem).get(&health).send().await.is_err(), "not the new one yet");

    // A half-done renewal (a certificate whose key is still the old one): refused, the old
    // certificate kept.
    std::fs::copy(&new.cert_pem, &cert).unwrap();
    node.signal(libc::SIGHUP);
    eventually(WAIT, "the node to refuse the mismatched pair", || async {
        node.stderr().contains("could not be reloaded").then_some(())
    })
    .await
    .unwrap();
    assert!(trusting(&old.ca_pem).get(&health).send().await.is_ok(), "the old certificate is still served");

    // The renewal completed: the next handshake gets the new certificate, without a restart.
    std::fs::copy(&new.key_pem, &key).unwrap();
    node.signal(libc::SIGHUP);
    eventually(WAIT, "the new certificate to be served", || async {
        trusting(&new.ca_pem).get(&health).send().await.ok().filter(|r| r.status().is_success())
    })
    .await
    .unwrap();
    assert!(trusting(&old.ca_pem).get(&health).send().await.is_err(), "the old certificate is gone");
    assert!(node.stderr().contains("TLS certificate reloaded"), "the reload is logged");
}
