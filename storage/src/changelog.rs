//! The changelog: typed records over a [`Topic`](crate::log::Topic).
//!
//! Each record's value is the whole new object state (so "latest value per key" — what a
//! compacted topic keeps — is a full backup) plus the points the change added (what subscribers
//! are pushed) and where the input stood after it. Every record carries the writer's epoch;
//! an `EpochStart` marker, written by a master before its first change, announces a new epoch
//! to every reader of the log. Readers ignore records whose epoch is older than the newest epoch
//! they have seen start: that is how a deposed master's late writes are fenced without broker
//! transactions.
//!
//! Encoding: one format byte ([`CHANGELOG_FORMAT`]) then postcard. The key is the object key, so
//! the topic is partitioned and compacted by object; markers are keyed `~epoch/<epoch>` (one key
//! per epoch), so compaction never removes a marker and a reader restoring a compacted log still
//! sees every epoch start in order.
//!
//! The fence ([`EpochFence`]) admits a marker only if its epoch is strictly newer than every
//! epoch before it in the log, and a change only if its epoch is the current one. Two standbys
//! promoted at once both write a marker for the same epoch: the first in the log wins, the
//! second is ignored by every reader — including its writer, which checks that its own marker
//! was admitted before it takes input (see `lightkeeper_partition::worker`).

use crate::model::LightPoint;
use crate::object::ObjectState;
use crate::stats::StatsBucket;
use serde::{Deserialize, Serialize};

