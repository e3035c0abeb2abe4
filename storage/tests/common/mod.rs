//! What the storage crate's tests over the shared data set share: where the data is, and a
//! decoder over the published LSST schemas.

use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::registry::EmbeddedRegistry;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `shared/data` beside the repository, or `LIGHTKEEPER_SHARED_DATA`.
pub fn shared() -> PathBuf {
    std::env::var_os("LIGHTKEEPER_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
}

/// A decoder whose registry holds every published LSST schema of the data set.
pub fn decoder() -> Decoder {
    let reg = EmbeddedRegistry::from_dir(&shared().join("lsst/schema")).expect("schemas load");
    Decoder::new(Arc::new(reg))
}
