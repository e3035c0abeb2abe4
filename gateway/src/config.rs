//! Node configuration: one typed struct, layered defaults ← TOML file ← `LIGHTKEEPER_*`
//! environment ← command line, validated once at start-up with messages that name the field.
//!
//! Environment variables use `__` for nesting: `LIGHTKEEPER_KAFKA__BOOTSTRAP=host:9092`,
//! `LIGHTKEEPER_LIMITS__MAX_BODY_BYTES=1048576`. Unknown keys are rejected, so a typo fails
//! loudly instead of silently running on a default.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
pub use lightkeeper_coordinator::config::{Assignment, Cluster};
use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_storage::registry::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's id, recorded in epoch markers and shown in `/v1/cluster`.
    pub node_id: String,
    /// HTTP listen address; port 0 picks a free port (the ready log line names the real one).
    pub listen: SocketAddr,
    /// Directory for RocksDB state (and the embedded log when no broker is configured).
    pub data_dir: PathBuf,
    /// Kafka connection; absent = the embedded single-node default.
    pub kafka: Option<KafkaConfig>,
    pub topics: Topics,
    pub schemas: Schemas,
    pub limits: Limits,
    pub storage: Storage,
    pub http: Http,
    /// Who may call what: tokens and their scopes, anonymous reads, rate limits (`crate::access`).
    pub access: Access,
    /// TLS for this node's HTTP and WebSocket listener, and the CA its calls to other nodes trust.
    pub tls: Tls,
    /// Other nodes and who hosts which partition; absent = a single node mastering everything.
    pub cluster: Cluster,
    /// Input records per worker batch.
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Input topic of alert packets, keyed by object key.
    pub input: String,
    /// Compacted changelog topic (created with cleanup.policy=compact).
    pub changelog: String,
    /// Dead-letter topic for packets that cannot be decoded or are misrouted.
    pub dead_letter: String,
    /// Compacted one-partition topic of the LSST schemas registered through the nodes'
    /// registry API (`POST /subjects/{subject}/versions`), read by every node. Unused when
    /// `schemas.registry_url` names an external registry.
    pub schemas: String,
    /// Compacted one-partition topic of the run-time settings every node reads: pipeline
    /// definitions and watch lists (`/v1/pipelines`, `/v1/watchlists`).
    pub settings: String,
    /// Partitions to create topics with when they do not exist. An existing input topic's count
    /// wins; the changelog is created with the input's count.
    pub partitions: u32,
    /// The changelog is created to keep every record at least this long before compaction may
    /// drop it (Kafka's `min.compaction.lag.ms`): the window in which a filter subscription
    /// resumed from a cursor replays exactly every change it missed. Older cursors still resume,
    /// but compaction may have kept only the latest of an object's changes. Default: 7 days.
    pub changelog_min_compaction_lag_ms: u64,
    /// How long the input topic keeps alert packets, in hours; 0 keeps them forever. Packets
    /// hold the stamps the cutout routes serve (~30–100 kB per alert), so this is the cutouts'
    /// retention; the materialized objects are kept regardless. Applied as `retention.ms` when
    /// the node creates the Kafka topic (an existing topic keeps its own setting), and by the
    /// node itself on the embedded log. Default: 30 days.
    pub input_retention_hours: u64,
    /// How long dead letters are kept, in hours; 0 keeps them forever. Applied as
    /// `retention.ms` when the node creates the Kafka topic, and by the node itself on the
    /// embedded log. Default: 30 days.
    pub dead_letter_retention_hours: u64,
}

impl Topics {
    /// [`Topics::input_retention_hours`] as a duration; `None` for "forever".
    pub fn input_retention(&self) -> Option<std::time::Duration> {
        (self.input_retention_hours > 0).then(|| std::time::Duration::from_secs(self.input_retention_hours * 3600))
    }

