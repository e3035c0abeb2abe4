//! The `decode`, `ingest` and `demo` commands; the read commands are in [`read`].

pub mod read;

use crate::config::{Config, Overrides};
use crate::node::{stop_on_signals, Node};
use anyhow::{bail, Context};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{Append, KafkaConfig, KafkaTopic, Topic};
use lightkeeper_storage::model::{Alert, PointKind, Survey};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::registry::{EmbeddedRegistry, SchemaRegistry};
use std::cmp::Reverse;
use std::collections::BTreeMap;
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
    token: Option<&str>,
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
            let client = lightkeeper_clients::Client::with_token(&url, token)?;
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

/// The built-in demo set (`demo-alerts/`, see its `SOURCE.md`): real ZTF and Rubin/LSST packets,
/// one survey and source repository per subdirectory.
static DEMO_ALERTS: include_dir::Dir<'_> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/demo-alerts");

/// `lightkeeper demo`: an embedded node fed real alerts at a steady pace, featuring one object
/// whose light curve grows as its alerts arrive (see `featured_object` and `feeding_order`).
/// `lightkeeper token`: a new random token, printed once with the configuration entry that
/// accepts it (its SHA-256: the token itself is stored nowhere).
pub fn new_token(name: &str, scopes: &[String]) -> anyhow::Result<()> {
    let scopes: Vec<crate::access::Scope> = scopes
        .iter()
        .map(|s| {
            serde_json::from_value(serde_json::Value::String(s.trim().to_owned()))
                .map_err(|_| anyhow::anyhow!("unknown scope {s:?}: use read, ingest or admin"))
        })
        .collect::<anyhow::Result<_>>()?;
    let entry = crate::config::TokenConfig { name: name.to_owned(), sha256: String::new(), scopes };
    let mut probe = crate::config::Config::default();
    let token = crate::access::new_token()?;
    probe.access.tokens = vec![crate::config::TokenConfig { sha256: crate::access::token_hash(&token), ..entry }];
    probe.validate()?;
    let entry = &probe.access.tokens[0];
    let scopes: Vec<String> = entry.scopes.iter().map(|s| format!("{:?}", s.as_str())).collect();
    println!("token: {token}");
    println!();
    println!("# Add to the configuration of every node (the token itself is not stored):");
    println!("[[access.tokens]]");
    println!("name = {:?}", entry.name);
    println!("sha256 = {:?}", entry.sha256);
    println!("scopes = [{}]", scopes.join(", "));
    Ok(())
}

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
            let mut v = Vec::new();
            embedded_avro(&DEMO_ALERTS, &mut v);
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
    // Decode once to learn each packet's object, survey and observation time, which choose the
    // featured object and the feeding order. (On the blocking pool: decoding is CPU work.)
    let decoder = state.decoder.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let mut decoded = Vec::new();
        for (name, bytes) in packets {
            match decoder.decode(&bytes) {
                Ok(alert) => decoded.push(DemoPacket::new(name, bytes, alert)),
                Err(e) => eprintln!("demo: skipping {name}: {e}"),
            }
        }
        decoded
    })
    .await?;
    if decoded.is_empty() {
        bail!("none of the alert files could be decoded");
    }
    // Point the browser at the featured object: its page opens on its first alert and gains
    // points as the rest of its alerts arrive.
    let watch = featured_object(&decoded);
    let total = decoded.len();
    let ztf = decoded.iter().filter(|p| p.survey == Survey::Ztf).count();
    let lsst = decoded.iter().filter(|p| p.survey == Survey::Lsst).count();
    let rest = match decoded.iter().filter(|p| p.key == watch).count() {
        0 | 1 => String::new(),
        n => format!(" and its other {} spread over the run", n - 1),
    };
    let order = feeding_order(decoded, &watch);
    println!(
        "open http://{addr}/?key={watch} — feeding {total} alerts ({ztf} ZTF, {lsst} LSST) one every {} ms, \
         {watch}'s first{rest}",
        interval.as_millis()
    );
    let feeder = tokio::spawn(async move {
        for (i, DemoPacket { name, bytes, key, .. }) in order.into_iter().enumerate() {
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

/// Every `.avro` file embedded in `dir` and its subdirectories, named by its path inside
/// `demo-alerts/`. (`Dir::files` lists one level only.)
fn embedded_avro(dir: &include_dir::Dir<'_>, out: &mut Vec<(String, Vec<u8>)>) {
    for f in dir.files().filter(|f| f.path().extension().is_some_and(|x| x == "avro")) {
        out.push((f.path().display().to_string(), f.contents().to_vec()));
    }
    for d in dir.dirs() {
        embedded_avro(d, out);
    }
}

/// A demo packet with what choosing the featured object and the feeding order needs, taken
/// from its decoded alert.
struct DemoPacket {
    /// File path, for the log lines.
    name: String,
    bytes: Vec<u8>,
    /// Survey-qualified object key: the record key, as the node's own routing uses it.
    key: String,
    survey: Survey,
    /// Time of the triggering detection (MJD; UTC for ZTF, TAI for LSST: close enough to order).
    mjd: f64,
    /// The survey associated the detection with a known solar-system body.
    solar_system: bool,
    /// Detections the packet carries: the triggering one and those in its history.
    detections: usize,
}

impl DemoPacket {
    fn new(name: String, bytes: Vec<u8>, alert: Alert) -> DemoPacket {
        DemoPacket {
            name,
            bytes,
            survey: alert.survey,
            mjd: alert.mjd,
            solar_system: alert.solar_system.is_some(),
            detections: alert.points.iter().filter(|p| p.kind == PointKind::Detection).count(),
            key: alert.key,
        }
    }
}

/// The object the demo features: a transient rather than an asteroid, and the one whose page
/// grows the most. Objects with a known solar-system body at any of their detections are passed
/// over (an asteroid crossing a field is not a transient, and successive ones share no light
/// curve), then the most alerts wins (each alert adds points while you watch), then the most
/// detections in one packet (the richest light curve); ties go to the first key in order.
/// Falls back on an associated object only when every object is one.
fn featured_object(packets: &[DemoPacket]) -> String {
    #[derive(Default)]
    struct Tally {
        alerts: usize,
        detections: usize,
        solar_system: bool,
    }
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    for p in packets {
        let t = tallies.entry(p.key.as_str()).or_default();
        t.alerts += 1;
        t.detections = t.detections.max(p.detections);
        t.solar_system |= p.solar_system;
    }
    tallies
        .into_iter()
        .max_by_key(|(key, t)| (!t.solar_system, t.alerts, t.detections, Reverse(*key)))
        .map(|(key, _)| key.to_owned())
        .unwrap_or_default()
}

/// The order the demo feeds its packets in: each object's alerts by observation time, with the
/// featured object's alerts spread evenly over the run and its first alert fed first, so its page
/// never opens empty and keeps growing. (By time alone, an object followed for weeks would
/// arrive in one burst whenever the other packets were taken on other nights.)
fn feeding_order(packets: Vec<DemoPacket>, featured: &str) -> Vec<DemoPacket> {
    let (mut watched, mut others): (Vec<DemoPacket>, Vec<DemoPacket>) =
        packets.into_iter().partition(|p| p.key == featured);
    watched.sort_by(|a, b| a.mjd.total_cmp(&b.mjd));
    others.sort_by(|a, b| a.mjd.total_cmp(&b.mjd));
    interleave(watched, others)
}

/// Merges `featured` into `others`, each kept in its order: of n featured items in a result of
/// `len`, the k-th goes to slot ⌈k·len/n⌉ — the first one first, the others evenly spaced.
fn interleave<T>(featured: Vec<T>, others: Vec<T>) -> Vec<T> {
    let (n, len) = (featured.len(), featured.len() + others.len());
    let (mut featured, mut others) = (featured.into_iter(), others.into_iter());
    let mut out = Vec::with_capacity(len);
    let mut placed = 0;
    for slot in 0..len {
        // Slot ⌈placed·len/n⌉ has come: the next featured item is due. (len ≥ n, so these slots
        // are distinct and the last is at most len − 1: exactly n slots take a featured item.)
        let item = if placed < n && slot * n >= placed * len {
            placed += 1;
            featured.next()
        } else {
            others.next()
        };
        out.extend(item);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleave_spreads_the_featured_items_and_keeps_every_item_in_order() {
        let spread =
            |n: usize, m: usize| interleave((0..n).map(|i| -(i as i64) - 1).collect(), (0..m as i64).collect());
        // 3 featured (-1, -2, -3) among 6 others: slots 0, 3 and 6.
        assert_eq!(spread(3, 6), vec![-1, 0, 1, -2, 2, 3, -3, 4, 5]);
        assert_eq!(spread(1, 3), vec![-1, 0, 1, 2]);
        assert_eq!(spread(2, 0), vec![-1, -2]);
        assert_eq!(spread(0, 2), vec![0, 1]);
        for (n, m) in [(22, 15), (22, 1), (5, 100), (1, 1), (7, 7)] {
            let out = spread(n, m);
            assert_eq!(out.len(), n + m, "{n} + {m}");
            assert_eq!(out[0], -1, "the first featured item goes first");
            let featured: Vec<i64> = out.iter().copied().filter(|x| *x < 0).collect();
            let others: Vec<i64> = out.iter().copied().filter(|x| *x >= 0).collect();
            assert_eq!(featured, (0..n).map(|i| -(i as i64) - 1).collect::<Vec<_>>(), "{n} + {m}");
            assert_eq!(others, (0..m as i64).collect::<Vec<_>>(), "{n} + {m}");
        }
    }

    /// The built-in set: every packet decodes with the published schemas, both surveys are fed,
    /// and the featured object is the supernova-like ZTF19abvhduf rather than an asteroid (see
    /// `demo-alerts/SOURCE.md`).
    #[test]
    fn the_built_in_demo_set_decodes_and_features_a_transient() {
        let mut packets = Vec::new();
        embedded_avro(&DEMO_ALERTS, &mut packets);
        let decoder = decoder(None).unwrap();
        let decoded: Vec<DemoPacket> = packets
            .into_iter()
            .map(|(name, bytes)| {
                let alert = decoder.decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                DemoPacket::new(name, bytes, alert)
            })
            .collect();
        assert_eq!(decoded.len(), 16);
        assert_eq!(decoded.iter().filter(|p| p.survey == Survey::Ztf).count(), 14);
        assert_eq!(decoded.iter().filter(|p| p.survey == Survey::Lsst).count(), 2);
        let watch = featured_object(&decoded);
        assert_eq!(watch, "ztf:ZTF19abvhduf");
        let order = feeding_order(decoded, &watch);
        assert_eq!(order[0].key, watch);
        assert_eq!(order.len(), 16);
    }
}
