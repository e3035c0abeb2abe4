//! Rust client of the Lightkeeper API v1 (see API.md): REST reads, ingest, and WebSocket
//! subscriptions.
//!
//! Every public route has a method, answering the wire contract's types (`lightkeeper-api`,
//! re-exported as [`api`]): objects ([`Client::summary`], [`Client::light_curve`],
//! [`Client::alert_history`]), cutouts and packets, finding ([`Client::cone`], [`Client::query`],
//! [`Client::fields`]), [`Client::stats`], ingest, the cluster and health routes, the admin
//! routes (with the bearer token), and WebSocket subscriptions. [`Client::object`],
//! [`Client::lightcurve`] and [`Client::alerts`] return the same bodies as JSON
//! (`serde_json::Value`) for callers that compare them with other sources. The server's
//! `{"error":{"code","message"}}` becomes [`ClientError::Api`].

use api::admin::{DecommissionReport, Drained, NodeDrainReport, PromoteReport};
use api::cluster::ClusterView;
use api::error::ErrorResponse;
use api::filter::Fields;
use api::health::{Health, Ready};
pub use api::ingest::Accepted;
use api::model::CutoutKind;
use api::object::ObjectSummary;
use api::objects::{AlertHistory, Cutouts, Lightcurve};
use api::query::{ConeAnswer, ObjectsPage};
use api::stats::{StatsAnswer, StatsStep};
use api::ws::{ClientOp, ServerMsg};
use futures::{SinkExt, StreamExt};
pub use lightkeeper_api as api;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{status} {code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("invalid response: {0}")]
    Invalid(String),
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// `Bearer <token>`, sent with every request and WebSocket handshake.
    authorization: Option<reqwest::header::HeaderValue>,
    /// The TLS of WebSocket connections to `https://` nodes whose CA was given.
    ws_tls: Option<tokio_tungstenite::Connector>,
}

/// How a [`Client`] reaches its node: a token, and the CA of a node serving TLS with a private
/// certificate authority (without one, `https://` nodes are checked against the public roots).
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    pub token: Option<String>,
    /// PEM certificates of the CA the node's certificate chains to (`tls.ca_file` of the nodes).
    pub ca_pem: Option<Vec<u8>>,
}

