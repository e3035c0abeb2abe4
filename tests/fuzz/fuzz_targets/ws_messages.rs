//! WebSocket client messages as a browser or a hostile client sends them: they parse to an op
//! or an error, and an op that parses serializes to one that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_api::ws::ClientOp;

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = serde_json::from_slice::<ClientOp>(data) {
        let again: ClientOp = serde_json::from_str(&op.to_text()).expect("a serialized op parses");
        assert_eq!(op, again);
    }
});
