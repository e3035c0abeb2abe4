//! The filter language and the sort order, as users type them (query strings, WebSocket
//! subscriptions, watch lists). Parsing refuses with a position or yields a filter whose
//! printed form parses to the same filter; evaluating it against a summary never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_api::filter::{Filter, Order};
use lightkeeper_api::object::ObjectSummary;
use std::sync::OnceLock;

fn summary() -> &'static ObjectSummary {
    static S: OnceLock<ObjectSummary> = OnceLock::new();
    S.get_or_init(|| serde_json::from_str(include_str!("summary.json")).expect("the sample summary"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Filter::parse(text) {
        Ok(f) => {
            let printed = f.to_string();
            let again = Filter::parse(&printed).unwrap_or_else(|e| panic!("{printed:?} does not parse: {e}"));
            assert_eq!(again.to_string(), printed, "printing is stable");
            let _ = f.matches(summary());
        }
        Err(e) => assert!(e.position <= text.len() && text.is_char_boundary(e.position), "{e}"),
    }
    let _ = Order::parse(text);
});
