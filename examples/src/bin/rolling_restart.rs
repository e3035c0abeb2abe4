//! Rolling restart of a running Lightkeeper cluster under load, counting failed requests.
//!
//! For each node in turn: `POST /v1/admin/nodes/{id}/drain` (its masters are handed to
//! caught-up standbys and its `/readyz` turns 503), run the restart command, wait until the node
//! is ready again and every replica on it has caught up. Meanwhile readers read the given
//! objects through every node, and (with `--ingest`) a writer posts alert packets, each trying
//! the next node when one is down — as clients behind a load balancer would. Exits non-zero if
//! any request failed.
//!
//! ```text
//! rolling_restart --token T --restart 'systemctl restart lightkeeper@{id}' \
//!     --key ztf:ZTF21abiuvdk --ingest alerts/ a=http://10.0.0.1:8080 b=http://10.0.0.2:8080 ...
//! ```
//! `{id}` and `{url}` in the restart command are replaced by the node's id and URL.
//! `examples/rolling-restart.sh` runs it against a three-node cluster it starts locally.

use anyhow::{bail, Context};
use lightkeeper_clients::api::admin::NodeDrainReport;
use lightkeeper_clients::api::cluster::{ClusterView, Role};
use lightkeeper_clients::api::error::ErrorResponse;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    token: String,
    restart: String,
    keys: Vec<String>,
    ingest: Vec<PathBuf>,
    rate: f64,
    nodes: Vec<(String, String)>,
}

fn parse() -> anyhow::Result<Args> {
    let mut a =
        Args { token: String::new(), restart: String::new(), keys: vec![], ingest: vec![], rate: 50.0, nodes: vec![] };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--token" => a.token = value()?,
            "--restart" => a.restart = value()?,
            "--key" => a.keys.push(value()?),
            "--rate" => a.rate = value()?.parse().context("--rate")?,
            "--ingest" => {
                let dir = PathBuf::from(value()?);
                let mut files: Vec<PathBuf> = walk(&dir)?;
                files.sort();
                a.ingest.extend(files);
            }
            node => match node.split_once('=') {
                Some((id, url)) => a.nodes.push((id.to_owned(), url.trim_end_matches('/').to_owned())),
                None => bail!("unknown argument {node:?}; nodes are given as ID=URL"),
            },
        }
    }
    if a.token.is_empty() || a.restart.is_empty() || a.nodes.len() < 2 || a.keys.is_empty() {
        bail!("usage: rolling_restart --token T --restart CMD --key KEY [--key ...] [--ingest DIR] [--rate N] ID=URL ID=URL ...");
    }
    Ok(a)
}

fn walk(dir: &std::path::Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk(&p)?);
        } else if p.extension().is_some_and(|x| x == "avro") {
            out.push(p);
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    /// The longest a request took, retries included (µs): what a client saw of unavailability.
    slowest_us: AtomicU64,
    /// Requests that took over 100 ms.
    slow: AtomicU64,
}

