//! `bench subscribers`: how many live WebSocket subscribers one node holds, what each costs in
//! resident memory, and how fast it fans an update out to all of them.
//!
//! One embedded node; `--objects` objects ingested first; then `--subscribers` WebSocket
//! connections, each subscribed to one object (round-robin), opened from several loopback
//! source addresses (127.0.0.2, .3, …: one address runs out of ephemeral ports near 28,000).
//! Memory: the node's resident set (`VmRSS`) once every subscriber has its snapshot, against
//! the same node before the first connection — the difference divided by the subscribers is
//! the cost of one. Fan-out: one new alert for every object, posted back to back; every
//! subscriber must receive its object's update, and the time from the first post to the last
//! delivery gives the delivery rate; the same for a single object's subscribers gives the
//! time to the last of them. The subscribers run in this process, on the same two cores.

use crate::common::machine;
use futures::{SinkExt, StreamExt};
use lightkeeper_clients::api::ws::ClientOp;
use lightkeeper_clients::Client;
use lightkeeper_tests::synth::{load_templates, object_id, reissue};
use lightkeeper_tests::{shared_data, NodeProcess};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

/// Connections per loopback source address (below the ~28,000 ephemeral ports of one).
const PER_SOURCE: usize = 20_000;
/// Handshakes in flight at once.
const OPENING: usize = 256;

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Raises this process's open-file limit (inherited by the node it starts) to fit `n` sockets.
fn raise_fd_limit(n: usize) -> anyhow::Result<()> {
    let want = (n as u64 + 1_000) as libc::rlim_t;
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid pointer.
    unsafe {
        anyhow::ensure!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0, "getrlimit failed");
        if lim.rlim_cur < want {
            let raised = libc::rlimit { rlim_cur: want, rlim_max: lim.rlim_max.max(want) };
            anyhow::ensure!(
                libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0,
                "cannot raise the open-file limit to {want} (now {}; hard {}): run as root or raise `ulimit -Hn`",
                lim.rlim_cur,
                lim.rlim_max
            );
        }
    }
    Ok(())
}

