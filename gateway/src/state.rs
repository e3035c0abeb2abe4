//! Shared state of the HTTP/WebSocket handlers.

use crate::config::Limits;
use lightkeeper_partition::hub::Hub;
use lightkeeper_partition::metrics::Labels;
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::Topic;
use lightkeeper_storage::state::StateStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// HTTP and WebSocket metric definitions.
#[derive(Clone)]
pub struct GatewayMetrics {
    pub requests: Family<Labels, Counter>,
    pub request_seconds: Family<Labels, Histogram>,
    pub ws_connections: Gauge,
    pub ws_subscriptions: Gauge,
    pub ws_slow_closed: Counter,
    /// Filter subscriptions' partition followers that fell behind the node's matcher and caught
    /// up from the changelog (each a replay: reading Kafka, not memory).
    pub filter_lagged: Counter,
    /// Replays of a partition's changes from the changelog for a filter subscription (a resume
    /// from a cursor, or a follower that lagged); a fresh subscription needs none.
    pub filter_replays: Counter,
    /// Handlers that panicked (answered with a JSON 500).
    pub http_panics: Counter,
    /// Requests refused by `crate::access`, by reason (the error code).
    pub access_denied: crate::access::DeniedFamily,
}

impl GatewayMetrics {
    pub fn register(registry: &mut Registry) -> GatewayMetrics {
        let m = GatewayMetrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.000_05, 2.0, 18))),
            ws_connections: Gauge::default(),
            ws_subscriptions: Gauge::default(),
            ws_slow_closed: Counter::default(),
            filter_lagged: Counter::default(),
            filter_replays: Counter::default(),
            http_panics: Counter::default(),
            access_denied: Default::default(),
        };
        registry.register("lightkeeper_http_requests", "HTTP requests by route and status", m.requests.clone());
        registry.register(
            "lightkeeper_http_request_seconds",
            "HTTP request latency by route",
            m.request_seconds.clone(),
        );
        registry.register("lightkeeper_ws_connections", "Open WebSocket connections", m.ws_connections.clone());
        registry.register("lightkeeper_ws_subscriptions", "Live object subscriptions", m.ws_subscriptions.clone());
        registry.register(
            "lightkeeper_ws_slow_closed",
            "WebSockets closed because the client could not keep up",
            m.ws_slow_closed.clone(),
        );
        registry.register(
            "lightkeeper_filter_lagged",
            "Filter subscriptions' partition followers that fell behind live matching and replayed the changelog",
            m.filter_lagged.clone(),
        );
        registry.register(
            "lightkeeper_filter_replays",
            "Replays of a partition's changes from the changelog for filter subscriptions (resumes and lagged followers)",
            m.filter_replays.clone(),
        );
        registry.register(
            "lightkeeper_http_panics",
            "HTTP handlers that panicked (each answered with a JSON 500 and logged)",
            m.http_panics.clone(),
        );
        registry.register(
            "lightkeeper_access_denied",
            "Requests refused by access control, by reason (unauthorized, forbidden, rate_limited, admin_disabled)",
            m.access_denied.clone(),
        );
        m
    }
}

pub struct Inner {
    pub node_id: String,
    /// Rendered object responses, invalidated through the hub.
    pub cache: Arc<crate::cache::ResponseCache>,
    pub store: Arc<dyn StateStore>,
    pub hub: Arc<Hub>,
    /// Each followed partition's changes matched once against every filter subscription here.
    pub matchers: Arc<crate::matcher::Matchers>,
    pub decoder: Arc<Decoder>,
    /// The input topic: `POST /v1/alerts` appends here, partitioned by object key.
    pub input: Arc<dyn Topic>,
    /// The changelog: filter subscriptions resuming from a cursor replay it (`partition::feed`).
    pub changelog: Arc<dyn Topic>,
    /// Schemas registered through this cluster's registry API; `None` when an external
    /// registry (`schemas.registry_url`) is the cluster's.
    pub registered_schemas: Option<Arc<lightkeeper_storage::registry::LogRegistry>>,
    /// Pipelines and watch lists: the settings topic and what runs from it.
    pub settings: Arc<crate::settings::LiveSettings>,
    /// The registry subject the node serves its schemas under: `<input topic>-value`
    /// (Confluent's topic-name strategy for the topic it writes them to).
    pub schema_subject: String,
    /// Partitions of the input topic (routing hashes keys over this many).
    pub partition_count: u32,
    /// The replicas this node hosts, by partition (changes as placement moves replicas).
    pub replicas: crate::replicas::Replicas,
    pub cluster: crate::config::Cluster,
    /// Node-to-node HTTP: forwarded reads (trusting `tls.ca_file` when set).
    pub peer_client: reqwest::Client,
    /// The TLS client configuration of WebSockets to other nodes (the relay), from `tls.ca_file`.
    pub peer_tls: Option<Arc<rustls::ClientConfig>>,
    /// Node-to-node control calls (status, drain, promote, coordinator writes).
    pub peers: Arc<crate::peers::HttpPeers>,
    pub registry: Registry,
    pub metrics: GatewayMetrics,
    pub limits: Limits,
    /// The disk budget: ingest is refused above it (`crate::disk`).
    pub disk: Arc<crate::disk::DiskBudget>,
    /// Tokens, scopes and rate limits (`crate::access`).
    pub access: crate::access::Guard,
    /// Compression and CORS (`routes::web`).
    pub http: crate::config::Http,
    /// Fires at shutdown: WebSocket sessions close with "going away".
    pub shutdown: CancellationToken,
    /// Set by a node drain (before a rolling restart): `/readyz` answers 503 so load balancers
    /// stop sending traffic here, and the node's masters have been handed to standbys.
    pub draining: std::sync::atomic::AtomicBool,
    /// The embedded coordinator, set once it has started (just after the node starts serving;
    /// until then the Raft routes answer 503).
    pub coordinator: std::sync::OnceLock<Arc<crate::coordinator::Coordinator>>,
}

impl Inner {
    /// The base URL of node `name`: as registered in the coordinator's table, else as configured.
    pub fn peer_url(&self, name: &str) -> Option<String> {
        self.coordinator.get().and_then(|c| c.url_of(name)).or_else(|| self.cluster.peers.get(name).cloned())
    }

    /// The nodes hosting `partition`, preferred master first: the coordinator's placement, else
    /// the configured one.
    pub fn placement(&self, partition: u32) -> Vec<String> {
        match self.coordinator.get() {
            Some(c) => c.replicas_of(partition),
            None => self.cluster.replicas(partition),
        }
    }

    /// Every node known: node id → base URL.
    pub fn known_nodes(&self) -> BTreeMap<String, String> {
        match self.coordinator.get() {
            Some(c) => c.nodes(),
            None => self.cluster.peers.clone(),
        }
    }
}

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
