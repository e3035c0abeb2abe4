//! Node-to-node HTTP: the gateway's implementation of the coordinator's [`Peers`] trait, and
//! the Raft RPC transport ([`raft_network`]).
//!
//! This is the one place that knows which route answers which control-plane call
//! (`/v1/cluster`, `/v1/admin/partitions/{p}/drain|promote`, `/v1/internal/raft/write`) and how
//! an HTTP failure becomes a [`CallError`]: a refused connection (the node is gone) is told
//! apart from a timeout (slow or paused) by the `io::ErrorKind` under reqwest's error, and an
//! error answer is decoded as the API's error body.

pub mod raft_network;

use futures::future::BoxFuture;
use lightkeeper_api::admin::{Drained, PromoteReport};
use lightkeeper_api::cluster::ClusterView;
use lightkeeper_api::error::{ErrorBody, ErrorResponse};
use lightkeeper_coordinator::types::{Request, Response};
use lightkeeper_coordinator::{CallError, Hop, Peers};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// The hop of a forwarded coordinator write (see [`Hop`]).
pub const HOP_HEADER: &str = "x-lightkeeper-raft-hop";
/// How long a drain may take before the old master is treated as dead.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a promotion may take (it may catch up a standby); the same bound the target node
/// gives its replica, so the caller never gives up first.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Peers`] over the nodes' HTTP APIs, authenticated with the admin token.
#[derive(Clone)]
pub struct HttpPeers {
    client: reqwest::Client,
    token: String,
}

impl HttpPeers {
    pub fn new(client: reqwest::Client, token: Option<String>) -> HttpPeers {
        HttpPeers { client, token: token.unwrap_or_default() }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, CallError> {
        let resp =
            req.bearer_auth(&self.token).timeout(timeout).send().await.map_err(|e| call_error(url, timeout, &e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = resp.text().await.unwrap_or_default();
            let error = serde_json::from_str::<ErrorResponse>(&text)
                .map(|r| r.error)
                .unwrap_or(ErrorBody { code: "unknown".into(), message: text });
            return Err(CallError::Rejected { url: url.to_owned(), status: status.as_u16(), error });
        }
        resp.json().await.map_err(|e| CallError::Failed { url: url.to_owned(), reason: format!("answer: {e}") })
    }
}

/// Maps a transport failure.
pub fn call_error(url: &str, timeout: Duration, e: &reqwest::Error) -> CallError {
    if refused(e) {
        CallError::Refused { url: url.to_owned() }
    } else if e.is_timeout() {
        CallError::Timeout { url: url.to_owned(), timeout }
    } else {
        CallError::Failed { url: url.to_owned(), reason: e.to_string() }
    }
}

/// Whether the connection was actively refused (not a timeout or a name lookup failure, which
/// reqwest also reports as connect errors).
pub fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    false
}

impl Peers for HttpPeers {
    fn status<'a>(&'a self, url: &'a str, timeout: Duration) -> BoxFuture<'a, Result<ClusterView, CallError>> {
        Box::pin(self.send(url, self.client.get(format!("{url}/v1/cluster")), timeout))
    }

    fn drain<'a>(&'a self, url: &'a str, partition: u32) -> BoxFuture<'a, Result<Drained, CallError>> {
        let req = self.client.post(format!("{url}/v1/admin/partitions/{partition}/drain"));
        Box::pin(self.send(url, req, DRAIN_TIMEOUT))
    }

    fn promote<'a>(
        &'a self,
        url: &'a str,
        partition: u32,
        skip_drain: bool,
    ) -> BoxFuture<'a, Result<PromoteReport, CallError>> {
        let req = self.client.post(format!("{url}/v1/admin/partitions/{partition}/promote?skip_drain={skip_drain}"));
        Box::pin(self.send(url, req, PROMOTE_TIMEOUT))
    }

    fn forward_write<'a>(
        &'a self,
        url: &'a str,
        req: &'a Request,
        hop: Hop,
    ) -> BoxFuture<'a, Result<Result<Response, String>, CallError>> {
        let call = self.client.post(format!("{url}/v1/internal/raft/write")).header(HOP_HEADER, hop.as_str()).json(req);
        Box::pin(self.send(url, call, WRITE_TIMEOUT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_silent_listener_is_not() {
        let peers = HttpPeers::new(reqwest::Client::new(), None);
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}");
        let e = peers.status(&url, Duration::from_secs(1)).await.unwrap_err();
        assert!(e.is_refused(), "{e:?}");
        // A listener that never answers (a paused process): a timeout, not a refusal.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", silent.local_addr().unwrap());
        let e = peers.status(&url, Duration::from_millis(100)).await.unwrap_err();
        assert!(matches!(e, CallError::Timeout { .. }), "{e:?}");
    }
}
