//! Assembling a node: schema registry, logs (Kafka or embedded), RocksDB state, partition
//! workers and the HTTP server — and taking it down again in order.
//!
//! Shutdown order (`Node::serve`): cancel (stop accepting requests, close WebSockets, leave
//! the Raft group) → drain in-flight requests (bounded) → join every task the node started
//! (one `TaskTracker`) → stop the replicas' threads (each finishes or cleanly abandons its
//! batch) → flush the store.

use crate::config::Config;
use crate::peers::raft_network::Network;
use crate::peers::HttpPeers;
use crate::routes::router;
use crate::settings::{EmbeddedOpener, KafkaOpener, LiveSettings};
use crate::state::{AppState, GatewayMetrics, Inner};
use anyhow::{bail, Context};
use axum::serve::ListenerExt;
use lightkeeper_coordinator::{Coordinator, Settings};
use lightkeeper_partition::hub::Hub;
use lightkeeper_partition::metrics::PartitionMetrics;
use lightkeeper_partition::pipeline::writers::TopicOpener;
use lightkeeper_partition::pipeline::{PipelineMetrics, Pipelines};
use lightkeeper_partition::worker::{StartRole, WorkerDeps};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{EmbeddedLog, KafkaTopic, Topic};
use lightkeeper_storage::registry::{ConfluentRegistry, EmbeddedRegistry, Layered, LogRegistry, SchemaRegistry};
use lightkeeper_storage::settings::SettingsLog;
use lightkeeper_storage::state::{RocksStore, StateStore, StoreOptions};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub struct Node {
    pub state: AppState,
    config: Config,
    pub mode: &'static str,
    /// The listener's TLS, when `tls.cert_file` is set (read and checked at start), and the
    /// certificate it serves (reloaded on SIGHUP and when its files change).
    tls: Option<(Arc<rustls::ServerConfig>, Arc<crate::tls::Certificate>)>,
    /// The logs this node keeps bounded itself (the embedded ones; a broker bounds its own).
    upkeep: Vec<Upkeep>,
}

/// Bounded drain time for open connections at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// The node's schema registry and, when the node is its own registry, its registered schemas.
type Registries = (Arc<dyn SchemaRegistry>, Option<Arc<LogRegistry>>);

/// The schema registry, and the node's own registered schemas when it is its own registry.
/// - With `schemas.registry_url`: that Confluent registry, asked first, over the published
///   LSST versions shipped in the binary.
/// - Without: the published versions (with `schemas.dir`'s laid over them), then the schemas
///   registered through this cluster's registry API, kept in `topics.schemas`.
fn schema_registry(config: &Config, schemas_topic: Arc<dyn Topic>) -> anyhow::Result<Registries> {
    let published = EmbeddedRegistry::published();
    if let Some(url) = &config.schemas.registry_url {
        let first = Arc::new(
            ConfluentRegistry::with_auth(url, Duration::from_secs(10), &config.schemas.registry_auth)
                .context("schemas.registry_auth")?,
        );
        info!(url = %url, "LSST schemas: the Confluent registry, then the published versions");
        return Ok((Arc::new(Layered { first, then: Arc::new(published) }), None));
    }
    let shipped = match &config.schemas.dir {
        Some(dir) => {
            let reg = EmbeddedRegistry::from_dir(dir).with_context(|| format!("schemas.dir {}", dir.display()))?;
            published.overlaid_with(reg)
        }
        None => published,
    };
    let shipped: Arc<dyn SchemaRegistry> = Arc::new(shipped);
    let registered =
        Arc::new(LogRegistry::open(schemas_topic, shipped.clone()).context("reading the registered schemas")?);
    info!(
        shipped = ?shipped.known_ids(),
        registered = ?registered.known_ids(),
        "LSST schemas: the published versions{}, then those registered through the registry API",
        if config.schemas.dir.is_some() { " and schemas.dir's" } else { "" }
    );
    let layered = Layered { first: shipped, then: registered.clone() };
    Ok((Arc::new(layered), Some(registered)))
}

