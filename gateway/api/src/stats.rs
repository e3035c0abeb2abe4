//! Stream statistics: counts of alerts, new objects, detections and dead letters per time
//! bucket, by survey and band (`GET /v1/stats`).
//!
//! Each partition's master counts what each batch applied and writes the counts of every bucket
//! the batch touched as a whole-value changelog record ([`StatsBucket`], keyed by bucket), so
//! that the latest record per key — what a compacted changelog keeps — is the bucket's total:
//! replicas restore and follow statistics exactly as they do objects. The gateway merges the
//! partitions' buckets.
//!
//! Time is the input log's timestamp of each alert (when it entered the stream), never the wall
//! clock, so a replay gives the same buckets. Buckets: a UTC minute, a UTC hour, or a night —
//! 24 hours from 12:00 UTC, Rubin's `dayObs` convention, which keeps a Chilean or Californian
//! night in one bucket.

use crate::model::{Band, Survey};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A bucket width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StatsStep {
    Minute,
    Hour,
    Night,
}

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;
/// Nights start at 12:00 UTC.
const NIGHT_OFFSET_MS: i64 = 12 * HOUR_MS;

impl StatsStep {
    pub const ALL: [StatsStep; 3] = [StatsStep::Minute, StatsStep::Hour, StatsStep::Night];

    pub fn as_str(self) -> &'static str {
        match self {
            StatsStep::Minute => "minute",
            StatsStep::Hour => "hour",
            StatsStep::Night => "night",
        }
    }

    pub fn parse(s: &str) -> Option<StatsStep> {
        StatsStep::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// A stable one-byte code (store keys, changelog keys).
    pub fn code(self) -> u8 {
        match self {
            StatsStep::Minute => 1,
            StatsStep::Hour => 2,
            StatsStep::Night => 3,
        }
    }

    pub fn width_ms(self) -> i64 {
        match self {
            StatsStep::Minute => MINUTE_MS,
            StatsStep::Hour => HOUR_MS,
            StatsStep::Night => DAY_MS,
        }
    }

    /// Start (ms since the epoch) of the bucket holding `ts_ms`.
    pub fn bucket_start(self, ts_ms: i64) -> i64 {
        let offset = if self == StatsStep::Night { NIGHT_OFFSET_MS } else { 0 };
        (ts_ms - offset).div_euclid(self.width_ms()) * self.width_ms() + offset
    }
}

/// What is counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Counts {
    /// Alerts applied (a duplicate, already applied, is not counted).
    pub alerts: u64,
    /// Objects whose first alert this was.
    pub new_objects: u64,
    /// Detection points the alerts added (an alert's own, and history it brought).
    pub detections: u64,
    /// Packets sent to the dead-letter topic (survey and band unknown: null).
    pub dead_letters: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.alerts += other.alerts;
        self.new_objects += other.new_objects;
        self.detections += other.detections;
        self.dead_letters += other.dead_letters;
    }
}

/// The counts of one survey and band in a bucket. Dead letters have neither.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsCell {
    pub survey: Option<Survey>,
    pub band: Option<Band>,
    pub counts: Counts,
}

/// One bucket of one partition, whole: what the changelog carries and the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsBucket {
    pub step: StatsStep,
    pub start_ms: i64,
    /// Sorted by (survey, band), one cell each.
    pub cells: Vec<StatsCell>,
}

impl StatsBucket {
    pub fn new(step: StatsStep, start_ms: i64) -> StatsBucket {
        StatsBucket { step, start_ms, cells: Vec::new() }
    }

    /// Adds `counts` to the cell of (`survey`, `band`).
    pub fn add(&mut self, survey: Option<Survey>, band: Option<Band>, counts: &Counts) {
        match self.cells.binary_search_by(|c| (c.survey, c.band).cmp(&(survey, band))) {
            Ok(i) => self.cells[i].counts.add(counts),
            Err(i) => self.cells.insert(i, StatsCell { survey, band, counts: *counts }),
        }
    }

    /// Adds every cell of `other` (the same bucket of another partition).
    pub fn merge(&mut self, other: &StatsBucket) {
        for c in &other.cells {
            self.add(c.survey, c.band, &c.counts);
        }
    }
}

/// One row of `GET /v1/stats`: a bucket's counts for one survey and band.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsRow {
    /// Bucket start, ISO 8601 UTC.
    pub start: String,
    /// Bucket start, ms since the Unix epoch.
    pub start_ms: i64,
    /// `null` for dead letters (their packets could not be read).
    pub survey: Option<Survey>,
    pub band: Option<Band>,
    #[serde(flatten)]
    pub counts: Counts,
}

/// `GET /v1/stats`: rows sorted by (start, survey, band); buckets with nothing are left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatsAnswer {
    pub step: StatsStep,
    /// The range asked for, ISO 8601 UTC: buckets starting in `[since, until)`.
    pub since: String,
    pub until: String,
    pub rows: Vec<StatsRow>,
    /// Totals over the rows.
    pub total: Counts,
    /// Partitions that did not answer (only with `partial=true`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_partitions: Vec<u32>,
}

/// One partition's buckets, between nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionStats {
    pub partition: u32,
    pub buckets: Vec<StatsBucket>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_start_on_the_minute_hour_and_noon() {
        // 2026-11-30T09:26:13.5Z
        let t = 1_796_030_773_500;
        assert_eq!(StatsStep::Minute.bucket_start(t), 1_796_030_760_000);
        assert_eq!(StatsStep::Hour.bucket_start(t), 1_796_029_200_000);
        // Before noon: the night that began at noon the day before.
        assert_eq!(StatsStep::Night.bucket_start(t), 1_795_953_600_000);
        assert_eq!(StatsStep::Night.bucket_start(1_795_953_600_000), 1_795_953_600_000);
    }

    #[test]
    fn cells_stay_sorted_and_merge_adds() {
        let one = Counts { alerts: 1, new_objects: 1, detections: 2, dead_letters: 0 };
        let mut b = StatsBucket::new(StatsStep::Minute, 0);
        b.add(Some(Survey::Ztf), Some(Band::R), &one);
        b.add(Some(Survey::Ztf), Some(Band::G), &one);
        b.add(None, None, &Counts { dead_letters: 1, ..Default::default() });
        b.add(Some(Survey::Ztf), Some(Band::G), &one);
        let keys: Vec<_> = b.cells.iter().map(|c| (c.survey, c.band)).collect();
        assert_eq!(keys, vec![(None, None), (Some(Survey::Ztf), Some(Band::G)), (Some(Survey::Ztf), Some(Band::R))]);
        assert_eq!(b.cells[1].counts.detections, 4);
        let mut m = b.clone();
        m.merge(&b);
        assert_eq!(m.cells[0].counts.dead_letters, 2);
        assert_eq!(m.cells[2].counts.alerts, 2);
    }
}
