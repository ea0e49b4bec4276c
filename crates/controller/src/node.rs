//! One controller node: its Raft opened on the node's raft directory, and
//! the three things the broker asks of it: propose a batch of records,
//! follow the applied state, stop.
//!
//! Today a node is a lone voter (a quorum of one, `rill serve` with no
//! cluster flags); peers come with the controller listener. A lone voter
//! elects itself as soon as it starts, so it takes proposals within
//! milliseconds of a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{RPCError, Unreachable};
use openraft::{BasicNode, Config, RaftNetworkFactory, SnapshotPolicy};
use rill_metadata::MetadataRecord;
use rill_metadata::entry::ENTRY_PAYLOAD_BYTES_MAX;
use tokio::sync::watch;

use crate::codec::records_entry_len;
use crate::durable;
use crate::state_machine::Snapshot;
use crate::types::{
    Membership, RecordBatch, SnapshotMeta, StoredMembership, TypeConfig, Vote, log_id,
};
use crate::{LogStore, Published, Raft, StateMachine, snapshot_store};

/// How a node's Raft is tuned.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// A follower that hears no leader for this long (to twice this) starts
    /// an election (KRaft's `controller.quorum.election.timeout.ms`).
    pub election_timeout_ms: u64,
    /// A snapshot is taken after this many entries since the last.
    pub snapshot_entries: u64,
}

impl Default for NodeConfig {
    fn default() -> NodeConfig {
        NodeConfig {
            election_timeout_ms: 1000,
            snapshot_entries: 4096,
        }
    }
}

/// How long a lone voter may take to lead after its start. It elects
/// itself at once (milliseconds, most of it the first fsync of its vote);
/// this bounds a broken disk or runtime, not a normal start.
const LEADERSHIP_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("the controller's raft directory {dir}: {source}")]
    Storage { dir: PathBuf, source: io::Error },
    #[error("the controller quorum did not start: {0}")]
    Raft(String),
    #[error(
        "the controller quorum in {dir} has the voters {voters:?}, and this node ({node_id}) is \
         not the only one; start it with the node id and quorum that directory was made with"
    )]
    OtherVoters {
        dir: PathBuf,
        node_id: i32,
        voters: Vec<u64>,
    },
}

/// Why a proposal was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// Another node leads, or none does now: the caller may retry there or
    /// later. Nothing was appended.
    #[error("this node is not the active controller")]
    NotLeader { leader: Option<u64> },
    /// Appended and committed, but the batch did not apply to the state;
    /// it changed nothing, on every node alike.
    #[error("metadata change refused: {0}")]
    Refused(String),
    #[error("metadata change of {0} bytes is over the {ENTRY_PAYLOAD_BYTES_MAX}-byte limit")]
    TooLarge(usize),
    /// The quorum stopped (its storage failed, or it was shut down).
    #[error("the controller quorum stopped: {0}")]
    Stopped(String),
}

/// A started node. Clones share it.
#[derive(Clone)]
pub struct Node {
    raft: Raft,
    machine: StateMachine,
}

impl Node {
    /// Opens the raft directory `dir` of node `node_id` as a lone voter,
    /// making the quorum of one if the directory is new, and returns once
    /// the node leads.
    pub async fn open_single(
        dir: &Path,
        node_id: i32,
        config: &NodeConfig,
    ) -> Result<Node, NodeError> {
        let me = voter_id(node_id)?;
        let storage = |source| NodeError::Storage {
            dir: dir.to_path_buf(),
            source,
        };
        let log = LogStore::open(dir).await.map_err(storage)?;
        let machine = StateMachine::open(dir, node_id).await.map_err(storage)?;
        let raft = Raft::new(me, raft_config(config)?, NoPeers, log, machine.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let node = Node { raft, machine };
        let initialized = node.raft.is_initialized().await.map_err(raft_error)?;
        if !initialized {
            let voters = BTreeMap::from([(me, BasicNode::default())]);
            node.raft.initialize(voters).await.map_err(raft_error)?;
        }
        // A directory made before: its stored membership is loaded by now.
        let voters: Vec<u64> = node
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if initialized && voters != [me] {
            node.shutdown().await;
            return Err(NodeError::OtherVoters {
                dir: dir.to_path_buf(),
                node_id,
                voters,
            });
        }
        node.raft
            .wait(Some(LEADERSHIP_WAIT))
            .current_leader(me, "the lone voter leads")
            .await
            .map_err(raft_error)?;
        Ok(node)
    }

    /// Appends `records` as one batch and returns its log index once it is
    /// committed and applied here. The whole batch applies or none of it.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let len = records_entry_len(&records);
        if len > ENTRY_PAYLOAD_BYTES_MAX {
            return Err(ProposeError::TooLarge(len));
        }
        match self.raft.client_write(RecordBatch(records)).await {
            Ok(response) => match response.data.refused {
                None => Ok(response.data.index),
                Some(reason) => Err(ProposeError::Refused(reason)),
            },
            Err(e) => Err(match e.forward_to_leader() {
                Some(forward) => ProposeError::NotLeader {
                    leader: forward.leader_id,
                },
                None => ProposeError::Stopped(e.to_string()),
            }),
        }
    }

