//! Lightkeeper partition workers.
//!
//! Layout:
//! - [`merge`]: the pure, deterministic merge of an alert into an object.
//! - [`worker`]: the worker thread — restore from the changelog, then consume the input
//!   partition: decode, dead-letter, merge, changelog, RocksDB, notify.
//! - [`hub`]: per-object broadcast channels for live subscriptions.
//! - [`metrics`]: metric definitions.
//!
//! This slice runs every partition as master on one node; the worker is written so a standby
//! role (tail the changelog only) and promotion slot in beside it.

pub mod hub;
pub mod merge;
pub mod metrics;
pub mod worker;