/// The topics of a node.
struct Topics {
    input: Arc<dyn Topic>,
    changelog: Arc<dyn Topic>,
    dead_letter: Arc<dyn Topic>,
    schemas: Arc<dyn Topic>,
    settings: Arc<dyn Topic>,
    /// Opens the topics pipelines write to, on the same engine.
    outputs: Arc<dyn TopicOpener>,
}

fn kafka_topics(config: &Config, kafka: &lightkeeper_storage::log::KafkaConfig) -> anyhow::Result<Topics> {
    let t = &config.topics;
    let n = kafka.ensure_retained_topic(&t.input, t.partitions, t.input_retention()).context("input topic")?;
    let c = kafka
        .ensure_topic(&t.changelog, n, Some(Duration::from_millis(t.changelog_min_compaction_lag_ms)))
        .context("changelog topic")?;
    if c != n {
        bail!(
            "changelog topic {} has {c} partitions but input topic {} has {n}; they must match",
            t.changelog,
            t.input
        );
    }
    kafka.ensure_retained_topic(&t.dead_letter, n, t.dead_letter_retention()).context("dead-letter topic")?;
    // Registrations are kept forever: compaction keeps the latest (the only) record per id.
    kafka.ensure_topic(&t.schemas, 1, Some(Duration::ZERO)).context("schemas topic")?;
    kafka.ensure_topic(&t.settings, 1, Some(Duration::ZERO)).context("settings topic")?;
    Ok(Topics {
        input: Arc::new(KafkaTopic::open(kafka, &t.input)?),
        changelog: Arc::new(KafkaTopic::open(kafka, &t.changelog)?),
        dead_letter: Arc::new(KafkaTopic::open(kafka, &t.dead_letter)?),
        schemas: Arc::new(KafkaTopic::open(kafka, &t.schemas)?),
        settings: Arc::new(KafkaTopic::open(kafka, &t.settings)?),
        outputs: Arc::new(KafkaOpener::new(kafka.clone())),
    })
}

fn embedded_topics(config: &Config) -> anyhow::Result<Topics> {
    let dir = config.data_dir.join("log");
    std::fs::create_dir_all(&dir)?;
    // The partition count of an embedded log is fixed at creation: keys are routed by it.
    let marker = dir.join("PARTITIONS");
    let n = match std::fs::read_to_string(&marker) {
        Ok(s) => {
            let n: u32 = s.trim().parse().with_context(|| format!("{} is corrupt", marker.display()))?;
            if n != config.topics.partitions {
                bail!(
                    "configuration field `topics.partitions`: the embedded log in {} was created with {n} partitions, not {}",
                    dir.display(),
                    config.topics.partitions
                );
            }
            n
        }
        Err(_) => {
            std::fs::write(&marker, config.topics.partitions.to_string())?;
            config.topics.partitions
        }
    };
    let log = Arc::new(EmbeddedLog::open(&dir)?);
    let t = &config.topics;
    Ok(Topics {
        input: log.topic(&t.input, n)?,
        changelog: log.topic(&t.changelog, n)?,
        dead_letter: log.topic(&t.dead_letter, n)?,
        schemas: log.topic(&t.schemas, 1)?,
        settings: log.topic(&t.settings, 1)?,
        outputs: Arc::new(EmbeddedOpener::new(log.clone())),
    })
}

