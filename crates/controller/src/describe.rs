//! The quorum as one node sees it, in the shape of Kafka's DescribeQuorum
//! answer: the leader and its term, the commit point, and how far each
//! voter has replicated. Only the leader knows the voters' progress; a
//! follower answers what it knows and names the leader.

use openraft::Instant;
use serde::{Deserialize, Serialize};

use crate::node::Node;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumInfo {
    /// The node whose view this is.
    pub node: u64,
    pub leader: Option<u64>,
    /// The leader's term (KRaft's leader epoch).
    pub term: u64,
    /// The last entry known committed, as an offset: entries up to and
    /// including this index are committed (Kafka's high watermark is one
    /// past it).
    pub committed: Option<u64>,
    /// This node's last log entry and the one it has applied.
    pub last_log: Option<u64>,
    pub applied: Option<u64>,
    /// Each voter, by id; progress is known on the leader only.
    pub voters: Vec<VoterInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoterInfo {
    pub id: u64,
    /// The last entry the leader knows this voter holds.
    pub matched: Option<u64>,
    /// Milliseconds since the leader last heard from it.
    pub last_contact_ms: Option<u64>,
}

impl Node {
    /// The quorum as this node sees it now.
    pub fn describe(&self) -> QuorumInfo {
        let metrics = self.metrics_now();
        let leading = metrics.current_leader == Some(metrics.id);
        let voters = metrics
            .membership_config
            .membership()
            .voter_ids()
            .map(|id| {
                let (matched, last_contact_ms) = if !leading {
                    (None, None)
                } else if id == metrics.id {
                    (metrics.last_log_index, Some(0))
                } else {
                    let matched = metrics
                        .replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .map(|log_id| log_id.index);
                    let contact = metrics
                        .heartbeat
                        .as_ref()
                        .and_then(|h| h.get(&id).copied().flatten())
                        .map(|at| at.elapsed().as_millis() as u64);
                    (matched, contact)
                };
                VoterInfo {
                    id,
                    matched,
                    last_contact_ms,
                }
            })
            .collect();
        QuorumInfo {
            node: metrics.id,
            leader: metrics.current_leader,
            term: metrics.current_term,
            committed: metrics.local_committed.map(|id| id.index),
            last_log: metrics.last_log_index,
            applied: metrics.last_applied.map(|id| id.index),
            voters,
        }
    }
}
