//! Alert packets (ZTF Avro containers, Rubin Confluent wire messages) through both decoders, as
//! the node uses them: the bounded, compiled one on every packet; apache-avro's generic one
//! (stamps) only on packets the first accepted. Neither may panic or allocate for a length the
//! packet does not hold, and where both accept a packet they must agree, stamps included.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::registry::EmbeddedRegistry;
use std::sync::{Arc, OnceLock};

fn decoder() -> &'static Decoder {
    static D: OnceLock<Decoder> = OnceLock::new();
    D.get_or_init(|| Decoder::new(Arc::new(EmbeddedRegistry::published())))
}

fuzz_target!(|data: &[u8]| {
    let d = decoder();
    if let Ok(compiled) = d.decode(data) {
        if let Ok(generic) = d.decode_generic(data) {
            assert_eq!(compiled, generic, "the compiled and generic decoders disagree");
        }
        if let Ok((alert, _)) = d.stamps(data) {
            assert_eq!(alert, compiled, "the stamps' alert is not the decoded one");
        }
    }
});