impl Node {
    /// Opens storage and logs and starts the partition workers. Blocking: call it before the
    /// server runs (or from `spawn_blocking`).
    pub fn start(config: &Config) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("data_dir {}", config.data_dir.display()))?;
        let (topics, mode) = match &config.kafka {
            Some(k) => (kafka_topics(config, k)?, "kafka"),
            None => (embedded_topics(config)?, "embedded"),
        };
        let (registry, registered_schemas) = schema_registry(config, topics.schemas.clone())?;
        let decoder = Arc::new(Decoder::new(registry));
        let store_opts =
            StoreOptions { memory_budget_bytes: config.storage.memory_budget_mib << 20, sync_writes: false };
        let store: Arc<dyn StateStore> =
            Arc::new(RocksStore::open(&config.data_dir.join("state"), &store_opts).context("opening the state store")?);

        let mut registry = Registry::default();
        let partition_metrics = PartitionMetrics::register(&mut registry);
        let pipeline_dir = config.storage.pipeline_dir.clone().unwrap_or_else(|| config.data_dir.join("pipelines"));
        let pipelines =
            Arc::new(Pipelines::new(PipelineMetrics::register(&mut registry), topics.outputs.clone(), pipeline_dir));
        let settings_log = Arc::new(SettingsLog::open(topics.settings.clone()).context("reading the settings topic")?);
        let settings = Arc::new(LiveSettings::new(settings_log, pipelines.clone()));
        settings.refresh().context("installing the stored pipelines")?;
        let metrics = GatewayMetrics::register(&mut registry);
        let cache = Arc::new(crate::cache::ResponseCache::new(config.storage.response_cache_mib << 20));
        let invalidate = cache.clone();
        let hub = Arc::new(Hub::with_listener(
            config.limits.object_channel_capacity,
            Box::new(move |key: &str| invalidate.invalidate(key)),
        ));
        let upkeep = if config.kafka.is_some() { Vec::new() } else { log_upkeep(config, &topics) };
        let disk = crate::disk::DiskBudget::new(config.storage.disk_budget_mib, &mut registry);
        let deps = WorkerDeps {
            node_id: config.node_id.clone(),
            input: topics.input.clone(),
            changelog: topics.changelog.clone(),
            dead_letter: topics.dead_letter,
            store: store.clone(),
            decoder: decoder.clone(),
            hub: hub.clone(),
            metrics: partition_metrics,
            batch_size: config.batch_size,
            pipelines,
            intake_paused: disk.intake_paused(),
        };
        let partition_count = topics.input.partitions();
        let cluster = &config.cluster;
        if let Some(a) = cluster.assignment.iter().find(|a| a.partition >= partition_count) {
            bail!(
                "configuration field `cluster.assignment`: partition {} does not exist (topic {} has {partition_count})",
                a.partition,
                config.topics.input
            );
        }
        // A single node hosts and masters every partition. A cluster node hosts what the
        // coordinator's table places on it (`replicas::follow_placement`, once serving).
        let replicas = crate::replicas::Replicas::new(deps);
        if cluster.is_single_node() {
            for p in 0..partition_count {
                replicas.host(p, StartRole { single_node: true, ..StartRole::default() }, false)?;
            }
            replicas.mark_placed();
            info!(partitions = partition_count, "partition replicas started");
        }
        // Every call to another node carries the cluster token: forwarded reads and scattered
        // queries pass its access checks as a node's (`crate::access`).
        // A single node without a configured cluster token still calls itself (the coordinator
        // checks its own status): it gets a random one for its lifetime.
        // Trimmed as the receiving side trims a bearer token.
        let configured_token = config.cluster.admin_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let node_token = match configured_token {
            Some(t) => t.to_owned(),
            None => crate::access::new_token()?,
        };
        let mut peer_headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {node_token}"))
            .context("configuration field `cluster.admin_token`: not valid in an HTTP header")?;
        value.set_sensitive(true);
        peer_headers.insert(reqwest::header::AUTHORIZATION, value);
        let tls = config.tls.serves().then(|| crate::tls::server_config(&config.tls)).transpose()?;
        let peer_roots = crate::tls::peer_roots(&config.tls)?;
        let peer_client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(500))
            .pool_max_idle_per_host(64)
            .default_headers(peer_headers);
        let peer_client =
            crate::tls::trust(peer_client, peer_roots.as_deref())?.build().context("HTTP client for peers")?;
        let peer_tls = peer_roots.as_deref().map(crate::tls::client_config).transpose()?;
        let peers = Arc::new(HttpPeers::new(peer_client.clone(), Some(node_token.clone())));
        let shutdown = CancellationToken::new();
        let access = crate::access::Guard::new(
            &config.access,
            &node_token,
            configured_token.is_some(),
            &config.http.cors_allow_origins,
            config.cluster.advertise_url.as_deref(),
            metrics.access_denied.clone(),
        );
        let state = AppState(Arc::new(Inner {
            node_id: config.node_id.clone(),
            cache,
            store,
            matchers: crate::matcher::Matchers::new(hub.clone(), shutdown.clone()),
            hub,
            decoder,
            input: topics.input,
            changelog: topics.changelog,
            registered_schemas,
            settings,
            schema_subject: format!("{}-value", config.topics.input),
            partition_count,
            replicas,
            cluster: config.cluster.clone(),
            peer_client,
            peer_tls,
            peers,
            registry,
            metrics,
            limits: config.limits.clone(),
            access,
            disk,
            http: config.http.clone(),
            shutdown,
            draining: AtomicBool::new(false),
            coordinator: std::sync::OnceLock::new(),
        }));
        Ok(Node { state, mode, config: config.clone(), tls, upkeep })
    }

    /// Serves HTTP on `listener` until `stop` fires, then shuts down in order.
    pub async fn serve(self, listener: TcpListener, stop: CancellationToken) -> anyhow::Result<()> {
        let addr: SocketAddr = listener.local_addr()?;
        // The one line tests and operators wait for; it names the real port when `:0` was given.
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        println!("lightkeeper listening on {scheme}://{addr} (node {}, {} mode)", self.state.node_id, self.mode);
        info!(%addr, mode = self.mode, "listening");
        if self.config.access.anonymous_ingest && !addr.ip().is_loopback() {
            tracing::warn!(
                %addr,
                "anyone who can reach this address may ingest alerts: set access.anonymous_ingest = false and give producers ingest tokens"
            );
        }
        let state = self.state.clone();
        // Every task the node starts is owned here: registered with the tracker, stopped by a
        // child of `stop` (dropped at its next await point, as an abort would), and joined
        // before the replicas' threads are stopped and the store is flushed.
        let tasks = TaskTracker::new();
        let ready_state = state.clone();
        spawn_until(&tasks, &stop, async move {
            loop {
                if let Ok(hosted) = ready_state.replicas.ready() {
                    info!(%addr, replicas = hosted, "node ready");
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        spawn_until(&tasks, &stop, state.settings.clone().follow(stop.child_token()));
        spawn_until(&tasks, &stop, state.disk.clone().watch(self.config.data_dir.clone()));
        if !self.upkeep.is_empty() {
            spawn_until(&tasks, &stop, keep_logs_bounded(self.upkeep.clone(), state.clone()));
        }
        if let Some((_, certificate)) = &self.tls {
            spawn_until(&tasks, &stop, crate::tls::keep_certificate_fresh(certificate.clone(), stop.child_token()));
        }
        // Serve before the coordinator opens: the listener is bound, so a connection made before
        // `serve` runs would wait in the backlog instead of being answered. Raft RPCs answer 503
        // until the coordinator is set.
        let shutdown = state.shutdown.clone();
        let server_stop = stop.child_token();
        let graceful = server_stop.clone();
        // TCP_NODELAY on every accepted connection: a WebSocket sends one small frame per
        // change, and with Nagle's algorithm a frame that follows an unacknowledged one waits
        // for the client's delayed ACK — up to 40 ms (measured: the p99 of push latency at
        // 200 alerts/s fell from 45 ms, see BENCHMARKS.md, "Push latency and freshness").
        // With each connection's peer address: per-address rate limits (`crate::access`).
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let stopping = async move {
            graceful.cancelled().await;
            shutdown.cancel();
        };
        let mut server = match self.tls.clone() {
            Some((tls, _)) => {
                // Sets TCP_NODELAY itself, before the handshake.
                // (tapped without doing anything: axum gives a tapped listener's connections
                // their address, for `ConnectInfo`.)
                let listener = crate::tls::TlsListener::new(listener, tls)?.tap_io(|_| {});
                let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
                tokio::spawn(async move { server.await })
            }
            None => {
                let listener = listener.tap_io(|tcp| {
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
                    }
                });
                let server = axum::serve(listener, app).with_graceful_shutdown(stopping);
                tokio::spawn(async move { server.await })
            }
        };
        let start_error = match self.start_coordinator(addr, &tasks, &stop).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(error = %e, "the coordinator could not start; stopping");
                server_stop.cancel();
                Some(e)
            }
        };
        // 1. Cancel: the server stops accepting and closes WebSockets; the coordinator leaves
        //    Raft at once (see `start_coordinator`).
        // 2. Drain: in-flight requests get up to `DRAIN` to finish.
        let result = tokio::select! {
            r = &mut server => r.unwrap_or_else(|e| Err(std::io::Error::other(format!("the HTTP server task failed: {e}")))),
            () = async { server_stop.cancelled().await; tokio::time::sleep(DRAIN).await } => {
                tracing::warn!(drain_secs = DRAIN.as_secs(), "connections still open after the drain time; closing them");
                server.abort();
                Ok(())
            }
        };
        stop.cancel(); // also when the server ended by itself
                       // 3. Join every task (a placement follower may be joining a replica's thread: it finishes).
        tasks.close();
        tasks.wait().await;
        // 4. Stop the replicas' threads and flush the store.
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || {
            state.replicas.stop_all();
            let store = &state.store;
            // The store runs without a WAL: flush, so the next start reads only the changelog
            // written after this point.
            if let Err(e) = store.flush() {
                tracing::warn!(error = %e, "flushing the state store failed; the next start re-reads more changelog");
            }
        })
        .await?;
        info!("node stopped");
        if let Some(e) = start_error {
            return Err(e.context("the coordinator could not start"));
        }
        result.map_err(Into::into)
    }

    /// Starts the coordinator and its tasks (registration and leader duties, following the
    /// placement, leaving Raft at `stop`), owned by `tasks`.
    async fn start_coordinator(
        &self,
        addr: SocketAddr,
        tasks: &TaskTracker,
        stop: &CancellationToken,
    ) -> anyhow::Result<()> {
        let state = &self.state;
        let settings = Settings {
            node_id: state.node_id.clone(),
            url: self.config.cluster.own_url(&state.node_id, addr, self.tls.is_some()),
            dir: self.config.data_dir.join("raft"),
            cluster: self.config.cluster.clone(),
            partitions: state.partition_count,
        };
        let network = Network::new(raft_client(&self.config.tls)?, Some(self.state.access.node_token().to_owned()));
        let coordinator = Coordinator::start(settings, state.peers.clone(), network).await?;
        let _ = state.coordinator.set(coordinator.clone());
        let mastered = state.clone();
        let mastered = move || {
            mastered
                .replicas
                .snapshot()
                .iter()
                .filter(|(_, r)| r.status.is_serving_master())
                .map(|(p, r)| (*p, r.status.epoch.load(Ordering::Relaxed)))
                .collect()
        };
        let url = self.config.cluster.own_url(&state.node_id, addr, self.tls.is_some());
        spawn_until(tasks, stop, coordinator.clone().run(state.node_id.clone(), url, mastered, stop.child_token()));
        if !self.config.cluster.is_single_node() {
            let follow = crate::hosting::follow_placement(state.clone(), coordinator.clone(), stop.child_token());
            spawn_until(tasks, stop, follow);
        }
        // Leave the Raft group as soon as the node is told to stop: its failure detector stops
        // with it, so a leader lingering through the HTTP drain would leave the cluster without
        // anyone to fail over (the others elect a new leader at once).
        let leave = stop.child_token();
        tasks.spawn(async move {
            leave.cancelled().await;
            if let Err(e) = coordinator.raft.shutdown().await {
                tracing::warn!(error = %e, "coordinator shutdown");
            }
        });
        Ok(())
    }
}

