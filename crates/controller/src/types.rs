//! The type configuration openraft runs with: node ids are `u64`, leader ids
//! are standard Raft's (one leader per term, the term being KRaft's
//! controller epoch; openraft's default mode can elect several leaders in one
//! term), and an entry carries one atomic batch of metadata records.

use std::fmt;

use rill_metadata::MetadataRecord;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// Rill's controller quorum.
    pub TypeConfig:
        D = RecordBatch,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

/// Records applied together or not at all (a CreateTopics of several topics
/// is one batch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordBatch(pub Vec<MetadataRecord>);

impl fmt::Display for RecordBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} metadata records", self.0.len())
    }
}

/// What applying an entry did, answered to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The entry's log index.
    pub index: u64,
    /// Why the batch changed nothing, if it did not apply. Every node
    /// refuses the same batch the same way, so the state stays equal.
    pub refused: Option<String>,
}

pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Membership = openraft::Membership<u64, openraft::BasicNode>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;

/// A log id from its term and index.
pub fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(
        openraft::vote::leader_id_std::CommittedLeaderId::new(term),
        index,
    )
}
