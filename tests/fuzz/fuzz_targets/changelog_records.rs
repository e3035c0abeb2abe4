//! Changelog records as read back from the log: any bytes decode to a record or an error, and
//! a record that decodes re-encodes to one that decodes the same (the current format). Compared
//! as bytes: a record may hold a NaN, which is not equal to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_storage::changelog::ChangelogEntry;

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = ChangelogEntry::decode(data) {
        let encoded = entry.encode();
        let again = ChangelogEntry::decode(&encoded).expect("a re-encoded record decodes");
        assert_eq!(again.encode(), encoded);
        assert_eq!(again.key(), entry.key());
    }
});
