//! The Lightkeeper node: HTTP/WebSocket gateway, configuration, node assembly and the
//! `lightkeeper` command.
//!
//! Layout:
//! - [`config`]: the typed, layered, validated configuration.
//! - [`coordinator`]: the embedded openraft group (membership, the partition table).
//! - [`node`]: builds a node from a config (registry, logs, state, workers) and runs it.
//! - [`routes`]: the axum router — objects, light curves, ingest, health, metrics, OpenAPI,
//!   WebSocket subscriptions, the dashboard.
//! - [`error`]: the API error type and its single mapping to HTTP status and JSON body.
//! - [`state`]: what handlers share, and the gateway's metric definitions.
//! - [`routing`]: which replica answers a read (local master, forwarded master, or a standby
//!   within `max_lag`), and retries through a handover.
//! - [`cache`]: rendered-response cache for hot objects, invalidated on change.
//! - [`cli`]: the `decode`, `ingest` and `demo` commands.

pub mod cache;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod error;
pub mod node;
pub mod replicas;
pub mod routes;
pub mod routing;
pub mod state;
