//! Finding objects across every partition: cone search (`GET /v1/cone`) and attribute
//! queries (`GET /v1/objects?where=…&order=…&cursor=…`).
//!
//! The flow, for a query asked of any node:
//!
//! 1. [`params`] parses and checks the query (a 400 says what is wrong) — once, on the node
//!    asked, and again on each node it is forwarded to (the internal routes take the same
//!    parameters).
//! 2. [`scatter`] sends the query to every partition at once. Each partition goes to its
//!    serving replica through [`crate::routing::route_partition`]: this node's own replica when
//!    it is the master (or a standby within `max_lag`), otherwise the internal route
//!    `/v1/internal/partitions/{p}/cone|objects` of the node that serves it, with the same
//!    retries through a handover as an object read.
//! 3. [`local`] answers one partition from this node's RocksDB, on the blocking pool, through
//!    the secondary indexes (`lightkeeper_storage::state::index`): the HEALPix index for a cone,
//!    the key order or the recency index for a page, else a bounded scan of the partition's
//!    summaries. Each partition returns at most `limit` objects, already ordered.
//! 4. [`scatter`] merges the partitions' answers in the same order and cuts at `limit`; a page
//!    ends with a [`cursor`] holding the last object's position in the order, so the next page
//!    resumes strictly after it and every object is returned exactly once.
//!
//! A partition that does not answer within `cluster.route_deadline_ms` fails the query (503
//! naming it), unless the client asked `partial=true`.

pub mod cursor;
pub mod local;
pub mod params;
pub mod scatter;
pub mod stats;
