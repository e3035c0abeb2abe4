//! `bench query`: latency of light-curve reads under load — an embedded node holding one
//! object of P real-size alerts, hit by open-loop `GET /v1/objects/{key}/lightcurve` at R
//! requests/s for S seconds; p50, p99 and max, and errors.
//!
//! The light curve is read three ways at the same rate: uncompressed, and with brotli and gzip
//! asked for (compression on: served from the node's cache of compressed renderings).
//!
//! Stamps: one alert's difference stamp as PNG at the same rate (a cached rendering), and the
//! cold path — the first read of each of up to 200 alerts' stamps, one at a time: the packet
//! read back from the input log, decoded, gunzipped, zscale-stretched and PNG-encoded.
//!
//! The load comes from a separate process — this binary re-run as `bench load` — so the
//! generator's own work (its runtime, parsing responses) is not in the harness that started the
//! node, and each case starts from a fresh generator.
//!
//! Baseline: the same open-loop load on `GET /healthz` in the same run, which costs the node
//! almost nothing: what the load generator and the HTTP stack cost by themselves on this
//! machine (they share its cores). The ratio of the p99s is what the light curve adds.
//! Latency is measured from each request's scheduled start, not from when it was sent, so a
//! stalled server is charged for the requests that queued behind it (no coordinated omission).

use crate::common::machine;
use crate::stats::{percentile, sorted};
use lightkeeper_clients::api::objects::Lightcurve;
use lightkeeper_clients::Client;
use lightkeeper_tests::synth::{load_templates, reissue};
use lightkeeper_tests::{shared_data, NodeProcess};
use std::time::Duration;

pub async fn run(points: usize, rate: u64, seconds: u64) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[])?;
    node.wait_ready(Duration::from_secs(60)).await?;
    let client = Client::new(&node.url)?;
    // One object with `points` detections: one real-size alert per point.
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 1);
    let oid = "ZTF99lcbench";
    for i in 0..points {
        client.ingest(reissue(&templates[0], oid, 4_000_000_000_000_000_000 + i as i64)).await?;
    }
    let key = format!("ztf:{oid}");
    loop {
        if client.summary(&key).await.map(|o| o.n_alerts == points).unwrap_or(false) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let n_points = serde_json::from_value::<Lightcurve>(client.lightcurve(&key, "").await?)?.points.len();
    let body_bytes = reqwest::get(format!("{}/v1/objects/ztf:{oid}/lightcurve", node.url)).await?.bytes().await?.len();
    let lc_url = format!("{}/v1/objects/ztf:{oid}/lightcurve", node.url);
    let base_url = format!("{}/healthz", node.url);
    let stamp = |i: usize| {
        format!(
            "{}/v1/objects/ztf:{oid}/cutouts/{}/difference?format=png",
            node.url,
            4_000_000_000_000_000_000 + i as i64
        )
    };
    let hot_stamp = stamp(0);
    // The same reads with compression off (no Accept-Encoding) and on (brotli, gzip): the node
    // keeps each coding's rendering in its cache, so "on" costs no compression per request.
    let cases = [
        ("GET lightcurve, uncompressed", lc_url.as_str(), None),
        ("GET lightcurve, Accept-Encoding: br", lc_url.as_str(), Some("br")),
        ("GET lightcurve, Accept-Encoding: gzip", lc_url.as_str(), Some("gzip")),
        ("GET /healthz (baseline)", base_url.as_str(), None),
        ("GET stamp PNG, cached", hot_stamp.as_str(), None),
    ];
    let mut results = Vec::new();
    for (name, url, accept) in cases {
        results.push((name, load_in_child(url, rate, seconds, accept).await?));
    }
    println!(
        "## query: light curve of {n_points} points ({body_bytes} B of JSON), open loop {rate} req/s for {seconds} s — {}",
        machine()
    );
    println!(
        "| target | sent | errors | mean B per response | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|"
    );
    for (name, r) in &results {
        println!(
            "| {name} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} |",
            r.sent, r.errors, r.mean_bytes, r.p50, r.p99, r.max
        );
    }
    // Cold stamps: alerts 1.. (alert 0 was warmed above), each read once, one after another.
    let http = reqwest::Client::new();
    let mut cold = Vec::new();
    for i in 1..points.min(201) {
        let started = std::time::Instant::now();
        let r = http.get(stamp(i)).send().await?;
        anyhow::ensure!(r.status().is_success(), "stamp {i}: {}", r.status());
        r.bytes().await?;
        cold.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let cold = sorted(cold);
    if !cold.is_empty() {
        println!(
            "| GET stamp PNG, cold (first read of {} alerts, sequential) | {} | 0 | | {:.3} | {:.3} | {:.3} |",
            cold.len(),
            cold.len(),
            percentile(&cold, 0.5),
            percentile(&cold, 0.99),
            percentile(&cold, 1.0)
        );
    }
    let p99 = |i: usize| results[i].1.p99;
    println!("| ratio p99 lightcurve uncompressed / healthz | {:.1} |", p99(0) / p99(3).max(1e-6));
    println!("| ratio p99 lightcurve br / uncompressed | {:.2} |", p99(1) / p99(0).max(1e-6));
    println!("| ratio p99 lightcurve gzip / uncompressed | {:.2} |", p99(2) / p99(0).max(1e-6));
    println!("| ratio p99 stamp PNG cached / healthz | {:.1} |", p99(4) / p99(3).max(1e-6));
    Ok(())
}

/// What a `bench load` child reports: one JSON line.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct LoadSummary {
    pub sent: usize,
    pub errors: usize,
    pub mean_bytes: f64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Who the load generator is: a token it sends, and the CA it trusts (for a TLS node).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub token: Option<String>,
    pub ca: Option<std::path::PathBuf>,
}

