//! The mirror's configuration: a TOML file (`lightkeeper mirror --config mirror.toml`), validated
//! once at start with messages that name the field. Credentials (librdkafka's `sasl.password`,
//! `ssl.key.password`, a registry's password or token) never show in `Debug` output, so the
//! configuration can be logged.

use lightkeeper_storage::log::KafkaConfig;
use lightkeeper_storage::registry::RegistryAuth;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MirrorConfig {
    pub upstream: Upstream,
    pub local: Local,
    /// Address of the mirror's `/metrics` and `/healthz` (port 0 picks a free port; the ready
    /// log line names the real one).
    pub listen: SocketAddr,
    /// Upstream messages per batch: one batch is produced, acknowledged, then committed.
    pub batch_size: usize,
    /// Alerts per second at most (0: as fast as the brokers go). For a bandwidth-limited
    /// upstream, and to leave room for other consumers of the local cluster.
    pub max_rate: u32,
    /// Seconds between progress lines on stderr.
    pub progress_interval_s: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Upstream {
    /// The survey's Kafka: bootstrap and librdkafka properties (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `sasl.password`, `ssl.ca.location`, …).
    pub kafka: KafkaConfig,
    /// Topics by name.
    pub topics: Vec<String>,
    /// Topics by regular expression (e.g. `^ztf_\d{8}_programid1$`): topics created later that
    /// match are picked up without a restart, within `metadata_refresh_ms`.
    pub topic_pattern: Option<String>,
    /// Consumer group: several mirrors with the same group share the upstream partitions.
    pub group_id: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`.
    pub start: Start,
    /// How often topic metadata is refreshed (new daily topics are seen this fast).
    pub metadata_refresh_ms: u64,
    /// The upstream's Confluent Schema Registry (for wire-format alerts). Without it, wire
    /// format schema ids are taken to follow Rubin's convention (major×100+minor).
    pub registry_url: Option<String>,
    pub registry_auth: RegistryAuth,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    Earliest,
    Latest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Local {
    /// The local cluster's Kafka.
    pub kafka: KafkaConfig,
    /// The local alerts topic (the nodes' `topics.input`).
    pub topic: String,
    /// Where upstream messages that cannot be decoded go, with the reason in headers.
    pub dead_letter: String,
    /// Partitions to create the topics with when they do not exist (an existing topic's count
    /// wins, and is what keys are hashed over).
    pub partitions: u32,
    /// Retention of the local topic when the mirror creates it (as the nodes'
    /// `topics.input_retention_hours`; 0 keeps forever).
    pub retention_hours: u64,
    /// The local registry: a Lightkeeper node's URL (or a Confluent registry). Wire-format
    /// alerts are written with the schema id it resolves, and a schema it lacks is registered
    /// there first. Without it, ids are rewritten by Rubin's convention and not checked.
    pub registry_url: Option<String>,
    /// Credentials for `registry_url`; a node takes its admin token as `bearer_token`.
    pub registry_auth: RegistryAuth,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            upstream: Upstream::default(),
            local: Local::default(),
            listen: "127.0.0.1:9300".parse().expect("valid literal"),
            batch_size: 500,
            max_rate: 0,
            progress_interval_s: 10,
        }
    }
}

impl Default for Upstream {
    fn default() -> Self {
        Upstream {
            kafka: KafkaConfig::new("127.0.0.1:9092"),
            topics: Vec::new(),
            topic_pattern: None,
            group_id: "lightkeeper-mirror".into(),
            start: Start::Earliest,
            metadata_refresh_ms: 10_000,
            registry_url: None,
            registry_auth: RegistryAuth::default(),
        }
    }
}

impl Default for Local {
    fn default() -> Self {
        Local {
            kafka: KafkaConfig::new("127.0.0.1:9092"),
            topic: "alerts".into(),
            dead_letter: "alerts-mirror-dlq".into(),
            partitions: 4,
            retention_hours: 30 * 24,
            registry_url: None,
            registry_auth: RegistryAuth::default(),
        }
    }
}

impl MirrorConfig {
    pub fn load(file: Option<&Path>) -> anyhow::Result<MirrorConfig> {
        use figment::providers::{Format, Serialized, Toml};
        let mut fig = figment::Figment::from(Serialized::defaults(MirrorConfig::default()));
        if let Some(f) = file {
            fig = fig.merge(Toml::file_exact(f));
        }
        let config: MirrorConfig = fig.extract().map_err(|e| anyhow::anyhow!("mirror configuration: {e}"))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let invalid =
            |field: &str, reason: String| Err(anyhow::anyhow!("mirror configuration field `{field}`: {reason}"));
        if self.upstream.topics.is_empty() && self.upstream.topic_pattern.is_none() {
            return invalid("upstream.topics", "name topics, or give upstream.topic_pattern".into());
        }
        if let Some(p) = &self.upstream.topic_pattern {
            if let Err(e) = regex::Regex::new(p) {
                return invalid("upstream.topic_pattern", format!("not a regular expression: {e}"));
            }
        }
        for (field, name) in [("local.topic", &self.local.topic), ("local.dead_letter", &self.local.dead_letter)] {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return invalid(field, "must be a valid Kafka topic name (1–249 of [a-zA-Z0-9._-])".into());
            }
        }
        if self.local.topic == self.local.dead_letter {
            return invalid("local.dead_letter", "must differ from local.topic".into());
        }
        if self.upstream.group_id.is_empty() {
            return invalid("upstream.group_id", "must not be empty".into());
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return invalid("batch_size", "must be between 1 and 100000".into());
        }
        if self.local.partitions == 0 || self.local.partitions > 1024 {
            return invalid("local.partitions", "must be between 1 and 1024".into());
        }
        if self.upstream.metadata_refresh_ms < 100 {
            return invalid("upstream.metadata_refresh_ms", "must be at least 100".into());
        }
        for (field, url) in
            [("upstream.registry_url", &self.upstream.registry_url), ("local.registry_url", &self.local.registry_url)]
        {
            if url.as_deref().is_some_and(|u| !u.starts_with("http://") && !u.starts_with("https://")) {
                return invalid(field, "must be an http:// or https:// URL".into());
            }
        }
        Ok(())
    }

    /// The subscription as librdkafka takes it: names, and the pattern with its leading `^`
    /// (librdkafka's marker of a regular expression).
    pub fn subscription(&self) -> Vec<String> {
        let mut topics = self.upstream.topics.clone();
        if let Some(p) = &self.upstream.topic_pattern {
            topics.push(if p.starts_with('^') { p.clone() } else { format!("^{p}") });
        }
        topics
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_parses_is_validated_and_secrets_are_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("m.toml");
        std::fs::write(
            &f,
            r#"
max_rate = 200
[upstream]
topic_pattern = 'ztf_\d{8}_programid1'
registry_url = "https://registry.example.org"
[upstream.kafka]
bootstrap = "kafka.example.org:9094"
properties = { "security.protocol" = "SASL_SSL", "sasl.mechanism" = "SCRAM-SHA-512", "sasl.username" = "u", "sasl.password" = "hunter2" }
[upstream.registry_auth]
username = "ru"
password = "rp"
[local]
topic = "alerts"
registry_url = "http://127.0.0.1:8080"
[local.registry_auth]
bearer_token = "admin"
"#,
        )
        .unwrap();
        let c = MirrorConfig::load(Some(&f)).unwrap();
        assert_eq!(c.subscription(), vec![r"^ztf_\d{8}_programid1".to_owned()]);
        assert_eq!(c.max_rate, 200);
        let shown = format!("{c:?}");
        for secret in ["hunter2", "rp", "\"admin\""] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(shown.contains("SCRAM-SHA-512"), "non-secret settings stay visible");

        std::fs::write(&f, "[upstream]\ntopic_pattern = '('\n").unwrap();
        let e = MirrorConfig::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("upstream.topic_pattern"), "{e}");
        std::fs::write(&f, "[upstream]\ntopics = []\n").unwrap();
        let e = MirrorConfig::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("upstream.topics"), "{e}");
        std::fs::write(&f, "[upstream]\ntopics = ['a']\ntopcs = 1\n").unwrap();
        let e = MirrorConfig::load(Some(&f)).unwrap_err().to_string();
        assert!(e.contains("topcs"), "{e}");
    }
}
