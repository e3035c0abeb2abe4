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
mod node;
pub mod projection;
pub mod stamps;
pub mod untrusted;
pub mod ztf;

use crate::model::Alert;
use crate::registry::{RegisteredSchema, RegistryError, SchemaRegistry};
use apache_avro::Schema;
use parking_lot::Mutex;
use projection::{Layout, Plan};
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

/// Decodes packets. Holds the registry and caches of writer schemas, parsed and compiled: ZTF
/// packets embed a ~20 kB schema in every message, and parsing it once per distinct schema, not
/// per packet, was most of the decode cost before the compiled decoder; compiling a plan is
/// likewise done once per container schema or registry id.
pub struct Decoder {
    registry: Arc<dyn SchemaRegistry>,
    /// Container schemas by [`fingerprint`] of their JSON (then compared whole).
    container_schemas: Mutex<HashMap<u64, Vec<Arc<ContainerSchema>>>>,
    /// Plans for registry ids, with the registered schema they were compiled from (a registry
    /// that hands out a new schema for an id gets a new plan).
    wire_schemas: Mutex<HashMap<u32, WirePlan>>,
}

/// A registered schema and its plan.
type WirePlan = (Arc<RegisteredSchema>, Arc<Compiled>);

/// Bound on each schema cache; distinct schemas in the wild number in the tens.
const MAX_CACHED_SCHEMAS: usize = 256;
/// Container schemas kept under one fingerprint.
const MAX_SAME_FINGERPRINT: usize = 4;

/// A writer schema compiled for its survey's layout: the survey and plan, or why there is none.
struct Compiled {
    plan: Result<(Survey, Plan), CompileError>,
}

/// A container's writer schema, parsed (for the generic decoder and stamps) and compiled.
struct ContainerSchema {
    json: Vec<u8>,
    schema: Schema,
    compiled: Compiled,
}

/// Which mapper a writer schema's name selects.
#[derive(Debug, Clone)]
enum Survey {
    Ztf,
    /// `7.1` for `lsst.v7_1.alert`.
    Lsst(String),
}

/// Why a writer schema has no plan; kept in the cache so a flood of such packets costs nothing.
#[derive(Debug, Clone)]
enum CompileError {
    Unsupported(String),
    Invalid(String),
}

impl From<&CompileError> for DecodeError {
    fn from(e: &CompileError) -> DecodeError {
        match e {
            CompileError::Unsupported(name) => DecodeError::UnsupportedSchema(name.clone()),
            CompileError::Invalid(why) => DecodeError::InvalidSchema(why.clone()),
        }
    }
}

impl Survey {
    /// The survey a writer schema's full name selects.
    fn of(schema: &Schema) -> Result<Survey, CompileError> {
        let name = match schema {
            Schema::Record(r) => r.name.fullname(None),
            _ => return Err(CompileError::Unsupported("<not a record>".into())),
        };
        if name == "ztf.alert" {
            return Ok(Survey::Ztf);
        }
        lsst_version(&name).map(Survey::Lsst).ok_or(CompileError::Unsupported(name))
    }

    fn layout(&self) -> &'static Layout {
        match self {
            Survey::Ztf => &ztf::alert::LAYOUT,
            Survey::Lsst(_) => &lsst::alert::LAYOUT,
        }
    }

    fn map<'a>(&self, rec: impl node::Node<'a>) -> Result<Alert, DecodeError> {
        match self {
            Survey::Ztf => ztf::decode_record(rec),
            Survey::Lsst(version) => lsst::decode_record(rec, version.clone()),
        }
    }
}

impl Compiled {
    fn new(schema: &Schema, named: &[Schema]) -> Compiled {
        let plan = Survey::of(schema).and_then(|survey| {
            let plan = Plan::compile(schema, named, survey.layout()).map_err(CompileError::Invalid)?;
            Ok((survey, plan))
        });
        Compiled { plan }
    }

    fn decode(&self, body: &[u8]) -> Result<Alert, DecodeError> {
        let (survey, plan) = self.plan.as_ref().map_err(DecodeError::from)?;
        let value = plan.decode_all(body)?;
        survey.map(&value)
    }
}

/// Inserts into a bounded cache, emptying it when full (schemas in the wild number in the tens;
/// a stream that cycles through hundreds only costs re-parsing).
fn cache_insert<K: std::hash::Hash + Eq, V>(cache: &mut HashMap<K, V>, key: K, value: V) {
    if cache.len() >= MAX_CACHED_SCHEMAS {
        cache.clear();
    }
    cache.insert(key, value);
}

