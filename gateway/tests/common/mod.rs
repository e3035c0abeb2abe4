//! A real node for router tests: the embedded single-node default (no broker) in a temporary
//! directory, driven through `routes::router` with `tower::ServiceExt::oneshot` (no socket).
//!
//! The coordinator starts only in `Node::serve`, which these tests never call: the router
//! answers as a node does in the moment between binding its listener and opening Raft.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use lightkeeper_gateway::config::Config;
use lightkeeper_gateway::node::Node;
use lightkeeper_gateway::routes::router;
use serde::de::DeserializeOwned;
use tempfile::TempDir;
use tower::ServiceExt;

pub struct TestNode {
    node: Node,
    pub app: Router,
    _dir: TempDir,
}

/// One answer of the router.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The body as `T`; panics with the body text when it is not one.
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} body is not a {}: {e}: {}",
                self.status,
                std::any::type_name::<T>(),
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn content_type(&self) -> &str {
        self.headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

impl TestNode {
    /// Starts a node with `Config::default()` changed by `edit` (its `data_dir` is a fresh
    /// temporary directory, and there is no broker).
    pub async fn start(edit: impl FnOnce(&mut Config)) -> TestNode {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config { data_dir: dir.path().join("data"), kafka: None, ..Config::default() };
        edit(&mut config);
        config.validate().expect("valid test configuration");
        // `Node::start` opens RocksDB and the embedded log: blocking work.
        let node = tokio::task::spawn_blocking(move || Node::start(&config)).await.unwrap().expect("node starts");
        let app = router(node.state.clone());
        TestNode { node, app, _dir: dir }
    }

    pub async fn call(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.expect("the router is infallible");
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.expect("body");
        Answer { status: parts.status, headers: parts.headers, body }
    }

    pub async fn request(&self, method: Method, uri: &str, body: impl Into<Body>) -> Answer {
        self.call(Request::builder().method(method).uri(uri).body(body.into()).expect("request")).await
    }

    pub async fn get(&self, uri: &str) -> Answer {
        self.request(Method::GET, uri, Body::empty()).await
    }

    /// Stops the replicas' threads before the directory is removed.
    pub async fn stop(self) {
        let TestNode { node, app, _dir } = self;
        drop(app);
        tokio::task::spawn_blocking(move || node.state.replicas.stop_all()).await.unwrap();
    }
}