impl Client {
    /// A client without a token (anonymous: what the node's `access` configuration allows).
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::with_token(base_url, None)
    }

    /// A client that sends `token` as `Authorization: Bearer` on every call (API.md, "Access").
    pub fn with_token(base_url: &str, token: Option<&str>) -> Result<Client, ClientError> {
        Client::with_options(base_url, ClientOptions { token: token.map(str::to_owned), ca_pem: None })
    }

    /// A client with a token and the CA of a node that serves TLS (see [`ClientOptions`]).
    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Client, ClientError> {
        let authorization = options
            .token
            .as_deref()
            .map(|t| {
                let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                    .map_err(|_| ClientError::Invalid("the token is not valid in an HTTP header".into()))?;
                v.set_sensitive(true);
                Ok::<_, ClientError>(v)
            })
            .transpose()?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = &authorization {
            headers.insert(reqwest::header::AUTHORIZATION, v.clone());
        }
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(30)).default_headers(headers);
        let mut ws_tls = None;
        if let Some(pem) = &options.ca_pem {
            let invalid = |e: &dyn std::fmt::Display| ClientError::Invalid(format!("the CA certificates: {e}"));
            let certs = reqwest::Certificate::from_pem_bundle(pem)?;
            if certs.is_empty() {
                return Err(invalid(&"no certificate in the PEM"));
            }
            http = http.use_rustls_tls().tls_built_in_root_certs(false);
            for c in certs {
                http = http.add_root_certificate(c);
            }
            let mut roots = rustls::RootCertStore::empty();
            use rustls::pki_types::pem::PemObject;
            for der in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                roots.add(der.map_err(|e| invalid(&e))?).map_err(|e| invalid(&e))?;
            }
            let config =
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .map_err(|e| invalid(&e))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
            ws_tls = Some(tokio_tungstenite::Connector::Rustls(Arc::new(config)));
        }
        Ok(Client { base: base_url.trim_end_matches('/').to_owned(), http: http.build()?, authorization, ws_tls })
    }

    async fn check(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorResponse>(&text) {
            Ok(r) => ClientError::Api { status, code: r.error.code, message: r.error.message },
            Err(_) => ClientError::Api { status, code: "unknown".into(), message: text },
        })
    }

    fn object_url(&self, key: &str, suffix: &str) -> String {
        let enc: String = form_urlencoded_component(key);
        format!("{}/v1/objects/{enc}{suffix}", self.base)
    }

    /// `GET /v1/objects/{key}/lightcurve?{query}` as the node renders it (`format=csv` or
    /// `format=votable` are text, not JSON).
    pub async fn lightcurve_text(&self, key: &str, query: &str) -> Result<String, ClientError> {
        let resp = self.http.get(self.object_url(key, &format!("/lightcurve?{query}"))).send().await?;
        Ok(Self::check(resp).await?.text().await?)
    }

    pub async fn get_json(&self, path_and_query: &str) -> Result<Value, ClientError> {
        let resp = self.http.get(format!("{}{path_and_query}", self.base)).send().await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// `GET /v1/cluster`: what the node hosts, in which role, and its coordinator's view.
    pub async fn cluster(&self) -> Result<ClusterView, ClientError> {
        let resp = self.http.get(format!("{}/v1/cluster", self.base)).send().await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// `GET /v1/objects/{key}`, typed.
    pub async fn summary(&self, key: &str) -> Result<ObjectSummary, ClientError> {
        Ok(Self::check(self.http.get(self.object_url(key, "")).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects/{key}` as JSON.
    pub async fn object(&self, key: &str) -> Result<Value, ClientError> {
        Ok(Self::check(self.http.get(self.object_url(key, "")).send().await?).await?.json().await?)
    }

    /// Light curve; `query` is a raw query string such as `band=g&kind=detection`.
    pub async fn lightcurve(&self, key: &str, query: &str) -> Result<Value, ClientError> {
        let url = format!("{}?{query}", self.object_url(key, "/lightcurve"));
        Ok(Self::check(self.http.get(url).send().await?).await?.json().await?)
    }

    pub async fn alerts(&self, key: &str) -> Result<Value, ClientError> {
        Ok(Self::check(self.http.get(self.object_url(key, "/alerts")).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects/{key}/lightcurve?{query}`, typed; `query` as for [`Client::lightcurve`].
    pub async fn light_curve(&self, key: &str, query: &str) -> Result<Lightcurve, ClientError> {
        let url = format!("{}?{query}", self.object_url(key, "/lightcurve"));
        Ok(Self::check(self.http.get(url).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects/{key}/alerts`, typed.
    pub async fn alert_history(&self, key: &str) -> Result<AlertHistory, ClientError> {
        Ok(Self::check(self.http.get(self.object_url(key, "/alerts")).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects/{key}/cutouts`: the stamps kept, per alert.
    pub async fn cutouts(&self, key: &str) -> Result<Cutouts, ClientError> {
        Ok(Self::check(self.http.get(self.object_url(key, "/cutouts")).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects/{key}/cutouts/{alert_id}/{kind}`: the stamp as FITS (the packet's own
    /// image, decompressed), or as PNG when `png`.
    pub async fn cutout(&self, key: &str, alert_id: i64, kind: CutoutKind, png: bool) -> Result<Vec<u8>, ClientError> {
        let format = if png { "png" } else { "fits" };
        let url = self.object_url(key, &format!("/cutouts/{alert_id}/{}?format={format}", kind.as_str()));
        Ok(Self::check(self.http.get(url).send().await?).await?.bytes().await?.to_vec())
    }

    /// `GET /v1/objects/{key}/alerts/{alert_id}/packet`: the alert packet as it arrived.
    pub async fn packet(&self, key: &str, alert_id: i64) -> Result<Vec<u8>, ClientError> {
        let url = self.object_url(key, &format!("/alerts/{alert_id}/packet"));
        Ok(Self::check(self.http.get(url).send().await?).await?.bytes().await?.to_vec())
    }

    /// `GET /v1/stats`: counts per `step` bucket, survey and band; `since`/`until` are ms
    /// since the epoch (the server's defaults when `None`).
    pub async fn stats(
        &self,
        step: StatsStep,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<StatsAnswer, ClientError> {
        let mut url = format!("{}/v1/stats?step={}", self.base, step.as_str());
        if let Some(t) = since_ms {
            url.push_str(&format!("&since={t}"));
        }
        if let Some(t) = until_ms {
            url.push_str(&format!("&until={t}"));
        }
        Ok(Self::check(self.http.get(url).send().await?).await?.json().await?)
    }

    /// `GET /v1/fields`: the filter language's fields.
    pub async fn fields(&self) -> Result<Fields, ClientError> {
        Ok(Self::check(self.http.get(format!("{}/v1/fields", self.base)).send().await?).await?.json().await?)
    }

    /// `GET /healthz`.
    pub async fn healthz(&self) -> Result<Health, ClientError> {
        Ok(Self::check(self.http.get(format!("{}/healthz", self.base)).send().await?).await?.json().await?)
    }

    /// `GET /readyz`: ready, or [`ClientError::Api`] with status 503 and the reason.
    pub async fn readyz(&self) -> Result<Ready, ClientError> {
        Ok(Self::check(self.http.get(format!("{}/readyz", self.base)).send().await?).await?.json().await?)
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        Ok(Self::check(self.http.get(format!("{}/metrics", self.base)).send().await?).await?.text().await?)
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Result<Value, ClientError> {
        self.get_json("/openapi.json").await
    }

    async fn admin<T: serde::de::DeserializeOwned>(&self, path: &str, token: &str) -> Result<T, ClientError> {
        let resp = self.http.post(format!("{}{path}", self.base)).bearer_auth(token).send().await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// `POST /v1/admin/partitions/{p}/promote` on this node (the standby to promote).
    pub async fn promote(&self, partition: u32, token: &str, skip_drain: bool) -> Result<PromoteReport, ClientError> {
        self.admin(&format!("/v1/admin/partitions/{partition}/promote?skip_drain={skip_drain}"), token).await
    }

    /// `POST /v1/admin/partitions/{p}/drain` on this node (the master to stop).
    pub async fn drain_partition(&self, partition: u32, token: &str) -> Result<Drained, ClientError> {
        self.admin(&format!("/v1/admin/partitions/{partition}/drain"), token).await
    }

    /// `POST /v1/admin/nodes/{id}/drain`: move every master off node `id`.
    pub async fn drain_node(&self, node: &str, token: &str) -> Result<NodeDrainReport, ClientError> {
        self.admin(&format!("/v1/admin/nodes/{}/drain", form_urlencoded_component(node)), token).await
    }

    /// `POST /v1/admin/nodes/{id}/decommission` (or, with `cancel`, its undoing).
    pub async fn decommission(&self, node: &str, token: &str, cancel: bool) -> Result<DecommissionReport, ClientError> {
        let path = format!("/v1/admin/nodes/{}/decommission?cancel={cancel}", form_urlencoded_component(node));
        self.admin(&path, token).await
    }

    pub async fn ingest(&self, packet: Vec<u8>) -> Result<Accepted, ClientError> {
        let resp = self
            .http
            .post(format!("{}/v1/alerts", self.base))
            .header("content-type", "application/octet-stream")
            .body(packet)
            .send()
            .await?;
        Ok(Self::check(resp).await?.json().await?)
    }

    /// Opens a WebSocket to `/v1/ws`.
    pub async fn subscribe(
        &self,
        sub: &str,
        objects: &[&str],
        from_version: Option<u64>,
    ) -> Result<Subscription, ClientError> {
        let objects = objects.iter().map(|o| (*o).to_owned()).collect();
        self.open(&ClientOp::subscribe_objects(sub, objects, from_version)).await
    }

    /// Opens a WebSocket to `/v1/ws` with a filter subscription: `update` for every change
    /// after which an object matches, `leave` when one stops matching, from every partition.
    /// `from`: the `cursor` of the last message received on an earlier connection — the
    /// subscription resumes right after it, with no gap and no duplicate. `snapshot`: first the
    /// objects that match now (ignored when resuming).
    pub async fn subscribe_filter(
        &self,
        sub: &str,
        filter: &str,
        from: Option<&str>,
        snapshot: bool,
    ) -> Result<Subscription, ClientError> {
        self.open(&ClientOp::subscribe_filter(sub, filter, from.map(str::to_owned), snapshot)).await
    }

    async fn open(&self, op: &ClientOp) -> Result<Subscription, ClientError> {
        let ws_url = format!("{}/v1/ws", self.base.replacen("http", "ws", 1));
        // No Nagle: subscribe ops are small frames that should leave at once.
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = ws_url.into_client_request()?;
        if let Some(v) = &self.authorization {
            let v = tokio_tungstenite::tungstenite::http::HeaderValue::from_bytes(v.as_bytes())
                .map_err(|e| ClientError::Invalid(e.to_string()))?;
            req.headers_mut().insert("authorization", v);
        }
        let (mut ws, _) =
            tokio_tungstenite::connect_async_tls_with_config(req, None, true, self.ws_tls.clone()).await?;
        ws.send(Message::Text(op.to_text().into())).await?;
        Ok(Subscription { ws })
    }

    /// `GET /v1/cone`: objects within `radius_arcsec` of (`ra`, `dec`) from every partition,
    /// nearest first; `filter` narrows them (the filter language).
    pub async fn cone(
        &self,
        ra: f64,
        dec: f64,
        radius_arcsec: f64,
        filter: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ConeAnswer, ClientError> {
        let mut url = format!("{}/v1/cone?ra={ra}&dec={dec}&radius_arcsec={radius_arcsec}", self.base);
        if let Some(f) = filter {
            url.push_str(&format!("&where={}", form_urlencoded_component(f)));
        }
        if let Some(l) = limit {
            url.push_str(&format!("&limit={l}"));
        }
        Ok(Self::check(self.http.get(url).send().await?).await?.json().await?)
    }

    /// `GET /v1/objects`: one page of the objects matching `filter` (all when `None`) in
    /// `order` (`"last_mjd desc"`; key order when `None`); pass the page's `next_cursor` as
    /// `cursor` for the next one.
    pub async fn query(
        &self,
        filter: Option<&str>,
        order: Option<&str>,
        limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<ObjectsPage, ClientError> {
        let mut params = Vec::new();
        for (name, value) in [("where", filter), ("order", order), ("cursor", cursor)] {
            if let Some(v) = value {
                params.push(format!("{name}={}", form_urlencoded_component(v)));
            }
        }
        if let Some(l) = limit {
            params.push(format!("limit={l}"));
        }
        let url = format!("{}/v1/objects?{}", self.base, params.join("&"));
        Ok(Self::check(self.http.get(url).send().await?).await?.json().await?)
    }
}

/// Percent-encodes a path segment (object keys contain ':').
fn form_urlencoded_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An open WebSocket with its subscriptions.
pub struct Subscription {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Subscription {
    /// Sends an operation (subscribe more, unsubscribe).
    pub async fn send(&mut self, op: &ClientOp) -> Result<(), ClientError> {
        self.ws.send(Message::Text(op.to_text().into())).await?;
        Ok(())
    }

    /// Next server message, or `None` when the socket closed (or the timeout passed).
    pub async fn next(&mut self, timeout: Duration) -> Result<Option<ServerMsg>, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) | Ok(None) => return Ok(None),
                Ok(Some(m)) => m?,
            };
            match msg {
                Message::Text(t) => {
                    return serde_json::from_str(&t).map(Some).map_err(|e| ClientError::Invalid(e.to_string()))
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
    }
}