pub async fn run(subscribers: usize, objects: usize) -> anyhow::Result<()> {
    anyhow::ensure!(subscribers > 0 && objects > 0, "--subscribers and --objects must be positive");
    // Both ends of every connection are in this machine: two descriptors per subscriber.
    raise_fd_limit(subscribers)?;
    let tmp = tempfile::tempdir()?;
    let node = NodeProcess::start(&tmp.path().join("node"), &[], &[])?;
    node.wait_ready(Duration::from_secs(60)).await?;
    let client = Client::new(&node.url)?;
    let templates = load_templates(&shared_data().join("ztf/alerts/fink-alert-simulator/datasim_20181129"), 64);
    let keys: Vec<String> = (0..objects).map(|j| format!("ztf:{}", object_id(j))).collect();
    let mut candid = 5_000_000_000_000_000_000i64;
    for (j, _) in keys.iter().enumerate() {
        candid += 1;
        client.ingest(reissue(&templates[j % templates.len()], &object_id(j), candid)).await?;
    }
    let pid = node.child.id();
    let rss_before = rss_kib(pid);

    // Open every subscriber: connect, subscribe, wait for the snapshot, then count updates.
    let port: u16 = node
        .url
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no port in {}", node.url))?;
    let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    let ws_url = format!("ws://127.0.0.1:{port}/v1/ws");
    let received: Arc<Vec<AtomicU64>> = Arc::new((0..objects).map(|_| AtomicU64::new(0)).collect());
    let closed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut readers = Vec::with_capacity(subscribers);
    let mut opened = 0;
    while opened < subscribers {
        let batch = (opened..(opened + OPENING).min(subscribers)).map(|i| {
            let (ws_url, key) = (ws_url.clone(), keys[i % objects].clone());
            async move {
                let source = Ipv4Addr::new(127, 0, 0, 2 + (i / PER_SOURCE) as u8);
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
                let stream = socket.connect(server).await?;
                let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
                let (mut ws, _) = tokio_tungstenite::client_async_with_config(ws_url, stream, Some(config)).await?;
                let op = ClientOp::subscribe_objects("s", vec![key], None);
                ws.send(Message::Text(op.to_text().into())).await?;
                // The snapshot.
                match tokio::time::timeout(Duration::from_secs(60), ws.next()).await? {
                    Some(Ok(Message::Text(t))) if t.contains("\"snapshot\"") => {}
                    other => anyhow::bail!("subscriber {i}: expected a snapshot, got {other:?}"),
                }
                anyhow::Ok(ws)
            }
        });
        for (k, ws) in futures::future::try_join_all(batch).await?.into_iter().enumerate() {
            let i = opened + k;
            let (received, closed) = (received.clone(), closed.clone());
            readers.push(tokio::spawn(async move {
                let mut ws = ws;
                while let Some(Ok(m)) = ws.next().await {
                    if let Message::Text(t) = m {
                        if t.starts_with("{\"type\":\"update\"") {
                            received[i % received.len()].fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                closed.fetch_add(1, Ordering::Relaxed);
            }));
        }
        opened = readers.len();
        if opened % 5_000 < OPENING {
            eprint!("\rsubscribed {opened}/{subscribers}");
        }
    }
    let open_seconds = started.elapsed().as_secs_f64();
    eprintln!("\rsubscribed {subscribers} in {open_seconds:.1} s");
    // Let the node settle (allocator caches) before reading its memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid);
    let own_rss = rss_kib(std::process::id());

    // Fan-out 1: one object's subscribers.
    let per_object = |j: usize| (0..subscribers).filter(|i| i % objects == j).count() as u64;
    let wait_for = |targets: Vec<(usize, u64)>, deadline: Instant| {
        let received = received.clone();
        async move {
            loop {
                if targets.iter().all(|(j, n)| received[*j].load(Ordering::Relaxed) >= *n) {
                    return Ok(());
                }
                anyhow::ensure!(Instant::now() < deadline, "not every subscriber got its update within 60 s");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    candid += 1;
    let one = reissue(&templates[0], &object_id(0), candid);
    let t0 = Instant::now();
    client.ingest(one).await?;
    wait_for(vec![(0, per_object(0))], Instant::now() + Duration::from_secs(60)).await?;
    let one_object = t0.elapsed();

    // Fan-out 2: every object, back to back.
    let packets: Vec<Vec<u8>> = (0..objects)
        .map(|j| {
            candid += 1;
            reissue(&templates[(j + 1) % templates.len()], &object_id(j), candid)
        })
        .collect();
    let t1 = Instant::now();
    for p in packets {
        client.ingest(p).await?;
    }
    let posted = t1.elapsed();
    let targets = (0..objects).map(|j| (j, per_object(j) * if j == 0 { 2 } else { 1 })).collect();
    wait_for(targets, Instant::now() + Duration::from_secs(60)).await?;
    let all_objects = t1.elapsed();
    let lost = closed.load(Ordering::Relaxed);
    let metrics = client.metrics().await?;
    let rss_delivered = rss_kib(pid);
    for r in readers {
        r.abort();
    }
    drop(node);

    let per_sub_kib = (rss_after.saturating_sub(rss_before)) as f64 / subscribers as f64;
    println!(
        "## WebSocket subscribers on one embedded node: {subscribers} subscribers of {objects} objects — {}",
        machine()
    );
    println!("| measure | value |\n|---|---|");
    println!("| node RSS before the first subscriber | {} MiB |", rss_before / 1024);
    println!("| node RSS with every subscriber holding its snapshot | {} MiB |", rss_after / 1024);
    println!("| per subscriber | {per_sub_kib:.1} KiB |");
    println!(
        "| node RSS after delivering two updates to every subscriber | {} MiB ({:.1} KiB per subscriber over the first reading) |",
        rss_delivered / 1024,
        (rss_delivered.saturating_sub(rss_before)) as f64 / subscribers as f64
    );
    println!("| subscribers per GiB at that cost | {:.0} |", (1 << 20) as f64 / per_sub_kib.max(0.001));
    println!("| time to open and subscribe all (256 handshakes at a time) | {open_seconds:.1} s |");
    println!(
        "| one object's {} subscribers: POST → last of them has the update | {:.1} ms |",
        per_object(0),
        one_object.as_secs_f64() * 1e3
    );
    println!(
        "| one alert per object ({objects} POSTs, {:.0} ms): first POST → every subscriber has its update | {:.1} ms ({:.0} updates/s delivered) |",
        posted.as_secs_f64() * 1e3,
        all_objects.as_secs_f64() * 1e3,
        subscribers as f64 / all_objects.as_secs_f64()
    );
    println!("| connections closed during the run | {lost} |");
    println!(
        "| slow consumers closed by the node | {} |",
        lightkeeper_tests::cluster::metric_samples(&metrics, "lightkeeper_ws_slow_closed_total").sum::<f64>()
    );
    println!("| this process (the subscribers' side) RSS | {} MiB |", own_rss / 1024);
    println!("\ncommand: `bench subscribers --subscribers {subscribers} --objects {objects}`");
    anyhow::ensure!(lost == 0, "{lost} subscribers were disconnected");
    Ok(())
}
