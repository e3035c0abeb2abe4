//! Alert codecs: bytes off the wire → the normalized [`Alert`](crate::model::Alert).
//!
//! Two framings arrive, told apart by their first bytes (see `shared/data/README.md` §1):
//! - an Avro object container file (`Obj\x01`), one record, with its writer schema embedded —
//!   all ZTF packets, and LSST packets in container form;
//! - the Confluent wire format (`0x00` + 4-byte big-endian schema id + schemaless Avro) — the
//!   Rubin stream; the id is resolved by a [`SchemaRegistry`](crate::registry::SchemaRegistry).
//!
//! Decoding always uses the writer schema. The survey is chosen by the writer schema's name
//! (`ztf.alert` or `lsst.vM_m.alert`), never by guessing from content.

mod avro_value;
pub mod lsst;
pub mod stamps;
pub mod ztf;

use crate::model::Alert;
use crate::registry::{RegistryError, SchemaRegistry};
use apache_avro::Schema;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// Why a packet could not be decoded. Every variant but `Registry` is a property of the packet
/// (or of the registry's knowledge), so retrying the same bytes gives the same answer: such
/// packets go to the dead-letter topic. `Registry` (the registry could not be reached) is
/// transient: the batch is retried instead.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unrecognized framing (first bytes {0}); expected an Avro container file or Confluent wire format")]
    UnknownFraming(String),
    #[error("corrupt avro: {0}")]
    Corrupt(String),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(u32),
    #[error("schema registry: {0}")]
    Registry(String),
    #[error("the registry's schema cannot be used: {0}")]
    InvalidSchema(String),
    #[error("unsupported writer schema {0:?}; expected ztf.alert or lsst.vM_m.alert")]
    UnsupportedSchema(String),
    #[error("container holds {0} records; expected exactly one alert")]
    RecordCount(usize),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("invalid alert: {0}")]
    Invalid(String),
}

impl DecodeError {
    pub(crate) fn missing(field: &'static str) -> DecodeError {
        DecodeError::Missing(field)
    }
    pub(crate) fn invalid(why: impl Into<String>) -> DecodeError {
        DecodeError::Invalid(why.into())
    }
    /// True when the packet may decode later (the registry could not be asked): such a packet
    /// must be retried, never dead-lettered.
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::Registry(_))
    }

    /// A short machine-readable reason, used as a metric label and in dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::UnknownFraming(_) => "unknown_framing",
            DecodeError::Corrupt(_) => "corrupt",
            DecodeError::UnknownSchemaId(_) => "unknown_schema",
            DecodeError::Registry(_) => "registry_error",
            DecodeError::InvalidSchema(_) => "invalid_schema",
            DecodeError::UnsupportedSchema(_) => "unsupported_schema",
            DecodeError::RecordCount(_) => "record_count",
            DecodeError::Missing(_) => "missing_field",
            DecodeError::Invalid(_) => "invalid_alert",
        }
    }
}

const CONTAINER_MAGIC: &[u8; 4] = b"Obj\x01";

/// Decodes packets. Holds the registry and a cache of parsed container writer schemas (ZTF packets
/// embed a ~20 kB schema in every message; parsing it once per distinct schema, not per packet,
/// is most of the decode cost).
pub struct Decoder {
    registry: Arc<dyn SchemaRegistry>,
    container_schemas: Mutex<HashMap<Vec<u8>, Arc<Schema>>>,
}

/// Bound on the container-schema cache; distinct schemas in the wild number in the tens.
const MAX_CACHED_SCHEMAS: usize = 256;

impl Decoder {
    pub fn new(registry: Arc<dyn SchemaRegistry>) -> Decoder {
        Decoder { registry, container_schemas: Mutex::new(HashMap::new()) }
    }

    pub fn registry(&self) -> &Arc<dyn SchemaRegistry> {
        &self.registry
    }

    /// Decodes one packet into the common model.
    pub fn decode(&self, bytes: &[u8]) -> Result<Alert, DecodeError> {
        self.decode_with(bytes, dispatch)
    }

    /// The decoded alert with its image stamps as FITS (ZTF's gunzipped), for the cutout
    /// routes: the alert says whose stamps they are, so a caller can check that the packet it
    /// read is the one it asked for.
    pub fn stamps(&self, bytes: &[u8]) -> Result<(Alert, stamps::Stamps), DecodeError> {
        self.decode_with(bytes, |schema, value| Ok((dispatch(schema, value)?, stamps::extract(value)?)))
    }

