//! The Lightkeeper node: HTTP/WebSocket gateway, configuration, node assembly and the
//! `lightkeeper` command.
//!
//! Layout:
//! - [`config`]: the typed, layered, validated configuration.
//! - [`coordinator`]: the control plane (`lightkeeper-coordinator`, re-exported): the embedded
//!   openraft group, membership, placement, failover, the handover protocol.
//! - [`peers`]: node-to-node HTTP — the coordinator's `Peers` trait and Raft RPCs over HTTP.
//! - [`node`]: builds a node from a config (registry, logs, state, workers) and runs it.
//! - [`routes`]: the axum router — objects, light curves, ingest, health, metrics, OpenAPI,
//!   WebSocket subscriptions, the dashboard.
//! - [`access`]: who may call what — tokens with scopes, anonymous reads, rate limits,
//!   WebSocket origins — one middleware in front of every route.
//! - [`disk`]: the disk budget — measured, and intake stopped above it.
//! - [`tls`]: rustls for the listener (HTTPS/WSS) and the trust of calls to other nodes.
//! - [`error`]: the API error type and its single mapping to HTTP status and JSON body.
//! - [`replicas`]: the replicas this node hosts; [`hosting`]: following the coordinator's
//!   placement (start standbys, stop and delete replicas placed elsewhere).
//! - [`state`]: what handlers share, and the gateway's metric definitions.
//! - [`routing`]: which replica answers a read (local master, forwarded master, or a standby
//!   within `max_lag`), and retries through a handover.
//! - [`query`]: finding objects — cone search and attribute queries scattered to every
//!   partition's serving replica and gathered in order, with page cursors.
//! - [`matcher`]: each partition's live changes matched once against every filter
//!   subscription on the node (a guard per filter picks the few that can match).
//! - [`settings`]: pipelines and watch lists from the settings topic, compiled and installed.
//! - [`cache`]: rendered-response cache for hot objects, invalidated on change.
//! - [`formats`]: light-curve renderings (JSON, CSV, VOTable) and their extra time columns.
//! - [`cli`]: the `decode`, `ingest`, `demo` and read commands.
//! - [`mirror`]: `lightkeeper mirror`, the local re-keyed copy of a survey's upstream stream.

pub mod access;
pub mod cache;
pub mod cli;
pub mod config;
pub mod disk;
pub mod error;
pub mod formats;
pub mod hosting;
pub mod matcher;
pub mod mirror;
pub mod node;
pub mod peers;
pub mod query;
pub mod replicas;
pub mod routes;
pub mod routing;
pub mod settings;
pub mod stamps;
pub mod state;
pub mod tls;

/// The control plane, a crate of its own (no HTTP framework in it); re-exported under the name
/// the gateway has always used.
pub use lightkeeper_coordinator as coordinator;