impl Counts {
    fn record(&self, ok: bool, took: Duration) {
        let c = if ok { &self.ok } else { &self.failed };
        c.fetch_add(1, Ordering::Relaxed);
        self.slowest_us.fetch_max(took.as_micros() as u64, Ordering::Relaxed);
        if took > Duration::from_millis(100) {
            self.slow.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends one request to the nodes in turn (from `start`) until one answers something other
/// than 503; true if that answer is 2xx.
async fn send(counts: &Counts, urls: &[String], start: usize, make: impl Fn(&str) -> reqwest::RequestBuilder) -> bool {
    for attempt in 0..urls.len() {
        let url = &urls[(start + attempt) % urls.len()];
        let t = Instant::now();
        let result = make(url).send().await;
        if t.elapsed() > Duration::from_millis(250) {
            // Worth a look in the nodes' logs: say when, where and how it ended.
            let outcome = match &result {
                Ok(r) => r.status().to_string(),
                Err(e) => e.to_string(),
            };
            let at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            eprintln!(
                "slow attempt: {url} took {} ms ({outcome}), ended at unix {:.3}",
                t.elapsed().as_millis(),
                at.as_secs_f64()
            );
        }
        match result {
            Ok(r) if r.status() == 503 => {}
            Ok(r) => {
                let ok = r.status().is_success();
                let _ = r.bytes().await;
                return ok;
            }
            Err(_) => {}
        }
        counts.retried.fetch_add(1, Ordering::Relaxed);
    }
    false
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let urls: Vec<String> = args.nodes.iter().map(|(_, u)| u.clone()).collect();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(Counts::default());
    let writes = Arc::new(Counts::default());

    let mut load = Vec::new();
    for r in 0..2 {
        let (http, urls, keys, stop, counts) =
            (http.clone(), urls.clone(), args.keys.clone(), stop.clone(), reads.clone());
        load.push(tokio::spawn(async move {
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let key = &keys[i % keys.len()];
                let t = Instant::now();
                let ok = send(&counts, &urls, i, |u| http.get(format!("{u}/v1/objects/{key}"))).await;
                counts.record(ok, t.elapsed());
                i += 1;
            }
        }));
    }
    if !args.ingest.is_empty() {
        let (http, urls, files, stop, counts) =
            (http.clone(), urls.clone(), args.ingest.clone(), stop.clone(), writes.clone());
        let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.1));
        load.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            for (i, f) in files.iter().cycle().enumerate() {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let Ok(bytes) = tokio::fs::read(f).await else { continue };
                let t = Instant::now();
                let ok = send(&counts, &urls, i, |u| {
                    http.post(format!("{u}/v1/alerts"))
                        .header("content-type", "application/octet-stream")
                        .body(bytes.clone())
                })
                .await;
                counts.record(ok, t.elapsed());
            }
        }));
    }

    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    for (i, (id, url)) in args.nodes.iter().enumerate() {
        let via = &urls[(i + 1) % urls.len()];
        let t = Instant::now();
        let r = http.post(format!("{via}/v1/admin/nodes/{id}/drain")).bearer_auth(&args.token).send().await?;
        let status = r.status();
        let text = r.text().await?;
        if !status.is_success() {
            // 409 carries the drain report (which masters could not be handed over); other
            // failures the error body.
            if let Ok(report) = serde_json::from_str::<NodeDrainReport>(&text) {
                bail!("drain of {id} failed ({status}): {report:?}");
            }
            if let Ok(e) = serde_json::from_str::<ErrorResponse>(&text) {
                bail!("drain of {id} failed ({status}): {}: {}", e.error.code, e.error.message);
            }
            bail!("drain of {id} failed ({status}): {text}");
        }
        let report: NodeDrainReport = serde_json::from_str(&text).context("the drain report")?;
        let drained_ms = t.elapsed().as_millis();
        let cmd = args.restart.replace("{id}", id).replace("{url}", url);
        let t = Instant::now();
        let out = tokio::process::Command::new("sh").arg("-c").arg(&cmd).status().await?;
        if !out.success() {
            bail!("restart command for {id} failed: {cmd}");
        }
        wait_caught_up(&http, id, url).await?;
        println!(
            "node {id}: drained in {drained_ms} ms ({} masters handed over), restarted and caught up in {} ms",
            report.handovers.len(),
            t.elapsed().as_millis()
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await?;
    }
    let (ro, rf) = (reads.ok.load(Ordering::Relaxed), reads.failed.load(Ordering::Relaxed));
    let (wo, wf) = (writes.ok.load(Ordering::Relaxed), writes.failed.load(Ordering::Relaxed));
    let retried = reads.retried.load(Ordering::Relaxed) + writes.retried.load(Ordering::Relaxed);
    let slowest = |c: &Counts| c.slowest_us.load(Ordering::Relaxed) as f64 / 1e3;
    println!(
        "rolling restart of {} nodes in {:.1} s: reads {ro} ok / {rf} failed, writes {wo} ok / {wf} failed, {retried} attempts retried on another node; slowest read {:.1} ms ({} over 100 ms), slowest write {:.1} ms ({} over 100 ms)",
        args.nodes.len(),
        started.elapsed().as_secs_f64(),
        slowest(&reads),
        reads.slow.load(Ordering::Relaxed),
        slowest(&writes),
        writes.slow.load(Ordering::Relaxed),
    );
    if rf + wf > 0 {
        bail!("{} requests failed", rf + wf);
    }
    Ok(())
}

/// Waits until `/readyz` answers 200 and every replica on the node has applied the changelog.
async fn wait_caught_up(http: &reqwest::Client, id: &str, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let ready = http.get(format!("{url}/readyz")).send().await.is_ok_and(|r| r.status().is_success());
        if ready {
            let view: Option<ClusterView> = match http.get(format!("{url}/v1/cluster")).send().await {
                Ok(r) => r.json().await.ok(),
                Err(_) => None,
            };
            let caught_up =
                view.is_some_and(|v| v.partitions.iter().all(|p| p.role == Role::NotHosted || p.changelog_lag == 0));
            if caught_up {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("node {id} did not come back within 5 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
