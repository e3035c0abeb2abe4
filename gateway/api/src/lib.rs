//! The Lightkeeper wire contract, defined once and used by every side.
//!
//! Why a crate of its own: the JSON that nodes, the coordinator, the WebSocket relay, the Rust
//! client, the tests and the benchmarks exchange used to be built with `json!` on one side and
//! read by key (`v["changelog_lag"].as_u64()`) on the other, so renaming a field could silently
//! change behaviour (failover would find no eligible standby). Every such message is a type
//! here; a change to it is a compile error on every side. The crate has no RocksDB, librdkafka
//! or HTTP stack in its dependency tree, so a client builds it in seconds.
//!
//! Layout:
//! - [`model`], [`object`], [`id_serde`]: the normalized alert model and the object state and
//!   summary (re-exported by `lightkeeper-storage`, which stores them).
//! - [`filter`]: the filter language of `where`, `cone`, subscriptions and processor filters.
//! - [`error`]: the `{"error":{"code","message"}}` body of every 4xx/5xx answer.
//! - [`cluster`]: `/v1/cluster` — partition roles and lag, the coordinator's replicated table.
//! - [`admin`]: promote, drain, node drain and decommission answers.
//! - [`ws`]: WebSocket client operations and server messages.
//! - [`objects`]: light-curve and alert-history bodies.
//! - [`query`]: cone search and attribute queries, and their per-partition parts.
//! - [`pipeline`]: `/v1/pipelines` bodies and the record pipeline writers emit.
//! - [`registry`]: the Confluent Schema Registry API every node serves.
//! - [`ingest`], [`health`]: `POST /v1/alerts` and the health answers.
//! - [`partitioner`]: Kafka's murmur2 partitioner — which partition an object key lives in,
//!   the same for producers, routing and clients.

pub mod admin;
pub mod cluster;
pub mod error;
pub mod filter;
pub mod health;
pub mod id_serde;
pub mod ingest;
pub mod model;
pub mod object;
pub mod objects;
pub mod partitioner;
pub mod pipeline;
pub mod query;
pub mod registry;
pub mod stats;
pub mod ws;
