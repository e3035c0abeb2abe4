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
    ///
    /// Or subscribe `sub` to a filter (API.md, Filter language): an `update` for every change
    /// after which an object matches, a `leave` when a change makes it stop matching, from every
    /// partition. With `snapshot`, the objects that match now first. With `from` (the `cursor`
    /// of the last message received), every change after it instead, with no gap and no
    /// duplicate.
    Subscribe {
        sub: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        objects: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from_version: Option<u64>,
        /// A filter expression.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        /// Resume a filter subscription after this cursor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        /// Send the objects that match now before the changes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<bool>,
        /// Node to node: only these partitions (a relay's subscription to the node serving them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partitions: Option<Vec<u32>>,
    },
    Unsubscribe {
        sub: String,
    },
}

impl ClientOp {
    /// Subscribe `sub` to `objects`, optionally resuming after `from_version`.
    pub fn subscribe_objects(sub: impl Into<String>, objects: Vec<String>, from_version: Option<u64>) -> ClientOp {
        ClientOp::Subscribe {
            sub: sub.into(),
            objects: Some(objects),
            from_version,
            filter: None,
            from: None,
            snapshot: None,
            partitions: None,
        }
    }

    /// Subscribe `sub` to `filter`, optionally resuming after cursor `from`.
    pub fn subscribe_filter(
        sub: impl Into<String>,
        filter: impl Into<String>,
        from: Option<String>,
        snapshot: bool,
    ) -> ClientOp {
        ClientOp::Subscribe {
            sub: sub.into(),
            objects: None,
            from_version: None,
            filter: Some(filter.into()),
            from,
            snapshot: snapshot.then_some(true),
            partitions: None,
        }
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
    Snapshot {
        sub: String,
        key: String,
        version: u64,
        object: Option<ObjectSummary>,
        /// Filter subscriptions: where to resume from after this message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// One applied change: `version` is the previous one plus one (for a filter subscription,
    /// versions jump while the object does not match).
    Update {
        sub: String,
        key: String,
        version: u64,
        object: ObjectSummary,
        new_points: Vec<LightPoint>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Filter subscriptions: change `version` made the object stop matching.
    Leave { sub: String, key: String, version: u64, cursor: String },
    /// Filter subscriptions: every partition is being followed (after the snapshot, if one was
    /// asked for); `cursor` resumes from here even if no change comes.
    Subscribed { sub: String, cursor: String },
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
pub fn update_text(
    sub: &str,
    version: u64,
    object: &ObjectSummary,
    new_points: &[LightPoint],
    cursor: Option<&str>,
) -> String {
    update_text_with(sub, &update_body(version, object, new_points), cursor)
}

/// The part of an `update` that is the same for every subscription sending it (`key`,
/// `version`, `object`, `new_points`, without braces): a change that a hundred filters match is
/// serialized once, not a hundred times.
pub fn update_body(version: u64, object: &ObjectSummary, new_points: &[LightPoint]) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        key: &'a str,
        version: u64,
        object: &'a ObjectSummary,
        new_points: &'a [LightPoint],
    }
    let text = serde_json::to_string(&Body { key: &object.key, version, object, new_points })
        .expect("an update always serializes");
    // `{…}` → `…`
    text[1..text.len() - 1].to_owned()
}

/// An `update` of subscription `sub` around a body from [`update_body`].
pub fn update_text_with(sub: &str, body: &str, cursor: Option<&str>) -> String {
    let sub = serde_json::to_string(sub).expect("a string serializes");
    let mut text = String::with_capacity(body.len() + sub.len() + 64);
    text.push_str(r#"{"type":"update","sub":"#);
    text.push_str(&sub);
    text.push(',');
    text.push_str(body);
    if let Some(c) = cursor {
        text.push_str(r#","cursor":"#);
        text.push_str(&serde_json::to_string(c).expect("a string serializes"));
    }
    text.push('}');
    text
}

/// The kind of a server message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MsgType {
    Snapshot,
    Update,
    Leave,
    Subscribed,
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
    #[serde(default)]
    pub cursor: Option<String>,
}

/// Where a filter subscription stands in each partition: the first changelog offset whose
/// change it has not yet delivered, and the epoch the changelog's fence had reached before it
/// (a replay from there admits exactly what every replica admitted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedPosition {
    pub next: u64,
    pub epoch: u64,
}

/// The resume cursor of a filter subscription: a [`FeedPosition`] per partition. Its text is
/// `p:next:epoch` per partition, comma-separated — opaque to clients, who pass it back as
/// `from`; readable when debugging.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCursor(pub std::collections::BTreeMap<u32, FeedPosition>);

impl FeedCursor {
    pub fn encode(&self) -> String {
        let parts: Vec<String> = self.0.iter().map(|(p, pos)| format!("{p}:{}:{}", pos.next, pos.epoch)).collect();
        parts.join(",")
    }

    /// Parses a cursor; the error says what is wrong with it.
    pub fn decode(text: &str) -> Result<FeedCursor, String> {
        const MAX_PARTITIONS: usize = 4096;
        let mut out = std::collections::BTreeMap::new();
        if text.is_empty() {
            return Ok(FeedCursor(out));
        }
        for (i, part) in text.split(',').enumerate() {
            if i >= MAX_PARTITIONS {
                return Err(format!("cursor has more than {MAX_PARTITIONS} partitions"));
            }
            let fields: Vec<&str> = part.split(':').collect();
            let nums: Option<Vec<u64>> = fields.iter().map(|f| f.parse::<u64>().ok()).collect();
            match nums.as_deref() {
                Some(&[p, next, epoch]) if p <= u64::from(u32::MAX) => {
                    if out.insert(p as u32, FeedPosition { next, epoch }).is_some() {
                        return Err(format!("cursor names partition {p} twice"));
                    }
                }
                _ => return Err(format!("cursor part {part:?} is not partition:offset:epoch")),
            }
        }
        Ok(FeedCursor(out))
    }
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
        let snap = ServerMsg::Snapshot { sub: "s".into(), key: "ztf:A".into(), version: 0, object: None, cursor: None };
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

    #[test]
    fn an_update_rendered_around_a_shared_body_decodes_as_the_update() {
        use crate::model::Survey;
        let mut state =
            crate::object::ObjectState::empty("ztf:ZTF21abiuvdk".into(), Survey::Ztf, "ZTF21abiuvdk".into());
        state.ra = Some(12.5);
        state.version = 3;
        let summary = state.summary();
        for (sub, cursor) in [("f1", Some("0:17:2")), ("a \"quoted\" sub", None)] {
            let text = update_text(sub, 3, &summary, &[], cursor);
            let want = ServerMsg::Update {
                sub: sub.into(),
                key: summary.key.clone(),
                version: 3,
                object: summary.clone(),
                new_points: vec![],
                cursor: cursor.map(str::to_owned),
            };
            assert_eq!(serde_json::from_str::<ServerMsg>(&text).unwrap(), want, "{text}");
            assert_eq!(text, update_text_with(sub, &update_body(3, &summary, &[]), cursor));
        }
    }

    #[test]
    fn feed_cursors_round_trip_and_garbage_is_refused() {
        let mut c = FeedCursor::default();
        c.0.insert(0, FeedPosition { next: 17, epoch: 2 });
        c.0.insert(5, FeedPosition { next: 0, epoch: 0 });
        assert_eq!(c.encode(), "0:17:2,5:0:0");
        assert_eq!(FeedCursor::decode(&c.encode()).unwrap(), c);
        assert_eq!(FeedCursor::decode("").unwrap(), FeedCursor::default());
        for bad in ["x", "1:2", "1:2:3:4", "0:1:1,0:2:2", "-1:0:0", "1:a:0"] {
            assert!(FeedCursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_subscriptions_match_the_documented_json() {
        let op: ClientOp = serde_json::from_str(
            r#"{"op":"subscribe","sub":"f1","filter":"n_detections >= 3 and mag_g < 18","snapshot":true}"#,
        )
        .unwrap();
        assert_eq!(op, ClientOp::subscribe_filter("f1", "n_detections >= 3 and mag_g < 18", None, true));
        let leave = ServerMsg::Leave { sub: "f1".into(), key: "ztf:A".into(), version: 4, cursor: "0:9:1".into() };
        let env: Envelope = serde_json::from_str(&leave.to_text()).unwrap();
        assert_eq!((env.kind, env.cursor.as_deref()), (MsgType::Leave, Some("0:9:1")));
    }
}
