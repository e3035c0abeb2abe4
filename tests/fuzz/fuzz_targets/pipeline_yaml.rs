//! Pipeline definitions (YAML put by users through the API): compiled or refused with a
//! reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_partition::pipeline::Pipeline;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Pipeline::compile("fuzz", text);
});
