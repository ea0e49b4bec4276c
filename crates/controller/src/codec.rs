//! The JSON shapes the raft directory stores (docs/FORMAT.md, "Controller
//! Raft log"), converted to and from openraft's types. The bytes on disk are
//! ours, not openraft's serde: its alphas change their types between
//! releases, and a log must outlive an upgrade.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use openraft::entry::RaftEntry;
use openraft::{BasicNode, EntryPayload};
use rill_metadata::MetadataRecord;
use serde::{Deserialize, Serialize};

use crate::types::{Entry, LogId, Membership, RecordBatch, StoredMembership, Vote, log_id};

/// `[term, index]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskLogId(pub u64, pub u64);

impl DiskLogId {
    pub fn from_raft(id: &LogId) -> DiskLogId {
        DiskLogId(id.leader_id.term, id.index)
    }

    pub fn to_raft(self) -> LogId {
        log_id(self.0, self.1)
    }
}

/// A log entry: `[term, index, payload]`. An array, so that the entry
/// framing's damage scan (which looks for payloads starting with `[`) finds
/// it.
#[derive(Debug, Serialize, Deserialize)]
struct DiskEntry(u64, u64, DiskPayload);

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum DiskPayload {
    /// A new leader's first entry.
    Blank,
    Records(Vec<MetadataRecord>),
    Membership(DiskMembership),
}

/// The voter sets (two while a change is joint) and every member's address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskMembership {
    pub configs: Vec<BTreeSet<u64>>,
    pub nodes: BTreeMap<u64, String>,
}

impl DiskMembership {
    pub fn from_raft(membership: &Membership) -> DiskMembership {
        DiskMembership {
            configs: membership.get_joint_config().clone(),
            nodes: membership
                .nodes()
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect(),
        }
    }

    pub fn to_raft(&self) -> io::Result<Membership> {
        let nodes: BTreeMap<u64, BasicNode> = self
            .nodes
            .iter()
            .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
            .collect();
        Membership::new(self.configs.clone(), nodes).map_err(invalid)
    }
}

/// A membership as the state machine and snapshots keep it: the log id of
/// the entry that set it, and the membership.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskStoredMembership {
    pub log_id: Option<DiskLogId>,
    pub membership: DiskMembership,
}

impl DiskStoredMembership {
    pub fn from_raft(stored: &StoredMembership) -> DiskStoredMembership {
        DiskStoredMembership {
            log_id: stored.log_id().as_ref().map(DiskLogId::from_raft),
            membership: DiskMembership::from_raft(stored.membership()),
        }
    }

    pub fn to_raft(&self) -> io::Result<StoredMembership> {
        Ok(StoredMembership::new(
            self.log_id.map(DiskLogId::to_raft),
            self.membership.to_raft()?,
        ))
    }
}

/// A vote: the term, the node voted for, and whether a quorum granted it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DiskVote {
    pub term: u64,
    pub voted_for: u64,
    pub committed: bool,
}

impl DiskVote {
    pub fn from_raft(vote: &Vote) -> DiskVote {
        DiskVote {
            term: vote.leader_id.term,
            voted_for: vote.leader_id.voted_for,
            committed: vote.committed,
        }
    }

    pub fn to_raft(self) -> Vote {
        if self.committed {
            Vote::new_committed(self.term, self.voted_for)
        } else {
            Vote::new(self.term, self.voted_for)
        }
    }
}

/// An entry's JSON payload.
pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let payload = match &entry.payload {
        EntryPayload::Blank => DiskPayload::Blank,
        EntryPayload::Normal(batch) => DiskPayload::Records(batch.0.clone()),
        EntryPayload::Membership(m) => DiskPayload::Membership(DiskMembership::from_raft(m)),
    };
    let disk = DiskEntry(entry.log_id.leader_id.term, entry.index(), payload);
    // Plain data structures serialize into a Vec without fail.
    serde_json::to_vec(&disk).expect("log entries serialize")
}

/// The entry an [`encode_entry`] payload holds.
pub fn decode_entry(payload: &[u8]) -> io::Result<Entry> {
    let DiskEntry(term, index, payload) = serde_json::from_slice(payload).map_err(invalid)?;
    let payload = match payload {
        DiskPayload::Blank => EntryPayload::Blank,
        DiskPayload::Records(records) => EntryPayload::Normal(RecordBatch(records)),
        DiskPayload::Membership(m) => EntryPayload::Membership(m.to_raft()?),
    };
    Ok(Entry {
        log_id: log_id(term, index),
        payload,
    })
}

/// The length of the payload [`encode_entry`] makes of a batch of
/// `records`, at the largest term and index: what a proposal must fit in.
pub fn records_entry_len(records: &[MetadataRecord]) -> usize {
    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Payload<'a> {
        Records(&'a [MetadataRecord]),
    }
    let disk = (u64::MAX, u64::MAX, Payload::Records(records));
    serde_json::to_vec(&disk)
        .expect("log entries serialize")
        .len()
}

pub fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}
