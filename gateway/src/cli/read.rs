//! The read commands — a node's API from the shell, through the Rust client: `get`,
//! `lightcurve`, `cone`, `query` and `watch`.
//!
//! Output is meant for pipes: `get` prints the object as JSON; `lightcurve` prints what the node
//! renders (JSON, CSV or VOTable); `cone` and `query` print one JSON object per line (`jq`,
//! `pandas.read_json(lines=True)`); `watch` prints every server message as one JSON line, and
//! when its connection drops it reconnects and resumes exactly where it was — from the last
//! filter cursor, or from each object's last version — so a long watch misses nothing.

use anyhow::Context;
use lightkeeper_clients::api::ws::ServerMsg;
use lightkeeper_clients::{Client, ClientError, Subscription};
use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

/// Prints `v` as one JSON line on stdout.
fn line<T: serde::Serialize>(out: &mut impl Write, v: &T) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// `lightkeeper get KEY`: the object's summary, pretty-printed.
pub async fn get(url: &str, token: Option<&str>, key: &str) -> anyhow::Result<bool> {
    let object = Client::with_token(url, token)?.object(key).await.with_context(|| format!("GET object {key}"))?;
    println!("{}", serde_json::to_string_pretty(&object)?);
    Ok(true)
}

/// `lightkeeper lightcurve KEY`: the light curve as the node renders it.
pub async fn lightcurve(url: &str, token: Option<&str>, key: &str, query: &str) -> anyhow::Result<bool> {
    let text = Client::with_token(url, token)?
        .lightcurve_text(key, query)
        .await
        .with_context(|| format!("light curve of {key}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(true)
}

/// `lightkeeper cone RA DEC RADIUS`: the objects in the cone, nearest first, one per line.
pub async fn cone(
    url: &str,
    token: Option<&str>,
    ra: f64,
    dec: f64,
    radius_arcsec: f64,
    filter: Option<&str>,
    limit: Option<usize>,
) -> anyhow::Result<bool> {
    let answer =
        Client::with_token(url, token)?.cone(ra, dec, radius_arcsec, filter, limit).await.context("cone search")?;
    let mut out = std::io::stdout().lock();
    for hit in &answer.objects {
        line(&mut out, hit)?;
    }
    if !answer.missing_partitions.is_empty() {
        eprintln!("lightkeeper cone: partitions {:?} did not answer", answer.missing_partitions);
    }
    Ok(true)
}

/// `lightkeeper query`: the objects matching a filter, one per line, page after page when
/// `all` (each object exactly once: the pages follow the server's cursor).
pub async fn query(
    url: &str,
    token: Option<&str>,
    filter: Option<&str>,
    order: Option<&str>,
    limit: Option<usize>,
    all: bool,
) -> anyhow::Result<bool> {
    let client = Client::with_token(url, token)?;
    let mut cursor: Option<String> = None;
    let mut out = std::io::stdout().lock();
    loop {
        let page = client.query(filter, order, limit, cursor.as_deref()).await.context("query")?;
        for object in &page.objects {
            line(&mut out, object)?;
        }
        if !page.missing_partitions.is_empty() {
            eprintln!("lightkeeper query: partitions {:?} did not answer", page.missing_partitions);
        }
        match page.next_cursor {
            Some(next) if all => cursor = Some(next),
            _ => return Ok(true),
        }
    }
}

/// What `watch` follows.
pub enum Watch {
    /// Objects by key, each resumed from its last version.
    Objects(Vec<String>),
    /// A filter, resumed from its last cursor (`from`: where to start).
    Filter { filter: String, from: Option<String> },
}

/// A connection's quiet time after which `watch` checks it is still open.
const QUIET: Duration = Duration::from_secs(30);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// `lightkeeper watch`: every message, one JSON line each, until interrupted. Reconnects with
/// backoff when the node goes away, resuming exactly after the last message printed.
pub async fn watch(url: &str, token: Option<&str>, what: Watch) -> anyhow::Result<bool> {
    let client = Client::with_token(url, token)?;
    let mut cursor = match &what {
        Watch::Filter { from, .. } => from.clone(),
        Watch::Objects(_) => None,
    };
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut backoff = Duration::from_millis(200);
    loop {
        match follow(&client, &what, &mut cursor, &mut versions).await {
            Ok(Flow::OutputGone) => return Ok(true),
            Ok(Flow::Closed) => eprintln!("lightkeeper watch: the connection closed; reconnecting"),
            Err(e) => eprintln!("lightkeeper watch: {e}; reconnecting in {backoff:?}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// How a connection ended.
enum Flow {
    /// The node closed it: reconnect.
    Closed,
    /// Stdout is closed: stop.
    OutputGone,
}

/// One connection: subscribes (resuming), prints until it closes.
async fn follow(
    client: &Client,
    what: &Watch,
    cursor: &mut Option<String>,
    versions: &mut BTreeMap<String, u64>,
) -> Result<Flow, ClientError> {
    let mut sub: Subscription = match what {
        Watch::Filter { filter, .. } => client.subscribe_filter("watch", filter, cursor.as_deref(), false).await?,
        Watch::Objects(keys) => {
            // One subscription per object, so each resumes from its own version.
            let mut keys = keys.iter();
            let first = keys.next().expect("clap requires at least one object");
            let mut sub = client.subscribe(first, &[first.as_str()], versions.get(first).copied()).await?;
            for key in keys {
                let op = lightkeeper_clients::api::ws::ClientOp::subscribe_objects(
                    key,
                    vec![key.clone()],
                    versions.get(key).copied(),
                );
                sub.send(&op).await?;
            }
            sub
        }
    };
    loop {
        let asked = Instant::now();
        let Some(msg) = sub.next(QUIET).await? else {
            // Quiet for the whole wait: still open, keep waiting; sooner: it closed.
            if asked.elapsed() >= QUIET {
                continue;
            }
            return Ok(Flow::Closed);
        };
        match &msg {
            ServerMsg::Update { cursor: Some(c), .. } | ServerMsg::Snapshot { cursor: Some(c), .. } => {
                *cursor = Some(c.clone())
            }
            ServerMsg::Leave { cursor: c, .. } | ServerMsg::Subscribed { cursor: c, .. } => *cursor = Some(c.clone()),
            _ => {}
        }
        if let ServerMsg::Update { key, version, .. } | ServerMsg::Snapshot { key, version, .. } = &msg {
            versions.insert(key.clone(), *version);
        }
        let text = msg.to_text();
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            // Whoever read the output has gone (`| head`): nothing left to watch for.
            return Ok(Flow::OutputGone);
        }
    }
}
