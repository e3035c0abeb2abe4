//! Lightkeeper storage: everything that touches bytes at rest or on the wire.
//!
//! Layout:
//! - [`model`], [`object`]: the normalized alert model and the object state and summary —
//!   defined in `lightkeeper-api` (the wire contract) and re-exported here.
//! - [`codec`]: packet framing detection and the ZTF / LSST Avro decoders.
//! - [`registry`]: schema registries for the Confluent wire format (embedded directory, REST).
//! - [`partitioner`]: Kafka's murmur2 partitioner, so routing matches the topic (in `lightkeeper-api`).
//! - [`log`]: partitioned logs (`Topic` trait; Kafka and embedded engines).
//! - [`changelog`]: the changelog record format and the epoch fence.
//! - [`settings`]: run-time settings (pipelines, watch lists) in a compacted topic.
//! - [`state`]: the state store (`StateStore` trait; RocksDB engine).

pub mod changelog;
pub mod codec;
pub mod log;
pub mod registry;
pub mod settings;
pub mod state;

// The alert model and the object state are the wire contract's (`lightkeeper-api`): stored here,
// served by the gateway, read by clients. Re-exported so storage code names them as before.
pub use lightkeeper_api::{id_serde, model, object, partitioner, stats};
