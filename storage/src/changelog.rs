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
//! Encoding: one format byte ([`CHANGELOG_FORMAT`]) then postcard. The key is the object key
//! (or [`EPOCH_KEY`] for markers), so the topic is partitioned and compacted by object.

use crate::model::LightPoint;
use crate::object::ObjectState;
use serde::{Deserialize, Serialize};

pub const CHANGELOG_FORMAT: u8 = 1;
/// Key of epoch markers (not a valid object key: no survey prefix).
pub const EPOCH_KEY: &[u8] = b"~epoch";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ChangelogEntry {
    /// A master begins `epoch`; the input resumes at `input_next`.
    EpochStart { epoch: u64, input_next: u64, node: String },
    /// An object changed.
    Change(Box<Change>),
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
    pub fn key(&self) -> &[u8] {
        match self {
            ChangelogEntry::EpochStart { .. } => EPOCH_KEY,
            ChangelogEntry::Change(c) => c.state.key.as_bytes(),
        }
    }

    pub fn epoch(&self) -> u64 {
        match self {
            ChangelogEntry::EpochStart { epoch, .. } => *epoch,
            ChangelogEntry::Change(c) => c.epoch,
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
            other => Err(CodecError::UnknownFormat(other.map(|(b, _)| *b))),
        }
    }
}

/// The fencing rule, in one place: a reader tracks the newest epoch started in the log and
/// accepts a record only if its epoch is not older.
#[derive(Debug, Default, Clone, Copy)]
pub struct EpochFence {
    pub current: u64,
}

impl EpochFence {
    /// True if the entry should be applied; advances the fence on a newer epoch.
    pub fn admit(&mut self, entry: &ChangelogEntry) -> bool {
        let e = entry.epoch();
        if e < self.current {
            return false;
        }
        self.current = e;
        true
    }
}
