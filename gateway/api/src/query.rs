//! Finding objects: `GET /v1/cone` and `GET /v1/objects?where=…`, and the per-partition
//! answers nodes exchange to build them.
//!
//! Both are answered from every partition: the node asked scatters the query to each
//! partition's serving replica (its own or another node's, over the internal routes that answer
//! [`PartitionCone`] and [`PartitionPage`]), then gathers, orders and cuts the answers. A
//! partition that cannot answer within the route deadline fails the whole query with a 503 that
//! names it — unless the client asked for `partial=true`, and then `missing_partitions` says
//! which are absent. An answer is never silently partial.

use crate::object::ObjectSummary;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The largest cone radius, arcsec (1°).
pub const MAX_RADIUS_ARCSEC: f64 = 3600.0;
/// Objects per answer when the query does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a query may ask for.
pub const MAX_LIMIT: usize = 10_000;

/// An object found by a cone search: its summary and its distance from the centre.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConeHit {
    #[serde(flatten)]
    pub object: ObjectSummary,
    /// Exact angular distance from the cone's centre, arcsec.
    pub distance_arcsec: f64,
}

/// `GET /v1/cone`: the objects within the radius, nearest first (ties by key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ConeAnswer {
    pub objects: Vec<ConeHit>,
    /// Partitions that did not answer (only with `partial=true`; otherwise that is a 503).
    pub missing_partitions: Vec<u32>,
}

/// `GET /v1/objects`: one page of the objects matching a filter, in the requested order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ObjectsPage {
    pub objects: Vec<ObjectSummary>,
    /// Pass as `cursor` for the next page; null when this page is the last.
    pub next_cursor: Option<String>,
    /// Partitions that did not answer (only with `partial=true`; otherwise that is a 503).
    pub missing_partitions: Vec<u32>,
}

/// One partition's part of a cone search (internal, node to node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionCone {
    pub partition: u32,
    pub objects: Vec<ConeHit>,
}

/// One partition's part of a page (internal, node to node): at most `limit` objects after the
/// cursor, in the query's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionPage {
    pub partition: u32,
    pub objects: Vec<ObjectSummary>,
}
