//! Alert packets (ZTF Avro containers, Rubin Confluent wire messages) through both decoders.
//! Neither may panic or allocate for a length the packet does not hold, and where both accept
//! a packet they must agree: the compiled decoder is checked against apache-avro's generic one.
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
    let compiled = d.decode(data);
    let generic = d.decode_generic(data);
    if let (Ok(c), Ok(g)) = (&compiled, &generic) {
        assert_eq!(c, g, "the compiled and generic decoders disagree");
    }
});