/// Spawns `task` on `tasks`, dropped (at its next await point) when `stop` fires.
fn spawn_until(tasks: &TaskTracker, stop: &CancellationToken, task: impl Future<Output = ()> + Send + 'static) {
    let stop = stop.child_token();
    tasks.spawn(async move {
        tokio::select! {
            () = stop.cancelled() => {}
            () = task => {}
        }
    });
}

/// How often the embedded logs' retention and compaction run.
const UPKEEP_EVERY: Duration = Duration::from_secs(600);

/// How one embedded log is kept bounded — what a broker does to a Kafka topic by its
/// configuration.
#[derive(Clone)]
struct Upkeep {
    topic: Arc<dyn Topic>,
    /// Records older than this are removed: all of them (`retention.ms`), or only those a newer
    /// record of the same key replaces (compaction after `min.compaction.lag.ms`).
    after: Duration,
    compact: bool,
    /// Retention stops at what this node's masters have not materialized yet (the input).
    unread_kept: bool,
}

/// The embedded logs and their policies: the input and dead letters are deleted after their
/// retention; the changelog is compacted after `topics.changelog_min_compaction_lag_ms` (the
/// window in which a filter subscription resumes exactly); settings keep their latest record
/// per key. Registered schemas are kept whole: a handful, and the *first* registration of an id
/// is the one every node takes, which compaction (keeping the last) would not preserve.
fn log_upkeep(config: &Config, topics: &Topics) -> Vec<Upkeep> {
    let t = &config.topics;
    let mut upkeep = vec![
        Upkeep {
            topic: topics.changelog.clone(),
            after: Duration::from_millis(t.changelog_min_compaction_lag_ms),
            compact: true,
            unread_kept: false,
        },
        Upkeep { topic: topics.settings.clone(), after: Duration::ZERO, compact: true, unread_kept: false },
    ];
    if let Some(after) = t.input_retention() {
        upkeep.push(Upkeep { topic: topics.input.clone(), after, compact: false, unread_kept: true });
    }
    if let Some(after) = t.dead_letter_retention() {
        upkeep.push(Upkeep { topic: topics.dead_letter.clone(), after, compact: false, unread_kept: false });
    }
    upkeep
}

