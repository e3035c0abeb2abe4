//! The router driven in-process (`tower::ServiceExt::oneshot`, no socket) over a real embedded
//! node: status codes and typed bodies of the answers every client relies on. No broker.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{Answer, TestNode};
use lightkeeper_api::cluster::ClusterView;
use lightkeeper_api::error::ErrorResponse;
use lightkeeper_api::health::{Health, Ready};
use std::time::{Duration, Instant};

/// Small enough that the too-large test stays fast.
const MAX_BODY: usize = 64 << 10;

async fn node() -> TestNode {
    TestNode::start(|c| c.limits.max_body_bytes = MAX_BODY).await
}

/// Asserts an error answer: its status, and an `ErrorResponse` with `code` and a message.
fn assert_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "{}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.content_type(), "application/json");
    let e: ErrorResponse = a.json();
    assert_eq!(e.error.code, code, "{}", e.error.message);
    assert!(!e.error.message.is_empty(), "error {code} says what was wrong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_health() {
    let n = node().await;
    let a = n.get("/healthz").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json::<Health>(), Health { status: "ok".into() });
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_key_is_invalid_key() {
    let n = node().await;
    assert_error(&n.get("/v1/objects/bad-key").await, StatusCode::BAD_REQUEST, "invalid_key");
    assert_error(&n.get("/v1/objects/bad-key/lightcurve").await, StatusCode::BAD_REQUEST, "invalid_key");
    assert_error(&n.get("/v1/objects/ztf:ZTF21abiuvdk?max_lag=x").await, StatusCode::BAD_REQUEST, "invalid_query");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_route_is_no_such_route() {
    let n = node().await;
    assert_error(&n.get("/v1/nothing/here").await, StatusCode::NOT_FOUND, "no_such_route");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_is_method_not_allowed() {
    let n = node().await;
    let a = n.request(Method::DELETE, "/healthz", Body::empty()).await;
    assert_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let a = n.get("/v1/alerts").await;
    assert_error(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_refuses_empty_and_too_large_bodies() {
    let n = node().await;
    assert_error(&n.request(Method::POST, "/v1/alerts", Body::empty()).await, StatusCode::BAD_REQUEST, "empty_body");
    let big = vec![0u8; MAX_BODY + 1];
    let a = n.request(Method::POST, "/v1/alerts", big).await;
    assert_error(&a, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // Not an alert packet at all: refused with the reason, nothing is appended.
    let a = n.request(Method::POST, "/v1/alerts", &b"not avro"[..]).await;
    assert_error(&a, StatusCode::BAD_REQUEST, "undecodable_alert");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_routes_are_disabled_without_a_token() {
    let n = node().await;
    // The embedded default configures no cluster.admin_token: every admin call is a 409.
    for path in [
        "/v1/admin/partitions/0/promote",
        "/v1/admin/partitions/0/drain",
        "/v1/admin/nodes/node-1/drain",
        "/v1/admin/nodes/node-1/decommission",
    ] {
        let a = n.request(Method::POST, path, Body::empty()).await;
        assert_error(&a, StatusCode::CONFLICT, "admin_disabled");
    }
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_json_is_an_openapi_document() {
    let n = node().await;
    let a = n.get("/openapi.json").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.content_type(), "application/json");
    let spec: utoipa::openapi::OpenApi = a.json();
    assert!(spec.paths.paths.contains_key("/v1/objects/{key}/lightcurve"));
    assert_eq!(spec.info.title, "Lightkeeper API");
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_is_a_cluster_view() {
    let n = node().await;
    let a = n.get("/v1/cluster").await;
    assert_eq!(a.status, StatusCode::OK);
    let view: ClusterView = a.json();
    assert_eq!(view.node, "node-1");
    assert_eq!(view.partitions.len(), 4, "the default topics.partitions");
    assert!(view.partitions.iter().enumerate().all(|(i, p)| p.partition == i as u32));
    assert!(view.nodes.is_empty(), "a single node lists no other nodes");
    assert!(view.coordinator.is_none(), "the coordinator starts in Node::serve, not here");
    assert!(!view.draining);
    n.stop().await;
}

/// `/readyz` does not wait for the coordinator: a single node is ready once its replicas have
/// restored (at once, from an empty log). Until then it answers 503 `unavailable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_turns_ready_once_the_replicas_restore() {
    let n = node().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        let a = n.get("/readyz").await;
        if a.status == StatusCode::OK {
            break a.json::<Ready>();
        }
        assert_error(&a, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(Instant::now() < deadline, "not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(ready, Ready { status: "ready".into(), replicas: 4, degraded: Vec::new() });
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_object_is_object_not_found_once_ready() {
    let n = node().await;
    // A key of a partition whose replica is still restoring waits (bounded) for it to serve.
    let a = n.get("/v1/objects/ztf:ZTFnothere").await;
    assert_error(&a, StatusCode::NOT_FOUND, "object_not_found");
    n.stop().await;
}
