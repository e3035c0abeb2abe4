//! Every input the fuzz targets (`tests/fuzz`) found a crash with, replayed on every test run
//! with the stable toolchain: each must now be refused or handled, never panic. The fuzz script
//! replays them too before it fuzzes.

mod common;

use lightkeeper_storage::changelog::ChangelogEntry;
use lightkeeper_storage::object::ObjectState;
use lightkeeper_storage::state::values::{decode, decode_progress, encode};
use lightkeeper_storage::state::HistoryEntry;
use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fuzz/regressions").join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no regression inputs in {}", dir.display());
    out
}

#[test]
fn packets_that_crashed_a_decoder_are_refused() {
    let decoder = common::decoder();
    for (path, bytes) in inputs("decode_packets") {
        // The bounded decoder, and the stamps path (which checks with it before apache-avro's
        // generic decoder, whose array reservations are unbounded: `oom-generic-array-count`).
        let compiled = decoder.decode(&bytes);
        assert!(compiled.is_err(), "{}: {compiled:?}", path.display());
        assert!(decoder.stamps(&bytes).is_err(), "{}", path.display());
    }
}

#[test]
fn changelog_records_that_crashed_round_trip_as_bytes() {
    for (path, bytes) in inputs("changelog_records") {
        if let Ok(entry) = ChangelogEntry::decode(&bytes) {
            let encoded = entry.encode();
            let again = ChangelogEntry::decode(&encoded).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(again.encode(), encoded, "{}", path.display());
        }
    }
}

#[test]
fn stored_values_that_crashed_round_trip_as_bytes() {
    for (path, bytes) in inputs("stored_values") {
        let mut decoded = 0;
        if let Ok(o) = decode::<ObjectState>("object", &bytes) {
            let again = encode(&o);
            assert_eq!(encode(&decode::<ObjectState>("object", &again).unwrap()), again, "{}", path.display());
            decoded += 1;
        }
        if let Ok(h) = decode::<HistoryEntry>("history", &bytes) {
            let again = encode(&h);
            assert_eq!(encode(&decode::<HistoryEntry>("history", &again).unwrap()), again, "{}", path.display());
            decoded += 1;
        }
        let _ = decode_progress(&bytes);
        // Each was kept because a value decoded and then failed the round trip (a NaN).
        assert!(decoded > 0, "{}: no longer decodes as any stored value", path.display());
    }
}
