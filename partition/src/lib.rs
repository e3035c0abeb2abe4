//! Lightkeeper partition workers.
//!
//! Layout:
//! - [`merge`]: the pure, deterministic merge of an alert into an object.
//! - [`worker`]: the replica thread of one partition — restore from the changelog, then serve
//!   as master (consume the input: decode, dead-letter, merge, changelog, RocksDB, notify) or
//!   as warm standby (tail the changelog); promotion, drain and step-down move between them.
//!   One file per concept under `worker/` (its module doc has the table).
//! - [`apply`]: folding changelog records into the store behind the epoch fence (restore,
//!   standbys and promotion share it).
//! - [`hub`]: per-object and per-partition broadcast channels for live subscriptions.
//! - [`feed`]: a partition's changes with their changelog positions, live and replayed, for
//!   filter subscriptions.
//! - [`pipeline`]: processor chains from YAML (filters, watch lists, Kafka and file writers),
//!   run by each master after the merge.
//! - [`watchlist`]: users' catalogs of positions, indexed with HEALPix, matched on every object.
//! - [`metrics`]: metric definitions.
//! - [`stats`]: counting each batch into the stream statistics.

pub mod apply;
pub mod feed;
pub mod hub;
pub mod merge;
pub mod metrics;
pub mod pipeline;
pub mod stats;
pub mod watchlist;
pub mod worker;
