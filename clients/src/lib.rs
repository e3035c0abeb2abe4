//! Rust client of the Lightkeeper API v1 (see API.md): REST reads, ingest, and WebSocket
//! subscriptions.
//!
//! Messages are the wire contract's types (`lightkeeper-api`, re-exported as [`api`]): the
//! cluster view, ingest answers, WebSocket operations and server messages. Object bodies are
//! returned as JSON (`serde_json::Value`) for callers that compare them with other sources, or
//! typed ([`Client::summary`]). The server's `{"error":{"code","message"}}` becomes
//! [`ClientError::Api`].

use api::cluster::ClusterView;
use api::error::ErrorResponse;
pub use api::ingest::Accepted;
use api::object::ObjectSummary;
use api::ws::{ClientOp, ServerMsg};
use futures::{SinkExt, StreamExt};
pub use lightkeeper_api as api;
use serde_json::Value;
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
}

impl Client {
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
        Ok(Client { base: base_url.trim_end_matches('/').to_owned(), http })
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
        let ws_url = format!("{}/v1/ws", self.base.replacen("http", "ws", 1));
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await?;
        let objects = objects.iter().map(|o| (*o).to_owned()).collect();
        let op = ClientOp::subscribe_objects(sub, objects, from_version);
        ws.send(Message::Text(op.to_text().into())).await?;
        Ok(Subscription { ws })
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
