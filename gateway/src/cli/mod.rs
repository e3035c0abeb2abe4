//! The `decode`, `ingest` and `demo` commands; the read commands are in [`read`].

pub mod read;

use crate::config::{Config, Overrides};
use crate::node::{stop_on_signals, Node};
use anyhow::{bail, Context};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::registry::{EmbeddedRegistry, SchemaRegistry};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Expands directories into the `.avro` files below them (sorted); plain files are kept as given.
pub fn expand_files(inputs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in inputs {
        if p.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found)?;
            found.sort();
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "avro") {
            out.push(path);
        }
    }
    Ok(())
}

fn decoder(schemas: Option<&Path>) -> anyhow::Result<Decoder> {
    let registry: Arc<dyn SchemaRegistry> =
        match schemas {
            Some(dir) => Arc::new(EmbeddedRegistry::published().overlaid_with(
                EmbeddedRegistry::from_dir(dir).with_context(|| format!("--schemas {}", dir.display()))?,
            )),
            None => Arc::new(EmbeddedRegistry::published()),
        };
    Ok(Decoder::new(registry))
}

/// `lightkeeper decode`: one JSON line per decodable file on stdout; a clear error per failing
/// file on stderr; exit status non-zero if any failed (after printing the others).
pub fn decode(schemas: Option<&Path>, files: &[PathBuf]) -> anyhow::Result<bool> {
    let decoder = decoder(schemas)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut ok = true;
    for f in expand_files(files)? {
        let result =
            std::fs::read(&f).map_err(anyhow::Error::from).and_then(|b| decoder.decode(&b).map_err(Into::into));
        match result {
            Ok(alert) => writeln!(out, "{}", serde_json::to_string(&alert)?)?,
            Err(e) => {
                ok = false;
                eprintln!("lightkeeper decode: {}: {e}", f.display());
            }
        }
    }
    Ok(ok)
}

/// `lightkeeper ingest`: sends files to a node over HTTP, or straight into a Kafka topic
/// (partitioned with Kafka's murmur2 of the object key, as the node expects).
pub async fn ingest(
    files: &[PathBuf],
    url: Option<String>,
    kafka: Option<String>,
    topic: String,
    schemas: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let files = expand_files(files)?;
    if files.is_empty() {
        bail!("no alert files given");
    }
    let total = files.len();
    let mut failed = 0usize;
    let progress = progress_bar(total);
    match (url, kafka) {
        (Some(url), None) => {
            let client = lightkeeper_clients::Client::new(&url)?;
            for f in &files {
                let bytes = tokio::fs::read(f).await.with_context(|| format!("reading {}", f.display()))?;
                match client.ingest(bytes).await {
                    Ok(a) => progress.suspend(|| {
                        println!("{}: {} partition {} offset {}", f.display(), a.key, a.partition, a.offset)
                    }),
                    Err(e) => {
                        failed += 1;
                        progress.suspend(|| eprintln!("lightkeeper ingest: {}: {e}", f.display()));
                    }
                }
                progress.inc(1);
            }
        }
        (None, Some(bootstrap)) => {
            let decoder = decoder(schemas.as_deref())?;
            let progress = progress.clone();
            failed = tokio::task::spawn_blocking(move || -> anyhow::Result<usize> {
                let kafka = KafkaConfig::new(&bootstrap);
                let topic = KafkaTopic::open(&kafka, &topic)?;
                let mut failed = 0;
                for f in &files {
                    let bytes = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
                    // The key comes from the packet itself, so the partition matches the node's routing.
                    match decoder.decode(&bytes) {
                        Ok(alert) => {
                            let p = partition_for(alert.key.as_bytes(), topic.partitions());
                            let off = topic.append(
                                p,
                                &[Append { key: Some(alert.key.as_bytes()), payload: &bytes, headers: &[] }],
                            )?;
                            progress
                                .suspend(|| println!("{}: {} partition {p} offset {}", f.display(), alert.key, off[0]));
                        }
                        Err(e) => {
                            failed += 1;
                            progress.suspend(|| eprintln!("lightkeeper ingest: {}: not sent: {e}", f.display()));
                        }
                    }
                    progress.inc(1);
                }
                Ok(failed)
            })
            .await??;
        }
        _ => bail!("give exactly one of --url or --kafka"),
    }
    progress.finish_and_clear();
    eprintln!("lightkeeper ingest: {} sent, {failed} failed", total - failed);
    Ok(failed == 0)
}