/// The most apache-avro may allocate for one string, bytes or array of the generic decoder
/// (stamps, `decode_generic`). Those paths only see packets the compiled decoder accepted, whose
/// every length fits in the packet; this is the second line, well below apache-avro's default
/// of 512 MiB and above any real packet (ZTF's are ~60 kB, Kafka's messages at most a few MB).
pub const MAX_GENERIC_ALLOCATION: usize = 64 << 20;

impl Decoder {
    pub fn new(registry: Arc<dyn SchemaRegistry>) -> Decoder {
        // Process-wide, and set by the first call only; every decoder wants the same limit.
        apache_avro::util::max_allocation_bytes(MAX_GENERIC_ALLOCATION);
        Decoder { registry, container_schemas: Mutex::new(HashMap::new()), wire_schemas: Mutex::new(HashMap::new()) }
    }

    pub fn registry(&self) -> &Arc<dyn SchemaRegistry> {
        &self.registry
    }

    /// Decodes one packet into the common model, with the plan compiled from its writer schema
    /// ([`projection`]).
    pub fn decode(&self, bytes: &[u8]) -> Result<Alert, DecodeError> {
        check_framing(bytes)?;
        if bytes.starts_with(CONTAINER_MAGIC) {
            let container = container::parse(bytes).map_err(DecodeError::Corrupt)?;
            let schema = self.container_schema(container.schema_json)?;
            if container.count != 1 {
                return Err(DecodeError::RecordCount(container.count));
            }
            schema.compiled.decode(container.block)
        } else {
            let registered = self.registered(bytes)?;
            let compiled = self.wire_schema(registered);
            compiled.decode(&bytes[5..])
        }
    }

    /// Decodes one packet through apache-avro's generic `Value` tree and the same survey
    /// mappers: the decoder [`decode`](Self::decode) replaced, kept as the reference it is
    /// tested (`storage/tests/decode_equivalence.rs`) and benchmarked (`bench decode`) against.
    ///
    /// Not for untrusted bytes: apache-avro reserves an array's claimed item count before
    /// reading it (its allocation limit covers strings and bytes only), so a few hundred bytes
    /// can ask for gigabytes. [`stamps`](Self::stamps) checks a packet with the bounded decoder
    /// first; the fuzz target does the same.
    pub fn decode_generic(&self, bytes: &[u8]) -> Result<Alert, DecodeError> {
        self.decode_with(bytes, dispatch)
    }

    /// The decoded alert with its image stamps as FITS (ZTF's gunzipped), for the cutout
    /// routes: the alert says whose stamps they are, so a caller can check that the packet it
    /// read is the one it asked for.
    pub fn stamps(&self, bytes: &[u8]) -> Result<(Alert, stamps::Stamps), DecodeError> {
        // The bounded decoder first (see `decode_generic`): a packet it accepts claims no
        // length or count beyond its own size, so the generic decode below stays within a
        // small multiple of it.
        self.decode(bytes)?;
        self.decode_with(bytes, |schema, value| Ok((dispatch(schema, value)?, stamps::extract(value)?)))
    }

