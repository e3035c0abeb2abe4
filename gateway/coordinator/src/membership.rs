//! Leader duty: the Raft group's membership follows the node table.
//!
//! Every member (configured peer or registered node, not leaving) is in the group, as a learner
//! at first; a registered, live learner whose log is caught up is promoted while the group has
//! fewer voters than the largest odd number ≤ min(5, members); a leaving node that hosts nothing
//! is removed — a voter is replaced by a caught-up learner in one change. A change of voters
//! commits only with a majority of both the old and the new voters, so none is proposed unless
//! a live majority of both remains, and each is bounded by a timeout.

use crate::coordinator::{raft_id, Coordinator, MAX_VOTERS};
use crate::types::NodeId;
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::BTreeSet;
use std::time::Duration;

impl Coordinator {
    /// Leader duty: Raft membership follows the node table. Missing nodes join as learners;
    /// learners are promoted while the group has fewer voters than it should; a leaving node
    /// that hosts nothing is removed. One membership change per call.
    pub(crate) async fn reconcile_membership(&self) {
        let m = self.raft.metrics().borrow().clone();
        if m.state != ServerState::Leader {
            return;
        }
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let in_group: BTreeSet<NodeId> = membership.nodes().map(|(i, _)| *i).collect();
        let state = self.state();
        let members = self.members(&state);
        for name in &members {
            let id = raft_id(name);
            if in_group.contains(&id) {
                continue;
            }
            let Some(url) = self.url_of(name) else { continue };
            match self.raft.add_learner(id, BasicNode { addr: url }, false).await {
                Ok(_) => tracing::info!(node = %name, "added to the coordinator group as a learner"),
                Err(e) => tracing::warn!(node = %name, error = %e, "could not add a learner"),
            }
        }
        // A learner that is registered, alive, not leaving and caught up may vote.
        let last = m.last_log_index.unwrap_or(0);
        let matched = m.replication.clone().unwrap_or_default();
        let promotable = state
            .nodes
            .iter()
            .filter(|(_, info)| info.alive && !info.leaving)
            .map(|(name, _)| (name, raft_id(name)))
            .find(|(_, id)| {
                in_group.contains(id)
                    && !voters.contains(id)
                    && matched.get(id).copied().flatten().is_some_and(|l| l.index + 16 >= last)
            });
        let leaving: Vec<(&String, NodeId)> = state
            .nodes
            .iter()
            .filter(|(name, info)| info.leaving && !state.hosts_any(name))
            .map(|(name, _)| (name, raft_id(name)))
            .filter(|(_, id)| in_group.contains(id))
            .collect();
        // A change of voters commits only with a majority of the old *and* the new voters (joint
        // consensus), and nothing else commits until it has: propose none that the live nodes
        // could not complete.
        let alive = |id: &NodeId| *id == self.id || state.nodes.iter().any(|(n, info)| info.alive && raft_id(n) == *id);
        let quorate = |set: &BTreeSet<NodeId>| set.iter().filter(|v| alive(v)).count() * 2 > set.len();
        let change = if let Some((name, id)) = leaving.first() {
            if voters.contains(id) {
                // Replace the voter in one change when a learner can take its place. The
                // leader may remove itself: it steps down once the change is committed.
                let mut next: BTreeSet<NodeId> = voters.iter().copied().filter(|v| v != id).collect();
                if let Some((_, l)) = promotable {
                    next.insert(l);
                }
                if next.is_empty() || !quorate(&next) || !quorate(&voters) {
                    tracing::debug!(node = %name, "a leaving voter stays until a live majority would remain");
                    None
                } else {
                    Some((format!("{name} leaves the voters"), ChangeMembers::ReplaceAllVoters(next)))
                }
            } else {
                Some((format!("{name} leaves the group"), ChangeMembers::RemoveNodes([*id].into())))
            }
        } else {
            // An odd number of voters: a fourth tolerates no more failures than three.
            let eligible = members.iter().filter(|n| in_group.contains(&raft_id(n))).count().min(MAX_VOTERS);
            let wanted = if eligible % 2 == 0 { eligible.saturating_sub(1) } else { eligible };
            match promotable {
                Some((name, id)) if voters.len() < wanted && quorate(&voters.iter().copied().chain([id]).collect()) => {
                    Some((format!("{name} becomes a voter"), ChangeMembers::AddVoterIds([id].into())))
                }
                _ => None,
            }
        };
        if let Some((what, change)) = change {
            // Bounded: the duties after this one (registration, epoch records) must not wait on it.
            match tokio::time::timeout(Duration::from_secs(5), self.raft.change_membership(change, false)).await {
                Ok(Ok(_)) => tracing::info!("coordinator membership: {what}"),
                Ok(Err(e)) => tracing::warn!(error = %e, "coordinator membership: {what} failed"),
                Err(_) => tracing::warn!("coordinator membership: {what} did not commit within 5 s"),
            }
        }
    }
}