/// A progress bar on stderr when it is a terminal (hidden otherwise: logs and pipes get the
/// per-file lines only).
fn progress_bar(total: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total as u64);
    let style = indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} alerts, {per_sec}, eta {eta}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

static DEMO_ALERTS: include_dir::Dir<'_> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/demo-alerts");

/// `lightkeeper demo`: an embedded node fed real alerts at a steady pace.
pub async fn demo(
    listen: std::net::SocketAddr,
    data_dir: Option<PathBuf>,
    alerts: Option<PathBuf>,
    interval: Duration,
) -> anyhow::Result<()> {
    let (data_dir, _tmp) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    let overrides = Overrides { listen: Some(listen), data_dir: Some(data_dir), ..Default::default() };
    let config = Config::load(None, &overrides)?;
    let packets: Vec<(String, Vec<u8>)> = match &alerts {
        Some(dir) => {
            let mut v = Vec::new();
            for f in expand_files(std::slice::from_ref(dir))? {
                v.push((f.display().to_string(), std::fs::read(&f)?));
            }
            v
        }
        None => {
            let mut v: Vec<_> = DEMO_ALERTS
                .files()
                .filter(|f| f.path().extension().is_some_and(|x| x == "avro"))
                .map(|f| (f.path().display().to_string(), f.contents().to_vec()))
                .collect();
            v.sort();
            v
        }
    };
    if packets.is_empty() {
        bail!("no .avro alert files to feed");
    }
    let node = tokio::task::spawn_blocking(move || Node::start(&config)).await??;
    let state = node.state.clone();
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    let stop = stop_on_signals();
    let feeder_stop = stop.clone();
    // Decode once to learn keys and order the packets by observation time, so light curves
    // grow forward in time as they would on the sky.
    // (On the blocking pool: decoding is CPU work.)
    let decoder = state.decoder.clone();
    let mut decoded = tokio::task::spawn_blocking(move || {
        let mut decoded = Vec::new();
        for (name, bytes) in packets {
            match decoder.decode(&bytes) {
                Ok(a) => decoded.push((a.mjd, a.key, name, bytes)),
                Err(e) => eprintln!("demo: skipping {name}: {e}"),
            }
        }
        decoded
    })
    .await?;
    if decoded.is_empty() {
        bail!("none of the alert files could be decoded");
    }
    decoded.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Point the browser at the object with the most alerts: its light curve grows as you watch.
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (_, key, _, _) in &decoded {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    let watch = counts.iter().max_by_key(|(_, n)| **n).map(|(k, _)| (*k).to_owned()).unwrap_or_default();
    println!(
        "open http://{addr}/?key={watch} — feeding {} alerts, one every {} ms",
        decoded.len(),
        interval.as_millis()
    );
    let feeder = tokio::spawn(async move {
        for (i, (_, key, name, bytes)) in decoded.into_iter().enumerate() {
            tokio::select! {
                () = feeder_stop.cancelled() => return,
                () = tokio::time::sleep(if i == 0 { Duration::ZERO } else { interval }) => {}
            }
            let input = state.input.clone();
            let res = tokio::task::spawn_blocking(move || {
                let p = partition_for(key.as_bytes(), input.partitions());
                input
                    .append(p, &[Append { key: Some(key.as_bytes()), payload: &bytes, headers: &[] }])
                    .map(|o| (key, p, o[0]))
            })
            .await;
            match res {
                Ok(Ok((key, p, off))) => println!("demo: {name} → {key} (partition {p}, offset {off})"),
                Ok(Err(e)) => eprintln!("demo: {name}: {e}"),
                Err(e) => eprintln!("demo: {name}: {e}"),
            }
        }
        println!("demo: all alerts fed; the node keeps serving until Ctrl-C");
    });
    let result = node.serve(listener, stop).await;
    feeder.abort();
    result
}