/// `bench load`: one open-loop run of GETs, its summary printed as JSON on stdout.
pub async fn load_command(
    url: &str,
    rate: u64,
    seconds: u64,
    accept_encoding: Option<String>,
    caller: Caller,
) -> anyhow::Result<()> {
    // The load generator lives as long as its one run: leaking the string gives the request
    // closures the `'static` header value they take.
    let accept: Option<&'static str> = accept_encoding.map(|a| &*Box::leak(a.into_boxed_str()));
    let r = load(url, rate, seconds, accept, &caller).await?;
    let summary = LoadSummary {
        sent: r.sent,
        errors: r.errors,
        mean_bytes: r.mean_bytes,
        p50: r.p(0.5),
        p99: r.p(0.99),
        max: r.p(1.0),
    };
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Runs one load case in a child process (`bench load`) and reads its summary.
async fn load_in_child(url: &str, rate: u64, seconds: u64, accept: Option<&str>) -> anyhow::Result<LoadSummary> {
    load_in_child_as(url, rate, seconds, accept, &Caller::default()).await
}

/// [`load_in_child`] with a token and a CA.
pub(crate) async fn load_in_child_as(
    url: &str,
    rate: u64,
    seconds: u64,
    accept: Option<&str>,
    caller: &Caller,
) -> anyhow::Result<LoadSummary> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args(["load", "--url", url, "--rate", &rate.to_string(), "--seconds", &seconds.to_string()]);
    if let Some(a) = accept {
        cmd.args(["--accept-encoding", a]);
    }
    if let Some(t) = &caller.token {
        cmd.env("BENCH_TOKEN", t);
    }
    if let Some(ca) = &caller.ca {
        cmd.arg("--ca").arg(ca);
    }
    let out = cmd.stderr(std::process::Stdio::inherit()).output().await?;
    anyhow::ensure!(out.status.success(), "bench load failed: {}", out.status);
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().ok_or_else(|| anyhow::anyhow!("bench load printed nothing"))?;
    Ok(serde_json::from_str(line)?)
}

/// What an open-loop [`load`] run saw.
struct LoadResult {
    sent: usize,
    errors: usize,
    /// Mean size of a successful response's body, as sent (compressed when it was).
    mean_bytes: f64,
    /// Successful requests only, ascending.
    latencies_ms: Vec<f64>,
}

impl LoadResult {
    /// The `q`-quantile of the successful requests' latency in ms (NaN if none succeeded).
    fn p(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        percentile(&self.latencies_ms, q)
    }
}

/// GETs `url` at `rate` requests/s for `seconds`, each request on its own task at its
/// scheduled time whether or not the earlier ones have finished (open loop, [`crate::pace`]).
async fn load(
    url: &str,
    rate: u64,
    seconds: u64,
    accept_encoding: Option<&'static str>,
    caller: &Caller,
) -> anyhow::Result<LoadResult> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = &caller.token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {t}").parse()?);
    }
    let mut http = reqwest::Client::builder().pool_max_idle_per_host(512).default_headers(headers);
    if let Some(ca) = &caller.ca {
        http = http.tls_built_in_root_certs(false);
        for cert in reqwest::Certificate::from_pem_bundle(&std::fs::read(ca)?)? {
            http = http.add_root_certificate(cert);
        }
    }
    let http = http.build()?;
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let total = (rate * seconds) as usize;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<(f64, usize)>>(total.max(1));
    let sender = tx.clone();
    let url = url.to_owned();
    crate::pace::open_loop(0..total, interval, move |_, scheduled| {
        let (http, url, tx) = (http.clone(), url.clone(), sender.clone());
        async move {
            let mut req = http.get(&url);
            if let Some(a) = accept_encoding {
                req = req.header("accept-encoding", a);
            }
            // The body as it came (this reqwest does not decompress): what the node sent.
            let got = match req.send().await {
                Ok(r) if r.status().is_success() => r.bytes().await.ok().map(|b| b.len()),
                _ => None,
            };
            let ms = scheduled.elapsed().as_secs_f64() * 1000.0;
            let _ = tx.send(got.map(|bytes| (ms, bytes))).await;
        }
    })
    .await;
    drop(tx);
    let (mut errors, mut bytes) = (0, 0usize);
    let mut latencies_ms = Vec::with_capacity(total);
    while let Some(v) = rx.recv().await {
        match v {
            Some((ms, b)) => {
                latencies_ms.push(ms);
                bytes += b;
            }
            None => errors += 1,
        }
    }
    let mean_bytes = bytes as f64 / latencies_ms.len().max(1) as f64;
    Ok(LoadResult { sent: total, errors, mean_bytes, latencies_ms: sorted(latencies_ms) })
}