    /// Decodes the packet's framing and Avro datum with its writer schema, then hands both to `f`.
    fn decode_with<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&Schema, &apache_avro::types::Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.starts_with(CONTAINER_MAGIC) {
            self.decode_container(bytes, f)
        } else if bytes[0] == 0 && bytes.len() > 5 {
            self.decode_wire(bytes, f)
        } else {
            let head: Vec<String> = bytes.iter().take(5).map(|b| format!("{b:02x}")).collect();
            Err(DecodeError::UnknownFraming(head.join(" ")))
        }
    }

    fn decode_wire<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&Schema, &apache_avro::types::Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        let schema = self.registry.get(id).map_err(|e| match e {
            RegistryError::NotFound(id) => DecodeError::UnknownSchemaId(id),
            // The registry answered, with a schema that cannot be used: retrying gives the same.
            e @ RegistryError::Invalid { .. } => DecodeError::InvalidSchema(e.to_string()),
            other => DecodeError::Registry(other.to_string()),
        })?;
        let mut body = &bytes[5..];
        // References resolve against the named types given here: the sibling schemas, or — for a
        // self-contained schema (a registered one) that uses a type it defines more than once —
        // the schema itself.
        let schemata: Vec<&Schema> =
            if schema.named.is_empty() { vec![&schema.schema] } else { schema.named.iter().collect() };
        let value = apache_avro::from_avro_datum_schemata(&schema.schema, schemata, &mut body, None)
            .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        if !body.is_empty() {
            return Err(DecodeError::Corrupt(format!("{} trailing bytes after the alert record", body.len())));
        }
        f(&schema.schema, &value)
    }

    fn decode_container<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&Schema, &apache_avro::types::Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let container = container::parse(bytes).map_err(DecodeError::Corrupt)?;
        let schema = self.container_schema(container.schema_json)?;
        if container.count != 1 {
            return Err(DecodeError::RecordCount(container.count));
        }
        let mut body = container.block;
        let value =
            apache_avro::from_avro_datum(&schema, &mut body, None).map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        f(&schema, &value)
    }

    fn container_schema(&self, json: &[u8]) -> Result<Arc<Schema>, DecodeError> {
        if let Some(s) = self.container_schemas.lock().get(json) {
            return Ok(s.clone());
        }
        let text = std::str::from_utf8(json).map_err(|e| DecodeError::Corrupt(format!("schema is not utf-8: {e}")))?;
        let schema =
            Arc::new(Schema::parse_str(text).map_err(|e| DecodeError::Corrupt(format!("writer schema: {e}")))?);
        let mut cache = self.container_schemas.lock();
        if cache.len() >= MAX_CACHED_SCHEMAS {
            cache.clear();
        }
        cache.insert(json.to_vec(), schema.clone());
        Ok(schema)
    }
}

/// Chooses the survey from the writer schema's full name.
fn dispatch(schema: &Schema, value: &apache_avro::types::Value) -> Result<Alert, DecodeError> {
    let name = match schema {
        Schema::Record(r) => r.name.fullname(None),
        _ => return Err(DecodeError::UnsupportedSchema("<not a record>".into())),
    };
    if name == "ztf.alert" {
        return ztf::decode_record(value);
    }
    if let Some(version) = lsst_version(&name) {
        return lsst::decode_record(value, version);
    }
    Err(DecodeError::UnsupportedSchema(name))
}

/// `lsst.v7_1.alert` → `7.1`.
fn lsst_version(fullname: &str) -> Option<String> {
    let v = fullname.strip_prefix("lsst.v")?.strip_suffix(".alert")?;
    let (major, minor) = v.split_once('_')?;
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then(|| format!("{major}.{minor}"))
}

/// The Avro object container framing (spec §"Object Container Files"), parsed just far enough
/// to take the writer schema bytes as a cache key and hand the single data block to the datum
/// decoder. Only the `null` codec occurs in alert streams; others are refused with a reason.
mod container {
    pub struct Container<'a> {
        pub schema_json: &'a [u8],
        pub count: usize,
        pub block: &'a [u8],
    }

    fn read_long(buf: &mut &[u8]) -> Result<i64, String> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = buf.split_first().ok_or("truncated varint")?;
            *buf = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn read_bytes<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8], String> {
        let len = usize::try_from(read_long(buf)?).map_err(|_| "negative length")?;
        if buf.len() < len {
            return Err(format!("length {len} runs past the end"));
        }
        let (head, rest) = buf.split_at(len);
        *buf = rest;
        Ok(head)
    }

    pub fn parse(bytes: &[u8]) -> Result<Container<'_>, String> {
        let mut buf = &bytes[4..];
        let mut schema = None;
        let mut codec: &[u8] = b"null";
        loop {
            let mut n = read_long(&mut buf)?;
            if n == 0 {
                break;
            }
            if n < 0 {
                n = -n;
                read_long(&mut buf)?; // block size in bytes, unused
            }
            for _ in 0..n {
                let k = read_bytes(&mut buf)?;
                let v = read_bytes(&mut buf)?;
                match k {
                    b"avro.schema" => schema = Some(v),
                    b"avro.codec" => codec = v,
                    _ => {}
                }
            }
        }
        if codec != b"null" {
            return Err(format!("unsupported container codec {:?}", String::from_utf8_lossy(codec)));
        }
        let schema_json = schema.ok_or("container has no avro.schema")?;
        if buf.len() < 16 {
            return Err("truncated sync marker".into());
        }
        let sync = &buf[..16];
        buf = &buf[16..];
        if buf.is_empty() {
            return Ok(Container { schema_json, count: 0, block: buf });
        }
        let count = usize::try_from(read_long(&mut buf)?).map_err(|_| "negative record count")?;
        let block = read_bytes(&mut buf)?;
        if buf.len() < 16 || &buf[..16] != sync {
            return Err("block is not followed by the file's sync marker".into());
        }
        if buf.len() > 16 {
            return Err("more than one data block".into());
        }
        Ok(Container { schema_json, count, block })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lsst_version_names() {
        assert_eq!(super::lsst_version("lsst.v7_1.alert").as_deref(), Some("7.1"));
        assert_eq!(super::lsst_version("lsst.v11_0.alert").as_deref(), Some("11.0"));
        assert_eq!(super::lsst_version("ztf.alert"), None);
    }
}
