//! The read side (and registration) of the Confluent Schema Registry API that every node
//! serves, so a mirror or an external consumer resolves the schema ids Lightkeeper writes
//! without another service. Field names are Confluent's (`schemaType`, `error_code`), so
//! Confluent's own clients read these bodies.

use crate::error::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `GET /schemas/ids/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SchemaById {
    /// The Avro schema in Parsing Canonical Form with every named type inlined: it parses alone.
    pub schema: String,
}

/// `GET /subjects/{subject}/versions/{version}`. A version of the node's subject is the schema's
/// id (Rubin's convention, major×100+minor), so versions never renumber.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SubjectVersion {
    pub subject: String,
    pub version: u32,
    pub id: u32,
    pub schema: String,
}

/// `POST /subjects/{subject}/versions`: a schema to register. Only self-contained Avro schemas
/// (no `references`) are taken.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterSchema {
    pub schema: String,
    /// `AVRO` or absent.
    #[serde(default, rename = "schemaType", skip_serializing_if = "Option::is_none")]
    pub schema_type: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<Object>)]
    pub references: Vec<serde_json::Value>,
}

/// The answer of a registration: the schema's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegisteredId {
    pub id: u32,
}

/// The error body of the registry routes: Lightkeeper's `error` object, and beside it the
/// `error_code` and `message` a Confluent client expects (40401 subject not found, 40402 version
/// not found, 40403 schema not found, 409 conflict, 42201 invalid schema, 40101 unauthorized).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RegistryErrorResponse {
    pub error: ErrorBody,
    pub error_code: u32,
    pub message: String,
}