    /// Decodes the packet's framing and Avro datum with its writer schema, then hands both to `f`.
    fn decode_with<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&Schema, &apache_avro::types::Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        check_framing(bytes)?;
        if bytes.starts_with(CONTAINER_MAGIC) {
            self.decode_container(bytes, f)
        } else {
            self.decode_wire(bytes, f)
        }
    }

    /// The registered schema a Confluent-framed packet names.
    fn registered(&self, bytes: &[u8]) -> Result<Arc<RegisteredSchema>, DecodeError> {
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        self.registry.get(id).map_err(|e| match e {
            RegistryError::NotFound(id) => DecodeError::UnknownSchemaId(id),
            // The registry answered, with a schema that cannot be used: retrying gives the same.
            e @ RegistryError::Invalid { .. } => DecodeError::InvalidSchema(e.to_string()),
            other => DecodeError::Registry(other.to_string()),
        })
    }

    /// The plan for a registered schema, compiled at its first use.
    fn wire_schema(&self, registered: Arc<RegisteredSchema>) -> Arc<Compiled> {
        if let Some((known, compiled)) = self.wire_schemas.lock().get(&registered.id) {
            if Arc::ptr_eq(known, &registered) {
                return compiled.clone();
            }
        }
        let compiled = Arc::new(Compiled::new(&registered.schema, &registered.named));
        cache_insert(&mut self.wire_schemas.lock(), registered.id, (registered, compiled.clone()));
        compiled
    }

    fn decode_wire<T>(
        &self,
        bytes: &[u8],
        f: impl FnOnce(&Schema, &apache_avro::types::Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let schema = self.registered(bytes)?;
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
        let parsed = self.container_schema(container.schema_json)?;
        if container.count != 1 {
            return Err(DecodeError::RecordCount(container.count));
        }
        let mut body = container.block;
        let value = apache_avro::from_avro_datum(&parsed.schema, &mut body, None)
            .map_err(|e| DecodeError::Corrupt(e.to_string()))?;
        f(&parsed.schema, &value)
    }

    /// A container's writer schema, parsed and compiled at its first use.
    fn container_schema(&self, json: &[u8]) -> Result<Arc<ContainerSchema>, DecodeError> {
        let print = fingerprint(json);
        if let Some(known) = self.container_schemas.lock().get(&print) {
            if let Some(s) = known.iter().find(|s| s.json == json) {
                return Ok(s.clone());
            }
        }
        let text = std::str::from_utf8(json).map_err(|e| DecodeError::Corrupt(format!("schema is not utf-8: {e}")))?;
        let schema = untrusted::parse_str(text).map_err(|e| DecodeError::Corrupt(format!("writer schema: {e}")))?;
        let compiled = Compiled::new(&schema, &[]);
        let parsed = Arc::new(ContainerSchema { json: json.to_vec(), schema, compiled });
        let mut cache = self.container_schemas.lock();
        match cache.get_mut(&print) {
            // Schemas that differ only between the sampled words share a fingerprint; a few
            // are kept side by side, and more replace them (packets made to collide must not
            // grow the cache or make lookups linear).
            Some(known) if known.len() < MAX_SAME_FINGERPRINT => known.push(parsed.clone()),
            Some(known) => *known = vec![parsed.clone()],
            None => cache_insert(&mut cache, print, vec![parsed.clone()]),
        }
        Ok(parsed)
    }
}

/// A cheap key for a container's ~20 kB schema JSON: its length and 64 words sampled across
/// it. Hashing every byte of it cost as much as decoding the alert; a lookup compares the whole
/// JSON anyway, so a collision costs a comparison, never a wrong schema.
fn fingerprint(json: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    json.len().hash(&mut h);
    if json.len() <= 512 {
        json.hash(&mut h);
    } else {
        let step = (json.len() - 8) / 63;
        for i in 0..64 {
            let at = (i * step).min(json.len() - 8);
            h.write(&json[at..at + 8]);
        }
    }
    h.finish()
}

/// Refuses what is neither an Avro container nor Confluent-framed before anything is parsed.
fn check_framing(bytes: &[u8]) -> Result<(), DecodeError> {
    if bytes.is_empty() {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(CONTAINER_MAGIC) || (bytes[0] == 0 && bytes.len() > 5) {
        return Ok(());
    }
    let head: Vec<String> = bytes.iter().take(5).map(|b| format!("{b:02x}")).collect();
    Err(DecodeError::UnknownFraming(head.join(" ")))
}

/// Chooses the survey from the writer schema's full name (the generic decoder's path).
fn dispatch(schema: &Schema, value: &apache_avro::types::Value) -> Result<Alert, DecodeError> {
    Survey::of(schema).map_err(|e| DecodeError::from(&e))?.map(value)
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
    use super::projection::{read_bytes, read_long};

    pub struct Container<'a> {
        pub schema_json: &'a [u8],
        pub count: usize,
        pub block: &'a [u8],
    }

    pub fn parse(bytes: &[u8]) -> Result<Container<'_>, String> {
        let mut buf = &bytes[4..];
        let mut schema = None;
        let mut codec: &[u8] = b"null";
        loop {
            let n = read_long(&mut buf)?;
            if n == 0 {
                break;
            }
            if n < 0 {
                read_long(&mut buf)?; // block size in bytes, unused
            }
            // Each entry takes at least two bytes, so a huge count ends at the buffer's end.
            for _ in 0..n.unsigned_abs() {
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
