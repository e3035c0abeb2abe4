//! The compiled decoder ([`Decoder::decode`]) gives exactly what the generic one
//! ([`Decoder::decode_generic`], apache-avro's `Value` tree) gives, for every shared packet;
//! and it refuses every truncation of a packet with an error, never a panic. (Lengths that claim
//! more than the packet holds are unit-tested in `codec/projection.rs`.)

mod common;

use common::{decoder, shared};
use lightkeeper_storage::codec::DecodeError;

/// Every `.avro` packet of the data set, with its path.
fn packets() -> Vec<(String, Vec<u8>)> {
    let manifest = std::fs::read_to_string(shared().join("MANIFEST.jsonl")).expect("MANIFEST.jsonl");
    let mut out = Vec::new();
    for line in manifest.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        let path = entry["path"].as_str().unwrap();
        if path.ends_with(".avro") {
            out.push((path.to_owned(), std::fs::read(shared().join(path)).unwrap()));
        }
    }
    assert!(out.len() >= 225, "expected the full data set, found {} packets", out.len());
    out
}

#[test]
fn compiled_decoder_equals_the_generic_one_on_every_shared_packet() {
    let d = decoder();
    let mut compared = 0;
    let mut refused = 0;
    for (path, bytes) in packets() {
        match (d.decode(&bytes), d.decode_generic(&bytes)) {
            (Ok(fast), Ok(generic)) => {
                assert_eq!(fast, generic, "{path}");
                compared += 1;
            }
            (Err(fast), Err(generic)) => {
                assert_eq!(fast.code(), generic.code(), "{path}: {fast} / {generic}");
                refused += 1;
            }
            (fast, generic) => panic!("{path}: compiled {fast:?}, generic {generic:?}"),
        }
    }
    // Both survey layouts and every schema family are among them.
    assert!(compared >= 225, "{compared} decoded, {refused} refused by both");
}

#[test]
fn every_truncation_is_refused() {
    let d = decoder();
    // One packet of each framing and survey: a ZTF container with cutouts, an LSST container,
    // and a Confluent-framed LSST packet.
    let mut samples: Vec<(String, Vec<u8>)> = Vec::new();
    for (path, bytes) in packets() {
        let kind = (path.contains("ztf/"), bytes.starts_with(b"Obj\x01"));
        if !samples.iter().any(|(p, b)| (p.contains("ztf/"), b.starts_with(b"Obj\x01")) == kind) {
            samples.push((path, bytes));
        }
    }
    assert!(samples.len() >= 3, "{:?}", samples.iter().map(|s| &s.0).collect::<Vec<_>>());
    for (path, bytes) in samples {
        d.decode(&bytes).unwrap_or_else(|e| panic!("{path}: {e}"));
        // Every cut point near the start and end, and a spread in between.
        let len = bytes.len();
        let cuts = (1..len.min(300)).chain((len.saturating_sub(300)..len).step_by(1)).chain((0..len).step_by(97));
        for cut in cuts {
            match d.decode(&bytes[..cut]) {
                Err(DecodeError::Corrupt(_) | DecodeError::UnknownFraming(_) | DecodeError::Empty) => {}
                other => panic!("{path} cut at {cut} of {len}: {other:?}"),
            }
        }
    }
}
