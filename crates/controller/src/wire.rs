//! What controllers say to each other: a Hello that opens every
//! connection, then Raft's messages. The broker carries these bytes in
//! Kafka frames on the controller listener (API keys from
//! [`PEER_API_KEY`] on, never listed in ApiVersions); this module only turns
//! messages into bytes and back.
//!
//! A message is a 4-byte big-endian length, that many bytes of JSON, then
//! raw bytes (a snapshot's data, which would be four times its size as a
//! JSON array). JSON through openraft's serde: these bytes are never
//! stored, and both ends run the same build of openraft (the API version
//! is raised with openraft, and Hello refuses another).

use std::io;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::codec::invalid;
use crate::describe::QuorumInfo;
use crate::logic::sessions::{Heartbeat, Registration};
use crate::node::ProposeError;
use crate::types::{SnapshotMeta, TypeConfig, Vote};
use rill_metadata::MetadataRecord;

/// The Kafka API key of controller peer messages.
pub const PEER_API_KEY: i16 = 10_000;
/// Raised whenever the messages' shape changes (an openraft upgrade).
pub const PEER_API_VERSION: i16 = 0;

/// Who is calling whom, in which cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    /// The caller's cluster id, once it knows one.
    pub cluster_id: Option<String>,
    pub from: u64,
    /// The node the caller meant to reach: a quorum entry pointing at the
    /// wrong address is found here, not by Raft.
    pub to: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    Hello(Hello),
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A broker registers with the active controller (KIP-631).
    BrokerRegistration(Registration),
    /// A registered broker's heartbeat.
    BrokerHeartbeat(Heartbeat),
    /// The leader's commit index, confirmed by a quorum: a node that has
    /// applied it reads a state no older than the question.
    ReadIndex,
    /// The quorum as the node asked sees it (asked of the leader).
    DescribeQuorum,
    /// A batch of records for the leader to propose: a change made through
    /// a node that does not lead (KIP-590's forwarding, by records).
    Propose(Vec<MetadataRecord>),
    /// A whole snapshot; its data travels as the message's raw bytes.
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        #[serde(skip)]
        data: Vec<u8>,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Hello accepted: the answering node and its cluster id, if known.
    Welcome {
        node: u64,
        cluster_id: Option<String>,
    },
    /// Hello refused, in one sentence for the operator.
    Refused(String),
    Append(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    Snapshot(SnapshotResponse<TypeConfig>),
    /// `None` if the node asked does not lead (any more).
    ReadIndex(Option<u64>),
    Quorum(QuorumInfo),
    /// The index of a forwarded batch once applied on the leader.
    Proposed(Result<u64, ProposeError>),
    /// The broker epoch of a registration.
    BrokerRegistered(Result<i64, BrokerError>),
    BrokerHeartbeat(Result<BrokerStatus, BrokerError>),
    /// The request could not be answered (the node is stopping).
    Failed(String),
}

/// What a heartbeat answers a broker (BrokerHeartbeatResponse's fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerStatus {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    pub should_shut_down: bool,
}

/// A refused registration or heartbeat: the Kafka error code and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (error code {code})")]
pub struct BrokerError {
    pub code: i16,
    pub message: String,
}

impl PeerRequest {
    pub fn encode(&self) -> Vec<u8> {
        let raw = match self {
            PeerRequest::Snapshot { data, .. } => data.as_slice(),
            _ => &[],
        };
        encode(self, raw)
    }

    pub fn decode(bytes: &[u8]) -> io::Result<PeerRequest> {
        let (mut request, raw): (PeerRequest, &[u8]) = decode(bytes)?;
        if let PeerRequest::Snapshot { data, .. } = &mut request {
            *data = raw.to_vec();
        }
        Ok(request)
    }
}

impl PeerResponse {
    pub fn encode(&self) -> Vec<u8> {
        encode(self, &[])
    }

    pub fn decode(bytes: &[u8]) -> io::Result<PeerResponse> {
        decode(bytes).map(|(response, _)| response)
    }
}

fn encode(message: &impl Serialize, raw: &[u8]) -> Vec<u8> {
    // Plain data structures serialize into a Vec without fail.
    let json = serde_json::to_vec(message).expect("peer messages serialize");
    let mut bytes = Vec::with_capacity(4 + json.len() + raw.len());
    bytes.extend_from_slice(&(json.len() as u32).to_be_bytes());
    bytes.extend_from_slice(&json);
    bytes.extend_from_slice(raw);
    bytes
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> io::Result<(T, &'a [u8])> {
    let (len, rest) = bytes
        .split_first_chunk::<4>()
        .ok_or_else(|| invalid("a peer message shorter than its length"))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(invalid("a peer message cut short"));
    }
    let (json, raw) = rest.split_at(len);
    let message = serde_json::from_slice(json).map_err(invalid)?;
    Ok((message, raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{StoredMembership, log_id};

    #[test]
    fn a_snapshot_travels_as_raw_bytes() {
        let request = PeerRequest::Snapshot {
            vote: Vote::new_committed(3, 1),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 40)),
                last_membership: StoredMembership::default(),
            },
            data: vec![7; 1000],
        };
        let bytes = request.encode();
        assert!(bytes.len() < 1400, "{}", bytes.len());
        match PeerRequest::decode(&bytes).unwrap() {
            PeerRequest::Snapshot { vote, meta, data } => {
                assert_eq!(vote, Vote::new_committed(3, 1));
                assert_eq!(meta.last_log_id, Some(log_id(3, 40)));
                assert_eq!(data, vec![7; 1000]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_bytes_are_errors() {
        for bytes in [
            &b""[..],
            &[0, 0, 0, 9, b'{'],
            &[0, 0, 0, 1, b'x'],
            &[0xff; 8],
        ] {
            assert!(PeerRequest::decode(bytes).is_err());
            assert!(PeerResponse::decode(bytes).is_err());
        }
    }
}
