//! Routing a read to the replica that may answer it.
//!
//! A read is answered by the partition's master — locally when this node is the master, else
//! forwarded to it over HTTP. With `?max_lag=N` a local standby whose applied changelog offset
//! is at most `N` records behind the end it has seen may answer instead (like Kafka Streams'
//! KIP-535 standby reads). Every answer names the replica that served it and its lag in the
//! `x-lightkeeper-*` headers.
//!
//! During a handover or failover there is briefly no serving master: the old one has drained
//! (or died) and the new one is catching up. Reads then retry, re-resolving the master each
//! time, until `cluster.route_deadline_ms` has passed — so a client sees a slower answer, not
//! an error. A forwarded request is never forwarded again (the `x-lightkeeper-forwarded`
//! header): a node that cannot serve it answers 503 `not_master` and the forwarding node retries.

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use lightkeeper_partition::worker::Role;
use lightkeeper_storage::partitioner::partition_for;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

pub const FORWARDED: &str = "x-lightkeeper-forwarded";
pub const SERVED_BY: &str = "x-lightkeeper-served-by";
pub const ROLE: &str = "x-lightkeeper-role";
pub const LAG: &str = "x-lightkeeper-lag";
pub const PARTITION: &str = "x-lightkeeper-partition";
/// Present on an answer from a master that has lost its read lease because it cannot reach its
/// logs (a broker outage): the answer may miss changes made elsewhere; the value says why.
pub const STALE: &str = "x-lightkeeper-stale";

/// Headers passed back unchanged from a forwarded answer.
const PASSED_BACK: [&str; 8] = ["content-type", "etag", "cache-control", SERVED_BY, ROLE, LAG, PARTITION, STALE];

/// How a read may be served.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Accept a standby at most this many changelog records behind.
    pub max_lag: Option<u64>,
    /// The request was forwarded by another node: serve it here or refuse, never forward.
    pub forwarded: bool,
}

/// Where one attempt goes.
enum Target {
    Local {
        role: Role,
        lag: u64,
        /// Why the answer may be stale (a master that cannot reach its logs).
        stale: Option<String>,
    },
    Remote {
        url: String,
    },
    /// Nobody can serve right now (the reason); retry.
    Wait(String),
}

fn choose(state: &AppState, partition: u32, opts: ReadOptions, attempt: usize) -> Target {
    let local = state.replicas.get(partition);
    if let Some(r) = &local {
        let s = &r.status;
        // A master answers as master only while it holds its read lease: one just resumed
        // from a pause may have been replaced meanwhile (`PartitionStatus::answers_as_master`).
        if s.answers_as_master() {
            return Target::Local { role: Role::Master, lag: 0, stale: None };
        }
        // Its logs are down (a broker outage): nobody can be promoted through them, so this
        // master's state is as new as any — but say so, since only this node may be cut off.
        if s.answers_stale_as_master() {
            let why = s.log_trouble().map_or_else(String::new, |(for_how_long, why)| {
                format!("the master cannot reach its logs (for {} s): {why}", for_how_long.as_secs())
            });
            return Target::Local { role: Role::Master, lag: 0, stale: Some(why) };
        }
        if let Some(max) = opts.max_lag {
            if s.ready.load(Ordering::Acquire) && s.lag() <= max {
                return Target::Local { role: s.role(), lag: s.lag(), stale: None };
            }
        }
    }
    if opts.forwarded {
        return Target::Wait(format!("not the master of partition {partition} here"));
    }
    let master = match local {
        Some(r) => r.status.master(),
        // Not hosted here: the master in the coordinator's table, then the configured replicas
        // in turn; a replica that is not the master forwards to the one it knows (one hop).
        None => {
            let nodes = hosting_nodes(state, partition);
            if nodes.is_empty() {
                return Target::Wait(format!("partition {partition} has no replicas"));
            }
            nodes[attempt % nodes.len()].clone()
        }
    };
    if master.is_empty() {
        return Target::Wait(format!("partition {partition} has no master yet"));
    }
    if master == state.node_id {
        return Target::Wait(format!(
            "partition {partition} is handing over from this node, or its master here is confirming its epoch"
        ));
    }
    match state.peer_url(&master) {
        Some(url) => Target::Remote { url },
        None => Target::Wait(format!("master {master:?} of partition {partition} is not a known node")),
    }
}

/// The other nodes that host `partition`, the likeliest master first: the one the coordinator's
/// replicated table names, then the partition's other replicas.
pub fn hosting_nodes(state: &AppState, partition: u32) -> Vec<String> {
    let mut names = Vec::new();
    if let Some(master) = state.coordinator.get().and_then(|c| c.master_of(partition)) {
        names.push(master);
    }
    for r in state.placement(partition) {
        if !names.contains(&r) {
            names.push(r);
        }
    }
    names.retain(|n| *n != state.node_id);
    names
}

