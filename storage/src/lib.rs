//! Lightkeeper storage: everything that touches bytes at rest or on the wire.
//!
//! Layout:
//! - [`model`]: the normalized alert model shared by ZTF and Rubin/LSST (units, bands, times).
//! - [`object`]: materialized object state and its derived summary.
//! - [`codec`]: packet framing detection and the ZTF / LSST Avro decoders.
//! - [`registry`]: schema registries for the Confluent wire format (embedded directory, REST).
//! - [`partitioner`]: Kafka's murmur2 partitioner, so routing matches the topic.
//! - [`log`]: partitioned logs (`Topic` trait; Kafka and embedded engines).
//! - [`changelog`]: the changelog record format and the epoch fence.
//! - [`state`]: the state store (`StateStore` trait; RocksDB engine).

pub mod changelog;
pub mod codec;
pub mod id_serde;
pub mod log;
pub mod model;
pub mod object;
pub mod partitioner;
pub mod registry;
pub mod state;
