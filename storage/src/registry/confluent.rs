//! Client of the Confluent Schema Registry REST API (`GET /schemas/ids/{id}`), with schema
//! references resolved through `GET /subjects/{subject}/versions/{version}`, and registration
//! (`POST /subjects/{subject}/versions`) for a mirror that meets a schema its local registry
//! lacks. Lookups are cached for the life of the process: a registered id never changes meaning.
//!
//! Survey registries are secured: HTTPS (the system's web roots, or a CA file of the
//! operator's) and HTTP basic auth, or a bearer token (a Lightkeeper node's admin token).
//! Credentials never appear in `Debug` output or in errors.

use super::{parse_with_named, RegisteredSchema, RegistryError, SchemaRegistry};
use base64::Engine as _;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub struct ConfluentRegistry {
    base: String,
    agent: ureq::Agent,
    /// The `Authorization` header value, if any. Never logged.
    authorization: Option<String>,
    cache: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
}

/// How to reach a secured registry. Deserialized from configuration (`[schemas]` of a node,
/// `[upstream.registry]` and `[local.registry]` of a mirror).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryAuth {
    /// HTTP basic-auth user (Confluent Cloud: the API key).
    pub username: Option<String>,
    /// HTTP basic-auth password (Confluent Cloud: the API secret).
    pub password: Option<String>,
    /// A bearer token instead of basic auth (a Lightkeeper node: its admin token).
    pub bearer_token: Option<String>,
    /// PEM file of the CA(s) to trust for HTTPS instead of the built-in web roots.
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for RegistryAuth {
    /// Says which credentials are set, never what they are.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "<redacted>" } else { "<none>" };
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .field("password", &set(&self.password))
            .field("bearer_token", &set(&self.bearer_token))
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl RegistryAuth {
    fn authorization(&self) -> Result<Option<String>, String> {
        match (&self.username, &self.password, &self.bearer_token) {
            (None, None, Some(t)) => Ok(Some(format!("Bearer {t}"))),
            (_, _, Some(_)) => Err("set either username/password or bearer_token, not both".into()),
            (Some(u), Some(p), None) => {
                Ok(Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}")))))
            }
            (Some(_), None, None) | (None, Some(_), None) => Err("username and password go together".into()),
            (None, None, None) => Ok(None),
        }
    }

    fn tls(&self) -> Result<ureq::tls::TlsConfig, String> {
        let builder = ureq::tls::TlsConfig::builder();
        let Some(path) = &self.ca_file else { return Ok(builder.build()) };
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                Ok(_) => None,
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<_, _>>()
            .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("ca_file {}: no PEM certificate in it", path.display()));
        }
        Ok(builder.root_certs(ureq::tls::RootCerts::new_with_certs(&certs)).build())
    }
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    schema: &'a str,
}

#[derive(Deserialize)]
struct RegisterResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

#[derive(Deserialize)]
struct Reference {
    subject: String,
    version: i64,
}

/// Depth bound on nested references (a cycle or a pathological registry must not hang a worker).
const MAX_REFERENCE_DEPTH: usize = 16;

impl ConfluentRegistry {
    /// An anonymous client (plain HTTP, or HTTPS with the built-in web roots).
    pub fn new(base_url: &str, timeout: Duration) -> ConfluentRegistry {
        Self::with_auth(base_url, timeout, &RegistryAuth::default()).expect("no CA file or credentials to check")
    }

    /// A client with credentials and, for HTTPS, the CA to trust. Fails on a CA file that
    /// cannot be read or holds no certificate, and on half-given credentials.
    pub fn with_auth(
        base_url: &str,
        timeout: Duration,
        auth: &RegistryAuth,
    ) -> Result<ConfluentRegistry, RegistryError> {
        let invalid = |reason: String| RegistryError::Rejected(format!("registry {base_url}: {reason}"));
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .tls_config(auth.tls().map_err(invalid)?)
            .build()
            .into();
        Ok(ConfluentRegistry {
            base: base_url.trim_end_matches('/').to_owned(),
            agent,
            authorization: auth.authorization().map_err(invalid)?,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Registers `schema` (a self-contained Avro schema text) under `subject` and returns the
    /// id the registry gives it (the existing id when it is already registered).
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{subject}/versions", self.base);
        let mut req = self.agent.post(&url).header("Content-Type", "application/vnd.schemaregistry.v1+json");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req
            .send_json(RegisterRequest { schema })
            .map_err(|e| RegistryError::Unreachable(format!("POST {url}: {e}")))?;
        let status = resp.status().as_u16();
        match status {
            200 => resp
                .body_mut()
                .read_json::<RegisterResponse>()
                .map(|r| r.id)
                .map_err(|e| RegistryError::Unreachable(format!("POST {url}: bad body: {e}"))),
            409 | 422 | 400 | 401 | 403 => {
                let body = resp.body_mut().read_to_string().unwrap_or_default();
                Err(RegistryError::Rejected(format!("POST {url}: HTTP {status}: {}", truncate(&body))))
            }
            _ => Err(RegistryError::Unreachable(format!("POST {url}: HTTP {status}"))),
        }
    }

    fn fetch(&self, path: &str) -> Result<Option<SchemaResponse>, RegistryError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.agent.get(&url).header("Accept", "application/vnd.schemaregistry.v1+json");
        if let Some(a) = &self.authorization {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().map_err(|e| RegistryError::Unreachable(format!("GET {url}: {e}")))?;
        match resp.status().as_u16() {
            200 => resp
                .body_mut()
                .read_json::<SchemaResponse>()
                .map(Some)
                .map_err(|e| RegistryError::Unreachable(format!("GET {url}: bad body: {e}"))),
            404 => Ok(None),
            status => Err(RegistryError::Unreachable(format!("GET {url}: HTTP {status}"))),
        }
    }

    fn collect_refs(&self, refs: &[Reference], out: &mut Vec<String>, depth: usize) -> Result<(), RegistryError> {
        if depth > MAX_REFERENCE_DEPTH {
            return Err(RegistryError::Unreachable("schema references nest too deeply".into()));
        }
        for r in refs {
            let path = format!("/subjects/{}/versions/{}", r.subject, r.version);
            let resp = self
                .fetch(&path)?
                .ok_or_else(|| RegistryError::Unreachable(format!("referenced schema {path} not found")))?;
            self.collect_refs(&resp.references, out, depth + 1)?;
            out.push(resp.schema);
        }
        Ok(())
    }
}

/// At most 300 bytes of an error body, for a message.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(300) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

impl SchemaRegistry for ConfluentRegistry {
    fn get(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(s) = self.cache.lock().get(&id) {
            return Ok(s.clone());
        }
        let resp = self.fetch(&format!("/schemas/ids/{id}"))?.ok_or(RegistryError::NotFound(id))?;
        if resp.schema_type.as_deref().is_some_and(|t| t != "AVRO") {
            return Err(RegistryError::Invalid {
                id,
                reason: format!("schema type {:?} is not AVRO", resp.schema_type),
            });
        }
        let mut named = Vec::new();
        self.collect_refs(&resp.references, &mut named, 0)?;
        let schema = Arc::new(parse_with_named(id, &resp.schema, &named)?);
        self.cache.lock().insert(id, schema.clone());
        Ok(schema)
    }

    fn known_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.cache.lock().keys().copied().collect();
        ids.sort_unstable();
        ids
    }
}