/// Serves a read of `key`: `serve_local` renders it from the local store; `path_and_query` is
/// what a forward requests from the master.
pub async fn route<F, Fut>(
    state: &AppState,
    key: &str,
    path_and_query: &str,
    opts: ReadOptions,
    serve_local: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<Response, ApiError>>,
{
    let partition = partition_for(key.as_bytes(), state.partition_count);
    match serve(state, partition, path_and_query, opts, serve_local).await? {
        Answer::Local { mut value, role, lag, stale } => {
            let h = value.headers_mut();
            set(h, SERVED_BY, &state.node_id);
            set(h, ROLE, role.as_str());
            set(h, LAG, &lag.to_string());
            set(h, PARTITION, &partition.to_string());
            if let Some(why) = stale {
                // Header values are visible ASCII: anything else in an error message goes.
                let why: String = why.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
                set(h, STALE, &why);
            }
            Ok(value)
        }
        Answer::Forwarded(resp) => Ok(resp),
    }
}

/// One partition's typed answer, and why it may be stale when the master that gave it cannot
/// reach its logs (the [`STALE`] header's text; `None` for an answer under a held lease).
#[derive(Debug)]
pub struct Routed<T> {
    pub value: T,
    pub stale: Option<String>,
}

/// `resp` with the [`STALE`] header when `stale` says why (the internal parts of a scattered
/// query carry it back to the node gathering them).
pub fn mark_stale(mut resp: Response, stale: Option<&str>) -> Response {
    if let Some(why) = stale {
        set(resp.headers_mut(), STALE, why);
    }
    resp
}

/// Serves one partition's part of a query with a typed answer: `serve_local` computes it here;
/// otherwise `path_and_query` (an internal route answering `T` as JSON) is forwarded to the
/// partition's serving replica, with the same retries through a handover as [`route`].
pub async fn route_partition<T, F, Fut>(
    state: &AppState,
    partition: u32,
    path_and_query: &str,
    opts: ReadOptions,
    serve_local: F,
) -> Result<Routed<T>, ApiError>
where
    T: serde::de::DeserializeOwned,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    match serve(state, partition, path_and_query, opts, serve_local).await? {
        Answer::Local { value, stale, .. } => Ok(Routed { value, stale }),
        Answer::Forwarded(resp) => {
            let stale = resp.headers().get(STALE).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), usize::MAX).await.map_err(|e| {
                ApiError::Unavailable(format!("partition {partition}: reading a forwarded answer: {e}"))
            })?;
            if !status.is_success() {
                let why = serde_json::from_slice::<lightkeeper_api::error::ErrorResponse>(&body)
                    .map_or_else(|_| String::from_utf8_lossy(&body).into_owned(), |e| e.error.message);
                return Err(ApiError::Unavailable(format!("partition {partition}: answered {status}: {why}")));
            }
            let value = serde_json::from_slice(&body).map_err(|e| {
                ApiError::Internal(format!("partition {partition}: a forwarded answer does not decode: {e}"))
            })?;
            Ok(Routed { value, stale })
        }
    }
}

/// Who answered: this node's replica (with its role and lag), or another node.
enum Answer<T> {
    Local { value: T, role: Role, lag: u64, stale: Option<String> },
    Forwarded(Response),
}

