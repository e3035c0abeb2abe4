//! `GET /v1/ws`: the operations a client sends and the messages a server sends.
//!
//! The same types serve browsers (through the JS client, which mirrors them), the Rust client,
//! the tests, and the gateway's relay, which subscribes to another node on behalf of its own
//! clients: it sends [`ClientOp`]s and reads each message's [`Envelope`] — the routing fields
//! alone — before passing the text on untouched, so a relayed object is never re-encoded.

use crate::error::ErrorBody;
use crate::model::LightPoint;
use crate::object::ObjectSummary;
use serde::{Deserialize, Serialize};

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientOp {
    /// Subscribe `sub` to objects (a snapshot, then every change). With `from_version`, every
    /// change after that version instead (or a fresh snapshot when history no longer reaches
    /// back), so a reconnecting client misses nothing.
    Subscribe {
        sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        objects: Option<Vec<String>>,
        /// A filter expression (API.md, Filter language).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_version: Option<u64>,
    },
    Unsubscribe {
        sub: String,
    },
}

impl ClientOp {
    /// Subscribe `sub` to `objects`, optionally resuming after `from_version`.
    pub fn subscribe_objects(sub: impl Into<String>, objects: Vec<String>, from_version: Option<u64>) -> ClientOp {
        ClientOp::Subscribe { sub: sub.into(), objects: Some(objects), filter: None, from_version }
    }

    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("a client op always serializes")
    }
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The object's current state (once per object on subscribe; `object` is null for an object
    /// that does not exist yet, at version 0).
    Snapshot { sub: String, key: String, version: u64, object: Option<ObjectSummary> },
    /// One applied change: `version` is the previous one plus one.
    Update { sub: String, key: String, version: u64, object: ObjectSummary, new_points: Vec<LightPoint> },
    /// A refused operation (`sub` set) or a connection-level error such as `slow_consumer`.
    Error { sub: Option<String>, error: ErrorBody },
}

impl ServerMsg {
    /// The JSON text frame.
    pub fn to_text(&self) -> String {
        serde_json::to_string(self).expect("a server message always serializes")
    }
}

/// The text of an `update` without cloning the object: the fan-out path serializes the shared
/// history entry by reference. Decodes as [`ServerMsg::Update`] (tested below).
pub fn update_text(sub: &str, version: u64, object: &ObjectSummary, new_points: &[LightPoint]) -> String {
    #[derive(Serialize)]
    #[serde(tag = "type", rename = "update")]
    struct UpdateRef<'a> {
        sub: &'a str,
        key: &'a str,
        version: u64,
        object: &'a ObjectSummary,
        new_points: &'a [LightPoint],
    }
    let msg = UpdateRef { sub, key: &object.key, version, object, new_points };
    serde_json::to_string(&msg).expect("an update always serializes")
}

/// The kind of a server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    Snapshot,
    Update,
    Error,
}

/// The routing fields of any [`ServerMsg`], read without decoding the object it carries.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(rename = "type")]
    pub kind: MsgType,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub version: Option<u64>,
    #[serde(default)]
    pub error: Option<ErrorBody>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ops_match_the_documented_json() {
        let op = ClientOp::subscribe_objects("s1", vec!["ztf:ZTF21abiuvdk".into()], Some(12));
        assert_eq!(op.to_text(), r#"{"op":"subscribe","sub":"s1","objects":["ztf:ZTF21abiuvdk"],"from_version":12}"#);
        let back: ClientOp = serde_json::from_str(&op.to_text()).unwrap();
        assert_eq!(back, op);
        let un: ClientOp = serde_json::from_str(r#"{"op":"unsubscribe","sub":"s1"}"#).unwrap();
        assert_eq!(un, ClientOp::Unsubscribe { sub: "s1".into() });
        assert!(serde_json::from_str::<ClientOp>(r#"{"op":"subscribe","sub":"s","objectz":[]}"#).is_err());
    }

    #[test]
    fn the_envelope_reads_every_server_message() {
        let snap = ServerMsg::Snapshot { sub: "s".into(), key: "ztf:A".into(), version: 0, object: None };
        let env: Envelope = serde_json::from_str(&snap.to_text()).unwrap();
        assert_eq!(
            (env.kind, env.sub.as_deref(), env.key.as_deref(), env.version),
            (MsgType::Snapshot, Some("s"), Some("ztf:A"), Some(0))
        );
        let err =
            ServerMsg::Error { sub: None, error: ErrorBody { code: "slow_consumer".into(), message: "m".into() } };
        let text = err.to_text();
        assert_eq!(text, r#"{"type":"error","sub":null,"error":{"code":"slow_consumer","message":"m"}}"#);
        let env: Envelope = serde_json::from_str(&text).unwrap();
        assert_eq!(env.kind, MsgType::Error);
        assert_eq!(env.error.unwrap().code, "slow_consumer");
    }
}
