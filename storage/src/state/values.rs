//! How the state store's values are written: a format byte, then postcard.
//!
//! Kept apart from the engine (`rocks.rs`) because the formats are a contract of their own — a
//! store written by one build is read by the next, and a byte the engine hands back may be
//! damaged — and because decoding them is pure, so it is fuzzed without RocksDB
//! (`tests/fuzz`, target `stored_values`). Every decoder refuses what it does not know with
//! [`StoreError::Corrupt`] rather than guessing; none panics on any input.

use super::{PartitionProgress, StoreError};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Format of object, summary, history and statistics values.
pub const FORMAT: u8 = 1;
/// Format of progress values: 2 added `PartitionProgress::master` (1 is still read).
pub const PROGRESS_FORMAT: u8 = 2;

/// A value in [`FORMAT`].
pub fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(v).expect("plain data serializes"));
    out
}

/// A value written by [`encode`]; `what` names it in the error.
pub fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { what: what.to_owned(), reason };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        other => Err(corrupt(format!("unknown format byte {:?}", other.map(|(b, _)| *b)))),
    }
}

/// A partition's progress in [`PROGRESS_FORMAT`].
pub fn encode_progress(p: &PartitionProgress) -> Vec<u8> {
    let mut out = vec![PROGRESS_FORMAT];
    out.extend(postcard::to_stdvec(p).expect("plain data serializes"));
    out
}

/// A partition's progress, in either format.
pub fn decode_progress(bytes: &[u8]) -> Result<PartitionProgress, StoreError> {
    #[derive(serde::Deserialize)]
    struct V1 {
        epoch: u64,
        input_next: u64,
        changelog_next: u64,
    }
    let corrupt = |reason: String| StoreError::Corrupt { what: "partition progress".into(), reason };
    match bytes.split_first() {
        Some((&PROGRESS_FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((&1, rest)) => {
            let v1: V1 = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            Ok(PartitionProgress {
                epoch: v1.epoch,
                input_next: v1.input_next,
                changelog_next: v1.changelog_next,
                master: String::new(),
            })
        }
        other => Err(corrupt(format!("unknown format byte {:?}", other.map(|(b, _)| *b)))),
    }
}
