//! A stand-in for a survey's Confluent Schema Registry: `GET /schemas/ids/{id}` over HTTPS
//! with HTTP basic auth, serving the schemas a test gives it under the ids it chooses — so a
//! test can put Rubin alerts upstream under ids that differ from Lightkeeper's, as a real
//! upstream registry may. It answers what Confluent answers (404 with `error_code` 40403, 401
//! without the right credentials) and counts the requests it served.

use crate::tls::TestCa;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub struct RegistryStub {
    pub url: String,
    pub served: Arc<AtomicU64>,
    handle: axum_server::Handle,
}

#[derive(Clone)]
struct Stub {
    schemas: Arc<BTreeMap<u32, String>>,
    authorization: String,
    served: Arc<AtomicU64>,
}

async fn by_id(State(s): State<Stub>, Path(id): Path<u32>, headers: HeaderMap) -> Response {
    let given = headers.get("authorization").and_then(|v| v.to_str().ok());
    if given != Some(s.authorization.as_str()) {
        let body = serde_json::json!({"error_code": 40101, "message": "Unauthorized"});
        return (StatusCode::UNAUTHORIZED, Json(body)).into_response();
    }
    s.served.fetch_add(1, Ordering::Relaxed);
    match s.schemas.get(&id) {
        Some(schema) => Json(serde_json::json!({ "schema": schema })).into_response(),
        None => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error_code": 40403, "message": "Schema not found"})))
            .into_response(),
    }
}

impl RegistryStub {
    /// Serves `schemas` over HTTPS with `ca`'s server certificate, for `user`:`password`.
    pub async fn start(schemas: BTreeMap<u32, String>, ca: &TestCa, user: &str, password: &str) -> RegistryStub {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config =
            axum_server::tls_rustls::RustlsConfig::from_pem_file(&ca.cert_pem, &ca.key_pem).await.expect("tls config");
        let served = Arc::new(AtomicU64::new(0));
        let stub = Stub {
            schemas: Arc::new(schemas),
            authorization: format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            ),
            served: served.clone(),
        };
        let app = Router::new().route("/schemas/ids/{id}", get(by_id)).with_state(stub);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(listener, config).handle(handle.clone());
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        // `localhost`, so the certificate's DNS name is what is checked.
        RegistryStub { url: format!("https://localhost:{port}"), served, handle }
    }
}

impl Drop for RegistryStub {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}