    /// The applied state now and from now on.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.machine.subscribe()
    }

    /// Stops the Raft. Everything it acknowledged is already on disk.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "the controller's raft did not stop cleanly");
        }
    }
}

/// Makes the raft directory `dir` of a lone voter `node_id` from the state
/// of a metadata log written before the quorum existed: a snapshot at log
/// id (term 1, index 1) holding `records`, as if the voter had led term 1
/// and written the state as its first entry. Built beside `dir` and renamed
/// into place, so a crash leaves no directory or a whole one.
pub async fn migrate(dir: &Path, node_id: i32, records: Vec<MetadataRecord>) -> io::Result<()> {
    let me = voter_id(node_id).map_err(io::Error::other)?;
    let building = dir.with_extension("migrating");
    if building.exists() {
        // Left by a crash during an earlier migration.
        std::fs::remove_dir_all(&building)?;
    }
    durable::create_dir_durably(&building)?;
    {
        let log = LogStore::open(&building).await?;
        let machine = StateMachine::open(&building, node_id).await?;
        let config = raft_config(&NodeConfig::default()).map_err(io::Error::other)?;
        let raft = Raft::new(me, config, NoPeers, log, machine)
            .await
            .map_err(io::Error::other)?;
        let membership = Membership::new(
            vec![BTreeSet::from([me])],
            BTreeMap::from([(me, BasicNode::default())]),
        )
        .map_err(io::Error::other)?;
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(1, 1)),
            last_membership: StoredMembership::new(Some(log_id(1, 1)), membership),
        };
        let snapshot = Snapshot {
            snapshot: snapshot_store::encode(&meta, &records)?,
            meta,
        };
        raft.install_full_snapshot(Vote::new_committed(1, me), snapshot)
            .await
            .map_err(io::Error::other)?;
        raft.shutdown().await.map_err(io::Error::other)?;
    }
    std::fs::rename(&building, dir)?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    durable::sync_dir(parent)?;
    Ok(())
}

fn voter_id(node_id: i32) -> Result<u64, NodeError> {
    u64::try_from(node_id).map_err(|_| NodeError::Raft(format!("node id {node_id} is negative")))
}

fn raft_config(config: &NodeConfig) -> Result<Arc<Config>, NodeError> {
    let election = config.election_timeout_ms.max(10);
    let config = Config {
        cluster_name: "rill".to_string(),
        heartbeat_interval: (election / 4).max(1),
        election_timeout_min: election,
        election_timeout_max: election * 2,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_entries.max(1)),
        // A peer slightly behind the snapshot catches up by entries.
        max_in_snapshot_log_to_keep: (config.snapshot_entries / 4).max(1),
        // A node healed after a cut must not raise every term (KIP-996).
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    config
        .validate()
        .map(Arc::new)
        .map_err(|e| NodeError::Raft(e.to_string()))
}

fn raft_error(error: impl std::fmt::Display) -> NodeError {
    NodeError::Raft(error.to_string())
}

/// The network of a lone voter: there is nobody to dial, and openraft asks
/// for a client only to replicate to or ask a vote of another voter.
struct NoPeers;

struct NoPeer;

impl RaftNetworkFactory<TypeConfig> for NoPeers {
    type Network = NoPeer;

    async fn new_client(&mut self, _target: u64, _node: &BasicNode) -> NoPeer {
        NoPeer
    }
}

fn no_peer() -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&io::Error::other(
        "a quorum of one has no peers",
    )))
}

impl openraft::RaftNetworkV2<TypeConfig> for NoPeer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        _rpc: openraft::raft::AppendEntriesRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(no_peer())
    }

    async fn vote(
        &mut self,
        _rpc: openraft::raft::VoteRequest<TypeConfig>,
        _option: openraft::network::RPCOption,
    ) -> Result<openraft::raft::VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        Err(no_peer())
    }

    async fn full_snapshot(
        &mut self,
        _vote: Vote,
        _snapshot: Snapshot,
        _cancel: impl Future<Output = openraft::errors::ReplicationClosed>
        + openraft::OptionalSend
        + 'static,
        _option: openraft::network::RPCOption,
    ) -> Result<
        openraft::raft::SnapshotResponse<TypeConfig>,
        openraft::errors::StreamingError<TypeConfig>,
    > {
        Err(openraft::errors::StreamingError::Unreachable(
            Unreachable::new(&io::Error::other("a quorum of one has no peers")),
        ))
    }
}