/// Format 2 added `ObjectState::attributes`, format 3 `ObjectState::watchlists`; records of
/// formats 1 and 2 (written before) are still read, with what they lack empty until the
/// object's next change.
pub const CHANGELOG_FORMAT: u8 = 3;
/// Key prefix of epoch markers (not a valid object key: no survey prefix).
pub const EPOCH_KEY_PREFIX: &str = "~epoch/";
/// Key prefix of stream-statistics buckets (`~stats/<step>/<start_ms>`).
pub const STATS_KEY_PREFIX: &str = "~stats/";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangelogEntry {
    /// A master begins `epoch`; the input resumes at `input_next`.
    EpochStart { epoch: u64, input_next: u64, node: String },
    /// An object changed.
    Change(Box<Change>),
    /// A stream-statistics bucket's counts, whole, after the changes of the same batch (see
    /// [`crate::stats`]). Added after format 2's first release: the variant is new, the
    /// encoding of the others is unchanged, so older records still decode.
    Stats(Box<StatsRecord>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsRecord {
    pub epoch: u64,
    /// Next input offset after the batch that produced these counts.
    pub input_next: u64,
    pub bucket: StatsBucket,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub epoch: u64,
    /// Next input offset after the alert that caused the change.
    pub input_next: u64,
    pub state: ObjectState,
    pub new_points: Vec<LightPoint>,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("changelog record has unknown format {0:?}")]
    UnknownFormat(Option<u8>),
    #[error("changelog record does not decode: {0}")]
    Decode(String),
}

impl ChangelogEntry {
    pub fn key(&self) -> std::borrow::Cow<'_, [u8]> {
        match self {
            ChangelogEntry::EpochStart { epoch, .. } => format!("{EPOCH_KEY_PREFIX}{epoch:020}").into_bytes().into(),
            ChangelogEntry::Change(c) => c.state.key.as_bytes().into(),
            ChangelogEntry::Stats(s) => {
                format!("{STATS_KEY_PREFIX}{}/{:020}", s.bucket.step.as_str(), s.bucket.start_ms).into_bytes().into()
            }
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            ChangelogEntry::EpochStart { epoch, .. } => *epoch,
            ChangelogEntry::Change(c) => c.epoch,
            ChangelogEntry::Stats(s) => s.epoch,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![CHANGELOG_FORMAT];
        // Serialization into a Vec of plain data cannot fail.
        out.extend(postcard::to_stdvec(self).expect("changelog entries serialize"));
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<ChangelogEntry, CodecError> {
        match bytes.split_first() {
            Some((&CHANGELOG_FORMAT, rest)) => {
                postcard::from_bytes(rest).map_err(|e| CodecError::Decode(e.to_string()))
            }
            Some((&2, rest)) => postcard::from_bytes::<v2::Entry>(rest)
                .map(ChangelogEntry::from)
                .map_err(|e| CodecError::Decode(e.to_string())),
            Some((&1, rest)) => postcard::from_bytes::<v1::Entry>(rest)
                .map(ChangelogEntry::from)
                .map_err(|e| CodecError::Decode(e.to_string())),
            other => Err(CodecError::UnknownFormat(other.map(|(b, _)| *b))),
        }
    }
}

/// Format 1: the same records before `ObjectState` had `attributes` (postcard is not
/// self-describing, so the old layout is spelled out to be read).
mod v1 {
    use crate::model::{LightPoint, SolarSystemMatch, Survey};
    use crate::object::{AlertRef, Attributes, ObjectState};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) enum Entry {
        EpochStart { epoch: u64, input_next: u64, node: String },
        Change(Box<Change>),
    }

    #[derive(Deserialize)]
    pub(super) struct Change {
        epoch: u64,
        input_next: u64,
        state: State,
        new_points: Vec<LightPoint>,
    }

    #[derive(Deserialize)]
    struct State {
        key: String,
        survey: Survey,
        object_id: String,
        version: u64,
        ra: Option<f64>,
        dec: Option<f64>,
        solar_system: Option<SolarSystemMatch>,
        points: Vec<LightPoint>,
        alerts: Vec<AlertRef>,
        updated_at_ms: i64,
    }

    impl From<Entry> for super::ChangelogEntry {
        fn from(e: Entry) -> Self {
            match e {
                Entry::EpochStart { epoch, input_next, node } => {
                    super::ChangelogEntry::EpochStart { epoch, input_next, node }
                }
                Entry::Change(c) => {
                    let Change { epoch, input_next, state: s, new_points } = *c;
                    let state = ObjectState {
                        key: s.key,
                        survey: s.survey,
                        object_id: s.object_id,
                        version: s.version,
                        ra: s.ra,
                        dec: s.dec,
                        solar_system: s.solar_system,
                        points: s.points,
                        alerts: s.alerts,
                        updated_at_ms: s.updated_at_ms,
                        attributes: Attributes::default(),
                        watchlists: Vec::new(),
                    };
                    super::ChangelogEntry::Change(Box::new(super::Change { epoch, input_next, state, new_points }))
                }
            }
        }
    }

    /// Encodes a format-1 record, for the compatibility test.
    #[cfg(test)]
    pub(super) fn encode(e: &super::ChangelogEntry) -> Vec<u8> {
        #[derive(serde::Serialize)]
        enum EntryOut<'a> {
            EpochStart { epoch: u64, input_next: u64, node: &'a str },
            Change(Box<ChangeOut<'a>>),
        }
        #[derive(serde::Serialize)]
        struct ChangeOut<'a> {
            epoch: u64,
            input_next: u64,
            state: StateOut<'a>,
            new_points: &'a [LightPoint],
        }
        #[derive(serde::Serialize)]
        struct StateOut<'a> {
            key: &'a str,
            survey: Survey,
            object_id: &'a str,
            version: u64,
            ra: Option<f64>,
            dec: Option<f64>,
            solar_system: &'a Option<SolarSystemMatch>,
            points: &'a [LightPoint],
            alerts: &'a [AlertRef],
            updated_at_ms: i64,
        }
        let out = match e {
            super::ChangelogEntry::EpochStart { epoch, input_next, node } => {
                EntryOut::EpochStart { epoch: *epoch, input_next: *input_next, node }
            }
            super::ChangelogEntry::Stats(_) => unreachable!("format 1 had no statistics records"),
            super::ChangelogEntry::Change(c) => {
                let s = &c.state;
                EntryOut::Change(Box::new(ChangeOut {
                    epoch: c.epoch,
                    input_next: c.input_next,
                    state: StateOut {
                        key: &s.key,
                        survey: s.survey,
                        object_id: &s.object_id,
                        version: s.version,
                        ra: s.ra,
                        dec: s.dec,
                        solar_system: &s.solar_system,
                        points: &s.points,
                        alerts: &s.alerts,
                        updated_at_ms: s.updated_at_ms,
                    },
                    new_points: &c.new_points,
                }))
            }
        };
        let mut bytes = vec![1];
        bytes.extend(postcard::to_stdvec(&out).expect("plain data serializes"));
        bytes
    }
}