/// The routing loop: serve locally, or forward, re-resolving the serving replica on each
/// attempt until `cluster.route_deadline_ms`.
async fn serve<T, F, Fut>(
    state: &AppState,
    partition: u32,
    path_and_query: &str,
    opts: ReadOptions,
    serve_local: F,
) -> Result<Answer<T>, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, ApiError>>,
{
    let mut serve_local = Some(serve_local);
    let deadline = Instant::now() + Duration::from_millis(state.cluster.route_deadline_ms);
    let mut attempt = 0;
    // The node whose forwarded attempt last ran out of time: asked again (no failover has moved
    // the master meanwhile), it gets the request's whole time — it may just be slow.
    let mut timed_out: Option<String> = None;
    loop {
        let why = match choose(state, partition, opts, attempt) {
            Target::Local { role, lag, stale } => {
                let serve = serve_local.take().expect("a local answer is returned, so this runs once");
                return Ok(Answer::Local { value: serve().await?, role, lag, stale });
            }
            Target::Remote { url } => {
                let patient = timed_out.as_deref() == Some(url.as_str());
                match forward(state, &url, path_and_query, deadline, patient).await {
                    Ok(resp) => return Ok(Answer::Forwarded(resp)),
                    Err(Forward::TimedOut(e)) => {
                        timed_out = Some(url);
                        e
                    }
                    Err(Forward::Failed(e)) => e,
                }
            }
            Target::Wait(why) if opts.forwarded => {
                let master = state.replicas.get(partition).map(|r| r.status.master()).unwrap_or_default();
                tracing::debug!(partition, reason = %why, "refusing a forwarded read");
                return Err(ApiError::NotMaster { partition, master });
            }
            Target::Wait(why) => why,
        };
        attempt += 1;
        if Instant::now() >= deadline {
            return Err(ApiError::Unavailable(format!(
                "no replica of partition {partition} could serve the read within {} ms ({why})",
                state.cluster.route_deadline_ms
            )));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Splits `max_lag` (and the forwarded marker) from a read's query; returns the options and
/// the rest of the query, for the handler's own parameters.
pub fn read_options(raw: Option<&str>, headers: &HeaderMap) -> Result<(ReadOptions, Option<String>), ApiError> {
    let mut opts = ReadOptions { max_lag: None, forwarded: headers.contains_key(FORWARDED) };
    let mut rest = form_urlencoded::Serializer::new(String::new());
    let mut any = false;
    for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if k == "max_lag" {
            let n = v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("max_lag must be a whole number of changelog records, got {v:?}"),
                )
            })?;
            opts.max_lag = Some(n);
        } else {
            rest.append_pair(&k, &v);
            any = true;
        }
    }
    Ok((opts, any.then(|| rest.finish())))
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// Longest wait for a forwarded attempt to a node not yet found slow: a master that hangs (a
/// paused process) is replaced by failover after ~1 s of silence, and the next attempt then goes
/// to the new master instead of waiting out the whole request timeout. Asked again, the same
/// node gets the request's whole time.
const FORWARD_ATTEMPT: Duration = Duration::from_millis(1_500);

/// Why a forwarded attempt is worth retrying, elsewhere or later.
enum Forward {
    /// No answer within the attempt's time.
    TimedOut(String),
    /// No connection, or 503 (not master, or overloaded).
    Failed(String),
}

/// One forwarded attempt.
async fn forward(
    state: &AppState,
    base: &str,
    path_and_query: &str,
    deadline: Instant,
    patient: bool,
) -> Result<Response, Forward> {
    let whole = Duration::from_millis(state.limits.request_timeout_ms);
    let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
    let timeout = if patient { whole } else { FORWARD_ATTEMPT.min(left).max(Duration::from_millis(50)) };
    let failed = |e: reqwest::Error, what: &str| {
        let why = format!("{what} {base}: {e}");
        if e.is_timeout() {
            Forward::TimedOut(why)
        } else {
            Forward::Failed(why)
        }
    };
    let resp = state
        .peer_client
        .get(format!("{base}{path_and_query}"))
        .header(FORWARDED, &state.node_id)
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| failed(e, "forwarding to"))?;
    let status = resp.status();
    if status == reqwest::StatusCode::SERVICE_UNAVAILABLE {
        return Err(Forward::Failed(format!("{base} answered 503")));
    }
    let mut headers = HeaderMap::new();
    for name in PASSED_BACK {
        if let Some(v) = resp.headers().get(name) {
            if let Ok(v) = HeaderValue::from_bytes(v.as_bytes()) {
                headers.insert(name, v);
            }
        }
    }
    let body = resp.bytes().await.map_err(|e| failed(e, "reading the answer of"))?;
    let status = axum::http::StatusCode::from_u16(status.as_u16()).unwrap_or(axum::http::StatusCode::BAD_GATEWAY);
    Ok((status, headers, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_lag_is_split_from_the_handler_query() {
        let mut h = HeaderMap::new();
        let (o, rest) = read_options(Some("band=g&max_lag=5&kind=detection"), &h).unwrap();
        assert_eq!(o.max_lag, Some(5));
        assert!(!o.forwarded);
        assert_eq!(rest.as_deref(), Some("band=g&kind=detection"));
        let (o, rest) = read_options(None, &h).unwrap();
        assert_eq!((o.max_lag, rest), (None, None));
        h.insert(FORWARDED, HeaderValue::from_static("node-a"));
        assert!(read_options(Some("max_lag=0"), &h).unwrap().0.forwarded);
        for bad in ["max_lag=-1", "max_lag=x", "max_lag="] {
            assert_eq!(read_options(Some(bad), &h).unwrap_err().code(), "invalid_query", "{bad}");
        }
    }
}