    /// [`Topics::dead_letter_retention_hours`] as a duration; `None` for "forever".
    pub fn dead_letter_retention(&self) -> Option<std::time::Duration> {
        (self.dead_letter_retention_hours > 0)
            .then(|| std::time::Duration::from_secs(self.dead_letter_retention_hours * 3600))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Schemas {
    /// Directory of LSST schema versions (`<major>.<minor>/*.avsc`, id = major×100+minor).
    pub dir: Option<PathBuf>,
    /// Confluent Schema Registry URL (http or https), asked before the versions the binary
    /// ships; `dir` is not used when it is set. Without it, the node is its own registry: the
    /// shipped versions, `dir`'s, and those registered through its API (`topics.schemas`).
    pub registry_url: Option<String>,
    /// Credentials and CA for `registry_url` (`username`/`password` or `bearer_token`,
    /// `ca_file`). Never logged.
    pub registry_auth: RegistryAuth,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body (alert packets are ~1–150 kB).
    pub max_body_bytes: usize,
    /// Time limit of one HTTP request.
    pub request_timeout_ms: u64,
    /// HTTP requests in flight before new ones are shed with 503.
    pub max_concurrent_requests: usize,
    /// Object subscriptions one WebSocket may hold.
    pub max_subscriptions_per_connection: usize,
    /// Messages queued per WebSocket before the client is declared too slow and closed.
    pub ws_send_queue: usize,
    /// Updates buffered per watched object before a subscriber lags and resynchronizes.
    pub object_channel_capacity: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Storage {
    /// RocksDB block cache + write buffers, in MiB.
    pub memory_budget_mib: usize,
    /// Rendered-response cache for object reads, in MiB (0 disables it).
    pub response_cache_mib: usize,
    /// Where pipelines' file writers write (each below its `dir`); default `<data_dir>/pipelines`.
    pub pipeline_dir: Option<PathBuf>,
    /// Most MiB the data directory may hold before the node stops taking input (`crate::disk`:
    /// ingest answers 507, masters pause, `/readyz` says why); 0 (the default) = no budget.
    pub disk_budget_mib: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http {
    /// Compress responses with brotli or gzip when the client accepts them. Object reads are
    /// compressed once and kept compressed in the response cache.
    pub compression: bool,
    /// Origins whose pages may call this API from a browser (CORS): exact origins such as
    /// `"https://dashboard.example.org"`, or `"*"` for any. Empty (the default): none but this
    /// node's own (the dashboard it serves needs no CORS).
    pub cors_allow_origins: Vec<String>,
}

/// Access control (API.md, "Access"); enforced by `crate::access`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// Whether REST reads and WebSocket subscriptions need no token. Default: true (the
    /// embedded default serves anyone who can reach it; ingest and admin calls always need a
    /// token with their scope).
    pub anonymous_reads: bool,
    /// Whether `POST /v1/alerts` needs no token. Default: true, for the embedded default on
    /// loopback; turn it off (and give producers `ingest` tokens) on any node others can reach —
    /// the node warns at start when it listens beyond loopback with this on.
    pub anonymous_ingest: bool,
    /// The tokens this node accepts, each stored as its SHA-256 (`lightkeeper token` makes one).
    pub tokens: Vec<TokenConfig>,
    /// Requests per second a token may make (sustained; `burst` at once); 0 = unlimited.
    pub per_token_per_sec: u32,
    /// Requests per second one client address may make without a token (anonymous reads, and
    /// failed token checks: this is what slows down token guessing); 0 = unlimited.
    pub per_address_per_sec: u32,
    /// Requests a client may make at once above its sustained rate (both limits).
    pub burst: u32,
}

impl Default for Access {
    fn default() -> Self {
        Access {
            anonymous_reads: true,
            anonymous_ingest: true,
            tokens: Vec::new(),
            per_token_per_sec: 0,
            per_address_per_sec: 0,
            burst: 100,
        }
    }
}

/// One accepted token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it: named in logs and in 403 answers (never the token itself).
    pub name: String,
    /// Lower-case hex SHA-256 of the token (`lightkeeper token --name NAME --scopes read`
    /// prints a new token and this line). The token itself is never stored.
    pub sha256: String,
    /// What it may do: `read`, `ingest`, `admin`.
    pub scopes: Vec<crate::access::Scope>,
}

/// TLS (rustls). With `cert_file` and `key_file` the node serves HTTPS and WSS only, and its
/// `cluster.peers` URLs should be `https://`; `ca_file` is what it trusts when calling them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Tls {
    /// PEM certificate chain this node presents.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates trusted for calls to other nodes (in addition to none: peers'
    /// certificates must chain to one of these when it is set).
    pub ca_file: Option<PathBuf>,
}

impl Tls {
    /// Whether the node serves TLS.
    pub fn serves(&self) -> bool {
        self.cert_file.is_some()
    }
}

impl Default for Http {
    fn default() -> Self {
        Http { compression: true, cors_allow_origins: Vec::new() }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: "node-1".into(),
            listen: "127.0.0.1:8080".parse().expect("valid literal"),
            data_dir: PathBuf::from("lightkeeper-data"),
            kafka: None,
            topics: Topics::default(),
            schemas: Schemas::default(),
            limits: Limits::default(),
            storage: Storage::default(),
            http: Http::default(),
            access: Access::default(),
            tls: Tls::default(),
            cluster: Cluster::default(),
            batch_size: 512,
        }
    }
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            input: "alerts".into(),
            changelog: "lightkeeper-changelog".into(),
            dead_letter: "alerts-dlq".into(),
            schemas: "lightkeeper-schemas".into(),
            settings: "lightkeeper-settings".into(),
            partitions: 4,
            changelog_min_compaction_lag_ms: 7 * 24 * 3600 * 1000,
            input_retention_hours: 30 * 24,
            dead_letter_retention_hours: 30 * 24,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 4 << 20,
            request_timeout_ms: 10_000,
            max_concurrent_requests: 1024,
            max_subscriptions_per_connection: 1000,
            ws_send_queue: 1024,
            object_channel_capacity: 64,
        }
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage { memory_budget_mib: 256, response_cache_mib: 64, pipeline_dir: None, disk_budget_mib: 0 }
    }
}