/// Format 2: the records before `ObjectState` had `watchlists`.
mod v2 {
    use crate::model::{LightPoint, SolarSystemMatch, Survey};
    use crate::object::{AlertRef, Attributes, ObjectState};
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) enum Entry {
        EpochStart { epoch: u64, input_next: u64, node: String },
        Change(Box<Change>),
        Stats(Box<super::StatsRecord>),
    }

    #[derive(Deserialize)]
    pub(super) struct Change {
        epoch: u64,
        input_next: u64,
        state: State,
        new_points: Vec<LightPoint>,
    }

    #[derive(Deserialize)]
    struct State {
        key: String,
        survey: Survey,
        object_id: String,
        version: u64,
        ra: Option<f64>,
        dec: Option<f64>,
        solar_system: Option<SolarSystemMatch>,
        points: Vec<LightPoint>,
        alerts: Vec<AlertRef>,
        updated_at_ms: i64,
        attributes: Attributes,
    }

    impl From<Entry> for super::ChangelogEntry {
        fn from(e: Entry) -> Self {
            match e {
                Entry::EpochStart { epoch, input_next, node } => {
                    super::ChangelogEntry::EpochStart { epoch, input_next, node }
                }
                Entry::Stats(s) => super::ChangelogEntry::Stats(s),
                Entry::Change(c) => {
                    let Change { epoch, input_next, state: s, new_points } = *c;
                    let state = ObjectState {
                        key: s.key,
                        survey: s.survey,
                        object_id: s.object_id,
                        version: s.version,
                        ra: s.ra,
                        dec: s.dec,
                        solar_system: s.solar_system,
                        points: s.points,
                        alerts: s.alerts,
                        updated_at_ms: s.updated_at_ms,
                        attributes: s.attributes,
                        watchlists: Vec::new(),
                    };
                    super::ChangelogEntry::Change(Box::new(super::Change { epoch, input_next, state, new_points }))
                }
            }
        }
    }

    /// Encodes a format-2 record, for the compatibility test.
    #[cfg(test)]
    pub(super) fn encode(e: &super::ChangelogEntry) -> Vec<u8> {
        #[derive(serde::Serialize)]
        enum EntryOut<'a> {
            EpochStart { epoch: u64, input_next: u64, node: &'a str },
            Change(Box<ChangeOut<'a>>),
            Stats(&'a super::StatsRecord),
        }
        #[derive(serde::Serialize)]
        struct ChangeOut<'a> {
            epoch: u64,
            input_next: u64,
            state: StateOut<'a>,
            new_points: &'a [LightPoint],
        }
        #[derive(serde::Serialize)]
        struct StateOut<'a> {
            key: &'a str,
            survey: Survey,
            object_id: &'a str,
            version: u64,
            ra: Option<f64>,
            dec: Option<f64>,
            solar_system: &'a Option<SolarSystemMatch>,
            points: &'a [LightPoint],
            alerts: &'a [AlertRef],
            updated_at_ms: i64,
            attributes: &'a Attributes,
        }
        let out = match e {
            super::ChangelogEntry::EpochStart { epoch, input_next, node } => {
                EntryOut::EpochStart { epoch: *epoch, input_next: *input_next, node }
            }
            super::ChangelogEntry::Stats(s) => EntryOut::Stats(s),
            super::ChangelogEntry::Change(c) => {
                let s = &c.state;
                EntryOut::Change(Box::new(ChangeOut {
                    epoch: c.epoch,
                    input_next: c.input_next,
                    state: StateOut {
                        key: &s.key,
                        survey: s.survey,
                        object_id: &s.object_id,
                        version: s.version,
                        ra: s.ra,
                        dec: s.dec,
                        solar_system: &s.solar_system,
                        points: &s.points,
                        alerts: &s.alerts,
                        updated_at_ms: s.updated_at_ms,
                        attributes: &s.attributes,
                    },
                    new_points: &c.new_points,
                }))
            }
        };
        let mut bytes = vec![2];
        bytes.extend(postcard::to_stdvec(&out).expect("plain data serializes"));
        bytes
    }
}

