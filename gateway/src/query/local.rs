//! One partition's part of a query, answered from this node's RocksDB.
//!
//! Blocking (RocksDB reads): run on the blocking pool. Each function returns at most `limit`
//! objects, in the query's order, so the gather only merges. A scan that has not finished by the
//! deadline stops and fails (the partition then counts as not answering) rather than hold a
//! thread past the request's life.

use super::cursor::{cmp_positions, position_of};
use super::params::{ConeQuery, ObjectsQuery};
use crate::error::ApiError;
use lightkeeper_api::filter::{Field, Filter};
use lightkeeper_api::object::ObjectSummary;
use lightkeeper_api::query::ConeHit;
use lightkeeper_storage::state::{SkyCone, StateStore};
use std::time::Instant;

fn matches(filter: &Option<Filter>, s: &ObjectSummary) -> bool {
    filter.as_ref().is_none_or(|f| f.matches(s))
}

/// The objects of each of `partitions` in the cone that match its filter, nearest first (ties
/// by key), at most `limit` per partition: one list per partition, in the order given. The
/// cone's cover is computed once and the partitions are read together.
pub fn cone(store: &dyn StateStore, partitions: &[u32], q: &ConeQuery) -> Result<Vec<Vec<ConeHit>>, ApiError> {
    let sky = SkyCone::new(q.ra, q.dec, q.radius_deg());
    Ok(store
        .cone(partitions, &sky)?
        .into_iter()
        .map(|candidates| {
            let mut hits: Vec<ConeHit> = candidates
                .into_iter()
                .filter(|c| matches(&q.filter, &c.summary))
                .map(|c| ConeHit { distance_arcsec: c.distance_deg * 3600.0, object: c.summary })
                .collect();
            hits.sort_by(cone_order);
            hits.truncate(q.limit);
            hits
        })
        .collect())
}

/// Nearest first; equal distances by key, so the order is total and the same on every node.
pub fn cone_order(a: &ConeHit, b: &ConeHit) -> std::cmp::Ordering {
    a.distance_arcsec.total_cmp(&b.distance_arcsec).then_with(|| a.object.key.cmp(&b.object.key))
}

/// How many summaries a scan reads between deadline checks.
const CHECK_EVERY: u64 = 1024;

/// Up to `limit` objects of `partition` matching the filter, strictly after the cursor in the
/// query's order. Key order and `last_mjd` order read an index in order and stop at `limit`;
/// any other order scans the partition keeping the best `limit` (memory bounded by 2×limit).
pub fn page(
    store: &dyn StateStore,
    partition: u32,
    q: &ObjectsQuery,
    deadline: Instant,
) -> Result<Vec<ObjectSummary>, ApiError> {
    let order = q.order;
    let after = q.cursor.as_ref().map(|c| c.position());
    let mut out: Vec<ObjectSummary> = Vec::new();
    let mut seen = 0u64;
    let mut late = false;
    let mut visit = |s: ObjectSummary, out: &mut Vec<ObjectSummary>| -> bool {
        seen += 1;
        if seen.is_multiple_of(CHECK_EVERY) && Instant::now() > deadline {
            late = true;
            return false;
        }
        if matches(&q.filter, &s) {
            out.push(s);
        }
        true
    };
    match (order.field, order.desc) {
        (Field::Key, false) => {
            let after_key = after.map(|(_, k)| k);
            store.scan_summaries(partition, after_key, &mut |s| visit(s, &mut out) && out.len() < q.limit)?;
        }
        (Field::LastMjd, desc) => {
            let after = match after {
                Some((v, k)) => Some((scalar_f64(v).ok_or_else(|| ApiError::internal("last_mjd cursor"))?, k)),
                None => None,
            };
            store.scan_recent(partition, desc, after, &mut |s| visit(s, &mut out) && out.len() < q.limit)?;
        }
        _ => {
            let beyond = |s: &ObjectSummary| match (position_of(&order, s), after) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(p), Some(a)) => cmp_positions(&order, p, a).is_gt(),
            };
            let keep = |out: &mut Vec<ObjectSummary>| {
                out.sort_by(|a, b| by_order(&order, a, b));
                out.truncate(q.limit);
            };
            store.scan_summaries(partition, None, &mut |s| {
                if !beyond(&s) {
                    return true;
                }
                let go_on = visit(s, &mut out);
                if out.len() >= 2 * q.limit {
                    keep(&mut out);
                }
                go_on
            })?;
            keep(&mut out);
        }
    }
    if late {
        return Err(ApiError::Unavailable(format!(
            "partition {partition}: the query read {seen} objects without finishing in time; narrow the filter, \
             or order by key or last_mjd (indexed)"
        )));
    }
    Ok(out)
}

fn scalar_f64(v: lightkeeper_api::filter::Scalar<'_>) -> Option<f64> {
    match v {
        lightkeeper_api::filter::Scalar::Number(x) => Some(x),
        lightkeeper_api::filter::Scalar::Integer(i) => Some(i as f64),
        _ => None,
    }
}

/// The query's order over summaries that have a value of the order field.
pub fn by_order(order: &lightkeeper_api::filter::Order, a: &ObjectSummary, b: &ObjectSummary) -> std::cmp::Ordering {
    match (position_of(order, a), position_of(order, b)) {
        (Some(pa), Some(pb)) => cmp_positions(order, pa, pb),
        // Not reached: summaries without a value are never collected.
        (pa, pb) => pa.is_none().cmp(&pb.is_none()),
    }
}
