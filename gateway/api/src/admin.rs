//! Operator answers: promote, drain, node drain, decommission.
//!
//! The coordinator's failover and a node drain make the same calls to other nodes that an
//! operator makes, and read these same types back.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The result of a promotion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Promoted {
    pub partition: u32,
    pub epoch: u64,
    /// The master of the previous epoch.
    pub previous_master: String,
    /// Offset of our `EpochStart` marker in the changelog.
    pub marker_offset: u64,
    pub input_next: u64,
    /// Changelog records applied during the promotion (the catch-up).
    pub caught_up: u64,
    /// Milliseconds spent catching up before the marker, appending it, and applying up to it.
    pub catch_up_ms: f64,
    pub marker_append_ms: f64,
    pub marker_apply_ms: f64,
    /// False when this replica already was the master.
    pub changed: bool,
}

/// The result of a drain: where the old master's acknowledged writes end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Drained {
    pub partition: u32,
    pub epoch: u64,
    /// Every changelog record this master acknowledged is below this offset.
    pub changelog_next: u64,
    pub input_next: u64,
}

/// `POST /v1/admin/partitions/{p}/promote`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PromoteReport {
    pub promoted: Promoted,
    /// The old master's drain answer, when it could be reached.
    pub drained: Option<Drained>,
    /// Why the old master was not drained (it is then fenced by the new epoch instead).
    pub drain_error: Option<String>,
    /// Time of the drain call, in ms.
    pub drain_ms: f64,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PromoteParams {
    /// The caller knows the old master is down (the coordinator's failover): do not wait for a
    /// drain that cannot answer — a paused process would hold it for the whole drain timeout;
    /// the new epoch fences the old master anyway.
    #[serde(default)]
    pub skip_drain: bool,
}

/// One partition's handover in a node drain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeHandover {
    pub partition: u32,
    /// The standby chosen (least changelog lag among the reachable ready standbys).
    pub to: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// `POST /v1/admin/nodes/{id}/drain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeDrainReport {
    pub node: String,
    /// True when no partition is mastered on the node any more.
    pub complete: bool,
    pub handovers: Vec<NodeHandover>,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DecommissionParams {
    /// Undo a decommission: the node becomes a member again and gets replicas back.
    #[serde(default)]
    pub cancel: bool,
}

/// `POST /v1/admin/nodes/{id}/decommission`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecommissionReport {
    pub node: String,
    pub leaving: bool,
    /// Partitions the coordinator's table still places on the node (placement empties this).
    pub hosts: Vec<u32>,
    /// The nodes that keep (or get) replicas.
    pub members: Vec<String>,
}