/// The fencing rule, in one place: a reader tracks the newest epoch started in the log; a
/// marker is admitted only if it starts a strictly newer epoch, a change only if it belongs to
/// the current epoch (or a newer one whose marker the reader has not seen — a log written
/// before markers had their own keys; it then advances the fence).
#[derive(Debug, Default, Clone, Copy)]
pub struct EpochFence {
    pub current: u64,
}

impl EpochFence {
    /// True if the entry should be applied; advances the fence on a newer epoch.
    pub fn admit(&mut self, entry: &ChangelogEntry) -> bool {
        let e = entry.epoch();
        let admitted = match entry {
            ChangelogEntry::EpochStart { .. } => e > self.current,
            ChangelogEntry::Change(_) | ChangelogEntry::Stats(_) => e >= self.current,
        };
        if admitted {
            self.current = e;
        }
        admitted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectState;

    fn change(epoch: u64) -> ChangelogEntry {
        let state = ObjectState {
            key: "ztf:ZTF1".into(),
            survey: crate::model::Survey::Ztf,
            object_id: "ZTF1".into(),
            version: 1,
            ra: None,
            dec: None,
            solar_system: None,
            points: vec![],
            alerts: vec![],
            updated_at_ms: 0,
            attributes: Default::default(),
            watchlists: Vec::new(),
        };
        ChangelogEntry::Change(Box::new(Change { epoch, input_next: 0, state, new_points: vec![] }))
    }

    fn start(epoch: u64, node: &str) -> ChangelogEntry {
        ChangelogEntry::EpochStart { epoch, input_next: 0, node: node.into() }
    }

    #[test]
    fn older_epochs_are_fenced_once_a_newer_one_starts() {
        let mut f = EpochFence::default();
        assert!(f.admit(&start(1, "a")));
        assert!(f.admit(&change(1)));
        assert!(f.admit(&start(2, "b")));
        assert!(!f.admit(&change(1)), "a deposed master's late write");
        assert!(f.admit(&change(2)));
        assert_eq!(f.current, 2);
    }

    #[test]
    fn a_second_marker_for_the_same_epoch_loses() {
        let mut f = EpochFence::default();
        assert!(f.admit(&start(3, "a")));
        assert!(!f.admit(&start(3, "b")), "two promotions racing for epoch 3: the first wins");
        assert!(!f.admit(&start(2, "c")));
    }

    #[test]
    fn markers_have_one_key_per_epoch_and_round_trip() {
        assert_ne!(start(1, "a").key(), start(2, "a").key());
        assert!(start(7, "a").key().starts_with(EPOCH_KEY_PREFIX.as_bytes()));
        for e in [start(9, "node-1"), change(4)] {
            assert_eq!(ChangelogEntry::decode(&e.encode()).unwrap(), e);
        }
        assert!(matches!(ChangelogEntry::decode(&[9, 1, 2]), Err(CodecError::UnknownFormat(Some(9)))));
    }

    #[test]
    fn format_2_records_are_still_read_with_no_watch_matches() {
        for e in [start(9, "node-1"), change(4)] {
            assert_eq!(ChangelogEntry::decode(&v2::encode(&e)).unwrap(), e);
        }
    }

    #[test]
    fn format_1_records_are_still_read_with_empty_attributes() {
        for e in [start(9, "node-1"), change(4)] {
            assert_eq!(ChangelogEntry::decode(&v1::encode(&e)).unwrap(), e);
        }
    }
}
