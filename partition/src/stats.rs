//! Counting a batch into the stream statistics (see `lightkeeper_storage::stats`).
//!
//! The master tallies what one batch applied and dead-lettered, adds the store's current counts
//! of every bucket the batch touched, and writes those totals as changelog records and in the
//! batch's store write. A batch redone after a crash starts again from the store, which the
//! failed attempt never reached, so nothing is counted twice; a duplicate alert (already
//! applied) is not counted at all.

use lightkeeper_storage::model::{Alert, Band, PointKind, Survey};
use lightkeeper_storage::state::{StateStore, StoreError};
use lightkeeper_storage::stats::{Counts, StatsBucket, StatsStep};
use std::collections::BTreeMap;

/// One batch's increments, per bucket.
#[derive(Debug, Default)]
pub struct Tally {
    buckets: BTreeMap<(StatsStep, i64), StatsBucket>,
}

/// The band of the alert's own detection: the point carrying its source id, else its first
/// detection at the alert's time.
pub fn alert_band(alert: &Alert) -> Option<Band> {
    let own = alert.points.iter().find(|p| p.source_id == Some(alert.alert_id));
    own.or_else(|| alert.points.iter().find(|p| p.kind == PointKind::Detection && p.mjd == alert.mjd)).map(|p| p.band)
}

impl Tally {
    fn add(&mut self, ts_ms: i64, survey: Option<Survey>, band: Option<Band>, counts: &Counts) {
        for step in StatsStep::ALL {
            let start = step.bucket_start(ts_ms);
            self.buckets
                .entry((step, start))
                .or_insert_with(|| StatsBucket::new(step, start))
                .add(survey, band, counts);
        }
    }

    /// An applied alert that entered the log at `ts_ms`; `new_object` when it created the
    /// object; `detections` the detection points it added.
    pub fn alert(&mut self, ts_ms: i64, alert: &Alert, new_object: bool, detections: u64) {
        let counts = Counts { alerts: 1, new_objects: u64::from(new_object), detections, dead_letters: 0 };
        self.add(ts_ms, Some(alert.survey), alert_band(alert), &counts);
    }

    /// A packet sent to the dead-letter topic.
    pub fn dead_letter(&mut self, ts_ms: i64) {
        self.add(ts_ms, None, None, &Counts { dead_letters: 1, ..Default::default() });
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// The new totals of every touched bucket: the store's counts plus this batch's.
    pub fn totals(self, store: &dyn StateStore, partition: u32) -> Result<Vec<StatsBucket>, StoreError> {
        let mut out = Vec::with_capacity(self.buckets.len());
        for ((step, start), increments) in self.buckets {
            let mut total =
                store.stats_bucket(partition, step, start)?.unwrap_or_else(|| StatsBucket::new(step, start));
            total.merge(&increments);
            out.push(total);
        }
        Ok(out)
    }
}

/// Detection points among `points`.
pub fn detections(points: &[lightkeeper_storage::model::LightPoint]) -> u64 {
    points.iter().filter(|p| p.kind == PointKind::Detection).count() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_alert_counts_in_a_minute_an_hour_and_a_night() {
        let mut t = Tally::default();
        t.dead_letter(1_000);
        assert_eq!(t.buckets.len(), 3);
        let night = t.buckets.values().find(|b| b.step == StatsStep::Night).unwrap();
        assert_eq!(night.start_ms, -43_200_000, "the night began at noon the day before the epoch");
        assert_eq!(night.cells[0].counts.dead_letters, 1);
        assert!(!t.is_empty());
    }
}
