//! What the state store hands back: values (objects, history entries, statistics buckets,
//! progress) and index keys, as a damaged or foreign store could hold them. Decoding refuses
//! or round-trips (compared as bytes: a value may hold a NaN); it never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_storage::object::ObjectState;
use lightkeeper_storage::state::values::{decode, decode_progress, encode, encode_progress};
use lightkeeper_storage::state::{index, HistoryEntry};
use lightkeeper_storage::stats::StatsBucket;

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = decode::<ObjectState>("object", data) {
        let bytes = encode(&o);
        assert_eq!(encode(&decode::<ObjectState>("object", &bytes).expect("round trip")), bytes);
        let _ = o.summary();
    }
    if let Ok(h) = decode::<HistoryEntry>("history", data) {
        let bytes = encode(&h);
        assert_eq!(encode(&decode::<HistoryEntry>("history", &bytes).expect("round trip")), bytes);
    }
    if let Ok(b) = decode::<StatsBucket>("stats", data) {
        assert_eq!(decode::<StatsBucket>("stats", &encode(&b)).expect("round trip"), b);
    }
    if let Ok(p) = decode_progress(data) {
        assert_eq!(decode_progress(&encode_progress(&p)).expect("round trip"), p);
    }
    for prefix in [0, 4, data.len()] {
        let _ = index::object_key_of(data, prefix);
    }
    let _ = index::decode_sky_value(data);
});
