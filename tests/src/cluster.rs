//! Multi-node test clusters: real `lightkeeper` processes on loopback sharing one broker, with a
//! static assignment written to each node's configuration file.

use crate::kafka::TopicSet;
use crate::NodeProcess;
use lightkeeper_clients::api::admin::{DecommissionReport, NodeDrainReport, PromoteReport};
use lightkeeper_clients::api::cluster::{ClusterView, PartitionView};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TOKEN: &str = "test-admin-token";

/// A free loopback port (bound, then released: peers must know each other's address before
/// they start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

pub struct Cluster {
    pub topics: TopicSet,
    /// Node id → listen address: the founding nodes (`cluster.peers` of every node).
    pub nodes: BTreeMap<String, String>,
    /// Nodes added later ([`Cluster::add_joiner`]): not in `cluster.peers`, they join through it.
    pub joiners: BTreeMap<String, String>,
    pub partitions: u32,
    pub batch_size: usize,
    /// `cluster.replication_factor` (absent: every node hosts every partition).
    pub replication_factor: Option<usize>,
    /// Extra `[cluster]` lines (e.g. `rebalance = false`).
    pub cluster_extra: String,
    /// Extra tables appended to every node's configuration (e.g. `[access]`).
    pub extra_tables: String,
    /// `"https"` for nodes that serve TLS (their `[tls]` in `extra_tables`): the peers' URLs.
    pub scheme: &'static str,
    /// The broker the nodes use (absent: the shared test broker, [`crate::broker`]).
    pub bootstrap: Option<String>,
    root: PathBuf,
}

impl Cluster {
    /// Nodes `ids` (the first by id is every partition's initial master) under `root`.
    pub fn new(name: &str, ids: &[&str], partitions: u32, root: &Path) -> Cluster {
        Cluster {
            topics: TopicSet::unique(name),
            nodes: ids.iter().map(|id| ((*id).to_owned(), format!("127.0.0.1:{}", free_port()))).collect(),
            joiners: BTreeMap::new(),
            partitions,
            batch_size: 64,
            replication_factor: None,
            cluster_extra: String::new(),
            extra_tables: String::new(),
            scheme: "http",
            bootstrap: None,
            root: root.to_owned(),
        }
    }

    /// Turns off the coordinator's rebalancing, for tests that place masters by hand.
    pub fn fixed_masters(mut self) -> Cluster {
        self.cluster_extra.push_str("rebalance = false\n");
        self
    }

    /// Plans node `id`, configured like the others but not among the peers, so that it joins
    /// the running cluster; returns its URL. Start it with [`Cluster::start`].
    pub fn add_joiner(&mut self, id: &str) -> String {
        self.joiners.insert(id.to_owned(), format!("127.0.0.1:{}", free_port()));
        self.url(id)
    }

    fn addr(&self, id: &str) -> &str {
        self.nodes.get(id).or_else(|| self.joiners.get(id)).unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn url(&self, id: &str) -> String {
        format!("{}://{}", self.scheme, self.addr(id))
    }

    pub fn data_dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    fn config(&self, id: &str) -> PathBuf {
        let mut peers = String::new();
        for (peer, addr) in &self.nodes {
            peers.push_str(&format!("{peer} = \"{}://{addr}\"\n", self.scheme));
        }
        let t = &self.topics;
        let text = format!(
            "node_id = \"{id}\"\nbatch_size = {batch}\n\n[kafka]\nbootstrap = \"{bootstrap}\"\n\n[topics]\n\
             input = \"{input}\"\nchangelog = \"{changelog}\"\ndead_letter = \"{dlq}\"\npartitions = {partitions}\n\n\
             [schemas]\ndir = \"{schemas}\"\n\n\
             [cluster]\nadmin_token = \"{TOKEN}\"\n{rf}{extra}\n[cluster.peers]\n{peers}{tables}",
            tables = self.extra_tables,
            rf = self.replication_factor.map(|n| format!("replication_factor = {n}\n")).unwrap_or_default(),
            extra = self.cluster_extra,
            batch = self.batch_size,
            bootstrap = self.bootstrap.clone().unwrap_or_else(crate::broker),
            input = t.input,
            changelog = t.changelog,
            dlq = t.dead_letter,
            partitions = self.partitions,
            schemas = crate::lsst_schemas().display(),
        );
        let path = self.root.join(format!("{id}.toml"));
        std::fs::create_dir_all(&self.root).expect("cluster root");
        std::fs::write(&path, text).expect("writing the node config");
        path
    }

    /// Every node's base URL, in id order.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.keys().map(|id| self.url(id)).collect()
    }