/// Command-line overrides (only the fields given are applied).
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<SchemasOverride>,
}

#[derive(Debug, Serialize)]
pub struct KafkaOverride {
    pub bootstrap: String,
}

#[derive(Debug, Serialize)]
pub struct SchemasOverride {
    pub dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The figment error is the message, not a source: printing it as both would repeat it.
    #[error("configuration: {0}")]
    Load(Box<figment::Error>),
    #[error("configuration field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(e: Box<figment::Error>) -> Self {
        ConfigError::Load(e)
    }
}

/// `LIGHTKEEPER_*` variables that are not configuration keys, so a node started with them in its
/// environment does not refuse them as unknown fields: the log filter, the CLI's node URL and token, the
/// dashboard's development directory, and what the test suites read (the binary, the data).
const NOT_CONFIG: &[&str] = &["LOG", "URL", "TOKEN", "DASHBOARD_DIR", "BIN", "DATA", "SHARED_DATA"];

impl Config {
    /// Loads defaults ← file ← environment ← overrides, then validates.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        fig = fig
            .merge(Env::prefixed("LIGHTKEEPER_").ignore(NOT_CONFIG).split("__"))
            .merge(Serialized::defaults(overrides));
        let config: Config = fig.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| Err(ConfigError::Invalid { field, reason: reason.into() });
        if self.node_id.is_empty() || !self.node_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return invalid("node_id", "must be non-empty letters, digits, '-', '_' or '.'");
        }
        if self.topics.partitions == 0 || self.topics.partitions > 1024 {
            return invalid("topics.partitions", "must be between 1 and 1024");
        }
        for (field, name) in [
            ("topics.input", &self.topics.input),
            ("topics.changelog", &self.topics.changelog),
            ("topics.dead_letter", &self.topics.dead_letter),
            ("topics.schemas", &self.topics.schemas),
            ("topics.settings", &self.topics.settings),
        ] {
            if name.is_empty()
                || name.len() > 249
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
            {
                return invalid(field, "must be a valid Kafka topic name (1–249 of [a-zA-Z0-9._-])");
            }
        }
        let names = [
            &self.topics.input,
            &self.topics.changelog,
            &self.topics.dead_letter,
            &self.topics.schemas,
            &self.topics.settings,
        ];
        if names.iter().collect::<std::collections::HashSet<_>>().len() != names.len() {
            return invalid(
                "topics",
                "input, changelog, dead_letter, schemas and settings must be five different topics",
            );
        }
        if let Some(url) = &self.schemas.registry_url {
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return invalid("schemas.registry_url", "must be an http:// or https:// URL");
            }
        }
        for origin in &self.http.cors_allow_origins {
            let exact = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.trim_end_matches('/').contains(|c: char| c.is_whitespace())
                && axum::http::HeaderValue::from_str(origin).is_ok();
            if origin != "*" && !exact {
                return invalid(
                    "http.cors_allow_origins",
                    "each entry must be \"*\" or an origin such as \"https://example.org\"",
                );
            }
        }
        self.validate_access()?;
        if let Some(k) = &self.kafka {
            if k.bootstrap.trim().is_empty() {
                return invalid("kafka.bootstrap", "must name at least one host:port");
            }
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return invalid("batch_size", "must be between 1 and 100000");
        }
        if self.limits.max_body_bytes < 1024 {
            return invalid("limits.max_body_bytes", "must be at least 1024");
        }
        if self.limits.request_timeout_ms == 0 {
            return invalid("limits.request_timeout_ms", "must be positive");
        }
        if self.limits.max_concurrent_requests == 0
            || self.limits.ws_send_queue == 0
            || self.limits.object_channel_capacity == 0
        {
            return invalid("limits", "queue and concurrency limits must be positive");
        }
        if self.limits.ws_send_queue <= self.limits.max_subscriptions_per_connection {
            // One subscribe op may queue a snapshot per object at once; a healthy client must
            // never be mistaken for a slow one.
            return invalid("limits.ws_send_queue", "must be larger than limits.max_subscriptions_per_connection");
        }
        if self.storage.memory_budget_mib < 16 {
            return invalid("storage.memory_budget_mib", "must be at least 16");
        }
        self.validate_cluster()
    }

    fn validate_access(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        let mut names = std::collections::HashSet::new();
        let mut hashes = std::collections::HashSet::new();
        for t in &self.access.tokens {
            if t.name.is_empty() || !t.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c)) {
                return invalid(
                    "access.tokens.name",
                    format!("{:?}: must be letters, digits, '-', '_', '.' or '@'", t.name),
                );
            }
            if !names.insert(&t.name) {
                return invalid("access.tokens.name", format!("{:?} is named twice", t.name));
            }
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)) {
                return invalid(
                    "access.tokens.sha256",
                    format!("token {:?}: must be 64 lower-case hex digits (the token's SHA-256, as `lightkeeper token` prints it)", t.name),
                );
            }
            if !hashes.insert(&t.sha256) {
                return invalid(
                    "access.tokens.sha256",
                    format!("token {:?}: the same token is configured twice", t.name),
                );
            }
            if t.scopes.is_empty() {
                return invalid(
                    "access.tokens.scopes",
                    format!("token {:?}: needs at least one of read, ingest, admin", t.name),
                );
            }
        }
        if self.access.burst == 0 {
            return invalid("access.burst", "must be at least 1".into());
        }
        if self.tls.ca_file.is_none() {
            if let Some((id, _)) = self.cluster.peers.iter().find(|(_, url)| url.starts_with("https://")) {
                return invalid(
                    "tls.ca_file",
                    format!(
                        "is required to call peers over https (cluster.peers.{id}): the CA their certificates chain to"
                    ),
                );
            }
        }
        match (&self.tls.cert_file, &self.tls.key_file) {
            (Some(_), None) => return invalid("tls.key_file", "is required with tls.cert_file".into()),
            (None, Some(_)) => return invalid("tls.cert_file", "is required with tls.key_file".into()),
            _ => {}
        }
        Ok(())
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        let c = &self.cluster;
        if c.route_deadline_ms == 0 || c.route_deadline_ms >= self.limits.request_timeout_ms {
            return invalid("cluster.route_deadline_ms", "must be positive and below limits.request_timeout_ms".into());
        }
        if c.is_single_node() {
            if !c.assignment.is_empty() {
                return invalid("cluster.assignment", "needs cluster.peers".into());
            }
            return Ok(());
        }
        if self.kafka.is_none() {
            return invalid("cluster.peers", "a cluster needs a Kafka broker (the embedded log is one node's)".into());
        }
        let is_url = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        for (id, url) in &c.peers {
            if !is_url(url) {
                return invalid("cluster.peers", format!("{id}: {url:?} is not an http(s) URL"));
            }
        }
        match &c.advertise_url {
            Some(u) if !is_url(u) => return invalid("cluster.advertise_url", format!("{u:?} is not an http(s) URL")),
            None if !c.peers.contains_key(&self.node_id) && self.listen.ip().is_unspecified() => {
                return invalid(
                    "cluster.advertise_url",
                    format!(
                        "is required: node {:?} is not in cluster.peers (it joins through them) and listens on {}, \
                         which other nodes cannot dial",
                        self.node_id, self.listen
                    ),
                );
            }
            _ => {}
        }
        if c.admin_token.as_deref().is_none_or(|t| t.trim().is_empty()) {
            return invalid("cluster.admin_token", "is required when cluster.peers is set".into());
        }
        if c.replication_factor.is_some_and(|rf| rf == 0 || rf > c.peers.len()) {
            return invalid(
                "cluster.replication_factor",
                format!("must be between 1 and the number of peers ({})", c.peers.len()),
            );
        }
        let mut seen = std::collections::HashSet::new();
        for a in &c.assignment {
            if !seen.insert(a.partition) {
                return invalid("cluster.assignment", format!("partition {} is listed twice", a.partition));
            }
            if a.replicas.is_empty() {
                return invalid("cluster.assignment", format!("partition {} has no replicas", a.partition));
            }
            let mut ids = std::collections::HashSet::new();
            for r in &a.replicas {
                if !c.peers.contains_key(r) {
                    return invalid(
                        "cluster.assignment",
                        format!("partition {}: {r:?} is not in cluster.peers", a.partition),
                    );
                }
                if !ids.insert(r) {
                    return invalid("cluster.assignment", format!("partition {}: {r:?} is listed twice", a.partition));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_embedded() {
        let c = Config::default();
        c.validate().unwrap();
        assert!(c.kafka.is_none());
    }

    #[test]
    fn cluster_assignment_is_validated_and_defaults_to_every_peer() {
        let mut c = Config {
            node_id: "a".into(),
            kafka: Some(KafkaConfig::new("h:1")),
            cluster: Cluster {
                peers: [("a".into(), "http://127.0.0.1:1".into()), ("b".into(), "http://127.0.0.1:2".into())].into(),
                assignment: vec![Assignment { partition: 1, replicas: vec!["b".into(), "a".into()] }],
                admin_token: Some("t".into()),
                ..Cluster::default()
            },
            ..Config::default()
        };
        c.validate().unwrap();
        assert_eq!(c.cluster.replicas(0), vec!["a", "b"]);
        assert_eq!(c.cluster.replicas(1), vec!["b", "a"]);
        c.cluster.replication_factor = Some(1);
        assert_eq!(c.cluster.replicas(0), vec!["a"]);
        assert_eq!(c.cluster.replicas(3), vec!["b"], "masters spread: partition 3 starts at peer 3 mod 2");
        assert_eq!(c.cluster.replicas(1), vec!["b", "a"], "an explicit assignment wins");
        c.cluster.replication_factor = Some(3);
        assert!(c.validate().unwrap_err().to_string().contains("cluster.replication_factor"));
        c.cluster.replication_factor = None;
        c.cluster.assignment[0].replicas.push("z".into());
        assert!(c.validate().unwrap_err().to_string().contains("\"z\" is not in cluster.peers"));
        c.cluster.assignment.clear();
        c.cluster.admin_token = None;
        assert!(c.validate().unwrap_err().to_string().contains("cluster.admin_token"));
        c.cluster.admin_token = Some("t".into());
        // A node not among the peers joins through them; it must be reachable.
        c.node_id = "c".into();
        c.validate().unwrap();
        assert_eq!(c.cluster.own_url("c", c.listen, false), "http://127.0.0.1:8080");
        assert_eq!(c.cluster.own_url("c", c.listen, true), "https://127.0.0.1:8080", "a TLS node's own URL");
        assert_eq!(c.cluster.own_url("a", c.listen, true), "http://127.0.0.1:1", "the configured peer URL wins");
        c.listen = "0.0.0.0:8080".parse().unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("cluster.advertise_url"));
        c.cluster.advertise_url = Some("http://10.0.0.3:8080".into());
        c.validate().unwrap();
        c.cluster.advertise_url = Some("10.0.0.3:8080".into());
        assert!(c.validate().unwrap_err().to_string().contains("is not an http(s) URL"));
    }

    #[test]
    fn http_section_parses_and_origins_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "[http]\ncompression = false\ncors_allow_origins = [\"https://a.example\", \"*\"]\n")
            .unwrap();
        let c = Config::load(Some(&f), &Overrides::default()).unwrap();
        assert!(!c.http.compression);
        assert_eq!(c.http.cors_allow_origins, ["https://a.example", "*"]);
        assert!(Config::default().http.compression, "compression is on by default");
        assert!(Config::default().http.cors_allow_origins.is_empty(), "no other origin by default");
        for bad in ["a.example", "https://a.example/ x", ""] {
            let mut c = Config::default();
            c.http.cors_allow_origins = vec![bad.into()];
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("http.cors_allow_origins"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn file_then_overrides_layer_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.toml");
        std::fs::write(&f, "node_id = \"a\"\nbatch_size = 7\n[kafka]\nbootstrap = \"h:1\"\nfetch_wait_max_ms = 250\n")
            .unwrap();
        let o = Overrides { node_id: Some("b".into()), ..Default::default() };
        let c = Config::load(Some(&f), &o).unwrap();
        assert_eq!(c.node_id, "b");
        assert_eq!(c.batch_size, 7);
        let kafka = c.kafka.unwrap();
        assert_eq!(kafka.bootstrap, "h:1");
        assert_eq!(kafka.fetch_wait_max_ms, 250);
        assert_eq!(KafkaConfig::new("h:1").fetch_wait_max_ms, 100, "the default idle long-poll");

        std::fs::write(&f, "batch_sise = 7\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("batch_sise"), "{err}");

        std::fs::write(&f, "[cluster.peers]\na = \"http://127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("needs a Kafka broker"), "{err}");

        std::fs::write(&f, "[topics]\npartitions = 0\n").unwrap();
        let err = Config::load(Some(&f), &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("topics.partitions"), "{err}");
    }
}
