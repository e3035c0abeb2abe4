//! `GET /v1/stats`: the stream statistics of every partition, merged (see
//! `lightkeeper_api::stats` for what is counted and how buckets are cut).

use crate::error::ApiError;
use lightkeeper_api::stats::{Counts, PartitionStats, StatsAnswer, StatsBucket, StatsRow, StatsStep};
use lightkeeper_storage::state::StateStore;
use std::collections::BTreeMap;

/// Most buckets one request may span (a week of minutes, 400 days of hours).
pub const MAX_BUCKETS: i64 = 10_080;

/// A parsed `GET /v1/stats` query.
#[derive(Debug, Clone, PartialEq)]
pub struct StatsQuery {
    pub step: StatsStep,
    /// Buckets starting in `[since_ms, until_ms)`, both on bucket boundaries.
    pub since_ms: i64,
    pub until_ms: i64,
    pub partial: bool,
}

/// A time: ms since the Unix epoch, or ISO 8601 UTC (`2026-11-30T09:00:00Z`).
fn parse_time(name: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    let text = v.trim_end_matches('Z');
    hifitime::Epoch::from_gregorian_str(&format!("{text} UTC"))
        .map(|e| e.to_unix_milliseconds().round() as i64)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} {v:?}: expected ms since the Unix epoch or an ISO 8601 UTC time such as 2026-11-30T09:00:00Z"),
            )
        })
}

/// ISO 8601 UTC of ms since the epoch, to the second.
pub fn iso(ms: i64) -> String {
    let e = hifitime::Epoch::from_unix_milliseconds(ms as f64);
    let (y, mo, d, h, mi, s, _) = e.to_gregorian_utc();
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

impl StatsQuery {
    /// Parses the query (`max_lag` already taken out); `now_ms` sets the defaults: `until` is
    /// now, `since` an hour (minutes), two days (hours) or thirty nights (nights) before.
    pub fn parse(raw: Option<&str>, now_ms: i64) -> Result<StatsQuery, ApiError> {
        let (mut step, mut since, mut until, mut partial) = (StatsStep::Minute, None, None, false);
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            match &*k {
                "step" => {
                    step = StatsStep::parse(&v).ok_or_else(|| {
                        ApiError::bad_request("invalid_query", format!("step {v:?}: expected minute, hour or night"))
                    })?
                }
                "since" => since = Some(parse_time("since", &v)?),
                "until" => until = Some(parse_time("until", &v)?),
                "partial" => {
                    partial = v.parse().map_err(|_| {
                        ApiError::bad_request("invalid_query", format!("partial {v:?}: expected true or false"))
                    })?
                }
                other => {
                    return Err(ApiError::bad_request(
                        "invalid_query",
                        format!("unknown query parameter {other:?}; expected step, since, until, partial, max_lag"),
                    ))
                }
            }
        }
        let width = step.width_ms();
        // `until` rounds up to the bucket after it, so the bucket holding it is included.
        let until_ms = step.bucket_start(until.unwrap_or(now_ms)) + width;
        let default_span = match step {
            StatsStep::Minute => 60,
            StatsStep::Hour => 48,
            StatsStep::Night => 30,
        };
        let since_ms = step.bucket_start(since.unwrap_or(until_ms - default_span * width));
        if since_ms >= until_ms {
            return Err(ApiError::bad_request("invalid_query", "since must be before until"));
        }
        if (until_ms - since_ms) / width > MAX_BUCKETS {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!(
                    "the range spans more than {MAX_BUCKETS} {} buckets; narrow it or use a wider step",
                    step.as_str()
                ),
            ));
        }
        Ok(StatsQuery { step, since_ms, until_ms, partial })
    }
}

/// One partition's buckets in the range, from the store.
pub fn local(store: &dyn StateStore, partition: u32, q: &StatsQuery) -> Result<PartitionStats, ApiError> {
    let buckets = store.stats_range(partition, q.step, q.since_ms, q.until_ms)?;
    Ok(PartitionStats { partition, buckets })
}

/// Merges the partitions' buckets into the answer's rows.
pub fn merge(q: &StatsQuery, parts: Vec<PartitionStats>, missing: Vec<u32>) -> StatsAnswer {
    let mut by_start: BTreeMap<i64, StatsBucket> = BTreeMap::new();
    for b in parts.into_iter().flat_map(|p| p.buckets) {
        by_start.entry(b.start_ms).or_insert_with(|| StatsBucket::new(b.step, b.start_ms)).merge(&b);
    }
    let mut total = Counts::default();
    let rows = by_start
        .into_values()
        .flat_map(|b| {
            let start = iso(b.start_ms);
            b.cells.into_iter().map(move |c| StatsRow {
                start: start.clone(),
                start_ms: b.start_ms,
                survey: c.survey,
                band: c.band,
                counts: c.counts,
            })
        })
        .inspect(|r| total.add(&r.counts))
        .collect();
    StatsAnswer {
        step: q.step,
        since: iso(q.since_ms),
        until: iso(q.until_ms),
        rows,
        total,
        missing_partitions: missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_796_030_773_500; // 2026-11-30T09:26:13.5Z

    #[test]
    fn defaults_and_times() {
        let q = StatsQuery::parse(None, NOW).unwrap();
        assert_eq!((q.step, q.until_ms - q.since_ms), (StatsStep::Minute, 60 * 60_000));
        assert_eq!(iso(q.until_ms), "2026-11-30T09:27:00Z", "the current minute is included");
        let q = StatsQuery::parse(Some("step=hour&since=2026-11-30T00:00:00Z&until=1796030773500"), NOW).unwrap();
        assert_eq!(iso(q.since_ms), "2026-11-30T00:00:00Z");
        assert_eq!(iso(q.until_ms), "2026-11-30T10:00:00Z");
        let q = StatsQuery::parse(Some("step=night"), NOW).unwrap();
        assert!(iso(q.since_ms).ends_with("T12:00:00Z"), "{}", iso(q.since_ms));
    }

    #[test]
    fn bad_queries_say_what() {
        for (raw, says) in [
            ("step=day", "step"),
            ("since=yesterday", "since"),
            ("since=2026-12-01T00:00:00Z&until=2026-11-30T00:00:00Z", "before"),
            ("since=0", "more than"),
            ("colour=red", "unknown"),
        ] {
            let e = StatsQuery::parse(Some(raw), NOW).unwrap_err();
            assert_eq!(e.code(), "invalid_query");
            assert!(e.to_string().contains(says), "{raw}: {e}");
        }
    }
}