    /// Starts every node (in id order) and waits until each is ready.
    pub async fn start_all(&self, timeout: Duration) -> Vec<NodeProcess> {
        let nodes: Vec<NodeProcess> = self.nodes.keys().map(|id| self.start(id)).collect();
        for n in &nodes {
            n.wait_ready(timeout).await.unwrap_or_else(|e| panic!("{} ready: {e}", n.url));
        }
        nodes
    }

    /// Starts node `id` on its address with its data directory (kept across restarts).
    pub fn start(&self, id: &str) -> NodeProcess {
        let config = self.config(id);
        NodeProcess::start_at(self.addr(id), &self.data_dir(id), &["--config", &config.display().to_string()], &[])
            .unwrap_or_else(|e| panic!("node {id} starts: {e}"))
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(90)).build().expect("client")
}

/// An admin `POST` to `path` on `url` with the token; the answer decoded as `T` when its status
/// is `expected` (or any success, if `None`), else an error with the status and the body.
async fn admin_post<T: DeserializeOwned>(url: &str, path: &str, expected: Option<u16>) -> anyhow::Result<T> {
    let resp = http().post(format!("{url}{path}")).bearer_auth(TOKEN).send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    let ok = match expected {
        Some(code) => status.as_u16() == code,
        None => status.is_success(),
    };
    anyhow::ensure!(ok, "POST {path} on {url}: {status} {text}");
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("POST {path} on {url}: {e}: {text}"))
}

/// `POST /v1/admin/partitions/{p}/promote` on `url`: the report; an error (with the error body)
/// unless the node answered with a success.
pub async fn promote(url: &str, partition: u32) -> anyhow::Result<PromoteReport> {
    admin_post(url, &format!("/v1/admin/partitions/{partition}/promote"), None).await
}

/// `POST /v1/admin/nodes/{node}/drain` through the node at `via`: the report of a complete drain
/// (200); an error with the status and the body otherwise (409: some masters were not handed over).
pub async fn drain_node(via: &str, node: &str) -> anyhow::Result<NodeDrainReport> {
    admin_post(via, &format!("/v1/admin/nodes/{node}/drain"), Some(200)).await
}

/// `POST /v1/admin/nodes/{node}/decommission` through the node at `via`: the report (202); an
/// error with the status and the body otherwise.
pub async fn decommission(via: &str, node: &str) -> anyhow::Result<DecommissionReport> {
    admin_post(via, &format!("/v1/admin/nodes/{node}/decommission"), Some(202)).await
}

/// `GET /v1/cluster` on `url`.
pub async fn cluster_view(url: &str) -> anyhow::Result<ClusterView> {
    Ok(http().get(format!("{url}/v1/cluster")).send().await?.error_for_status()?.json::<ClusterView>().await?)
}

/// Partition → replicas (preferred master first), from the coordinator's table as the node at
/// `url` has applied it, once every one of `partitions` is placed.
pub async fn placement(url: &str, partitions: u32) -> Option<BTreeMap<u32, Vec<String>>> {
    let coordinator = cluster_view(url).await.ok()?.coordinator?;
    let placed: BTreeMap<u32, Vec<String>> =
        coordinator.replicated.partitions.into_iter().map(|(p, info)| (p, info.replicas)).collect();
    (placed.len() == partitions as usize).then_some(placed)
}

/// How many partitions `placed` puts on `node` (`preferred`: as their preferred master).
pub fn hosted_by(placed: &BTreeMap<u32, Vec<String>>, node: &str, preferred: bool) -> usize {
    placed
        .values()
        .filter(|rs| if preferred { rs.first().is_some_and(|f| f == node) } else { rs.iter().any(|r| r == node) })
        .count()
}

/// The partition entries of `/v1/cluster` on `url`.
pub async fn partitions(url: &str) -> anyhow::Result<Vec<PartitionView>> {
    Ok(cluster_view(url).await?.partitions)
}

/// Sum of a metric over all its label sets, from `/metrics` (OpenMetrics text).
pub async fn metric(url: &str, name: &str) -> anyhow::Result<f64> {
    let text = http().get(format!("{url}/metrics")).send().await?.error_for_status()?.text().await?;
    Ok(metric_samples(&text, name).sum())
}

/// The values of metric `name` (every label set) in an OpenMetrics text.
pub fn metric_samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = f64> + 'a {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(move |l| l.split(['{', ' ']).next() == Some(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
}