/// Sets its flag when dropped: the owner of a blocking job is gone, and the job should stop.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Applies every [`Upkeep`] at start and every [`UPKEEP_EVERY`], off the async runtime. A pass
/// in progress when the node stops (this future is dropped) stops at its next record, so a
/// shutdown never waits for a scan of a whole log.
async fn keep_logs_bounded(upkeep: Vec<Upkeep>, state: AppState) {
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_on_drop = StopOnDrop(stop.clone());
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        for u in &upkeep {
            let cutoff = std::time::SystemTime::now()
                .checked_sub(u.after)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            let (topic, compact, unread_kept, state) = (u.topic.clone(), u.compact, u.unread_kept, state.clone());
            let stop = stop.clone();
            let run = move || {
                // A partition without a replica here keeps everything.
                let keep_from = |p: u32| {
                    if unread_kept {
                        state.replicas.get(p).map_or(0, |r| r.status.input_next.load(Ordering::Acquire))
                    } else {
                        u64::MAX
                    }
                };
                if compact {
                    topic.compact_older_than(cutoff, &stop)
                } else {
                    topic.delete_older_than(cutoff, &keep_from, &stop)
                }
            };
            let what = if u.compact { "compaction" } else { "retention" };
            match tokio::task::spawn_blocking(run).await {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => info!(removed = n, topic = u.topic.name(), "log {what}: old records removed"),
                Ok(Err(e)) => tracing::warn!(error = %e, topic = u.topic.name(), "log {what} failed; retrying later"),
                Err(e) => tracing::warn!(error = %e, "log {what} task failed"),
            }
        }
    }
}

/// The HTTP client of the Raft RPCs: a short connect timeout, so a dead peer is found at once.
fn raft_client(tls: &crate::config::Tls) -> anyhow::Result<reqwest::Client> {
    let roots = crate::tls::peer_roots(tls)?;
    let builder = reqwest::Client::builder().connect_timeout(Duration::from_millis(300));
    crate::tls::trust(builder, roots.as_deref())?.build().context("HTTP client for Raft")
}

/// Fires on SIGINT or SIGTERM.
pub fn stop_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("install SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        info!("shutdown requested");
        t.cancel();
    });
    token
}
