//! One controller node: its Raft opened on the node's raft directory, and
//! what the broker asks of it: propose a batch of records, follow the
//! applied state, catch up with the quorum, answer peers, stop.
//!
//! A quorum of one (`rill serve` with no cluster flags) elects itself as
//! soon as it starts, so it takes proposals within milliseconds of a
//! restart. A larger one reaches its peers through the [`Dialer`] the
//! broker gives it.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::{BasicNode, Config, SnapshotPolicy};
use rill_metadata::entry::ENTRY_PAYLOAD_BYTES_MAX;
use rill_metadata::{ClusterState, MetadataRecord};
use tokio::sync::watch;

use crate::codec::records_entry_len;
use crate::network::{Channel, Dialer, Network};
use crate::state_machine::Snapshot;
use crate::types::{RecordBatch, TypeConfig};
use crate::wire::{PeerRequest, PeerResponse};
use crate::{LogStore, Published, Raft, StateMachine};

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

/// One ReadIndex call to the leader during [`Node::catch_up`].
const CATCH_UP_CALL: Duration = Duration::from_secs(5);
/// Pause before asking again when there was no leader or no answer.
const CATCH_UP_RETRY: Duration = Duration::from_millis(200);

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
        "the controller quorum in {dir} has the voters {voters:?}, not {configured:?} as \
         configured for node {node_id}; start it with the node id and quorum that directory \
         was made with"
    )]
    OtherVoters {
        dir: PathBuf,
        node_id: i32,
        voters: Vec<u64>,
        configured: Vec<u64>,
    },
}

/// Why a proposal was not applied.
#[derive(Debug, thiserror::Error, serde::Serialize, serde::Deserialize)]
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
    /// The applied state, as the state machine publishes it.
    published: watch::Receiver<Published>,
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
        let voters = BTreeMap::from([(me, String::new())]);
        let node = Node::open(dir, node_id, &voters, Arc::new(NoPeers), config).await?;
        node.raft
            .wait(Some(LEADERSHIP_WAIT))
            .current_leader(me, "the lone voter leads")
            .await
            .map_err(raft_error)?;
        Ok(node)
    }

    /// Opens the raft directory `dir` of node `node_id`, one of `voters`
    /// (id → controller address), reaching the others through `dialer`. A
    /// new directory is made a member of that quorum: every voter may do
    /// this with the same voters (openraft's `initialize` is safe so), and
    /// one that starts late catches up from the leader. Returns at once;
    /// [`Node::catch_up`] waits for the quorum.
    pub async fn open<D: Dialer>(
        dir: &Path,
        node_id: i32,
        voters: &BTreeMap<u64, String>,
        dialer: Arc<D>,
        config: &NodeConfig,
    ) -> Result<Node, NodeError> {
        let me = voter_id(node_id)?;
        let storage = |source| NodeError::Storage {
            dir: dir.to_path_buf(),
            source,
        };
        let log = LogStore::open(dir).await.map_err(storage)?;
        let machine = StateMachine::open(dir, node_id).await.map_err(storage)?;
        let network = Network::new(dialer);
        let raft = Raft::new(me, raft_config(config)?, network, log, machine.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        let node = Node {
            raft,
            published: machine.subscribe(),
        };
        let configured: Vec<u64> = voters.keys().copied().collect();
        let initialized = node.raft.is_initialized().await.map_err(raft_error)?;
        if !initialized {
            let members: BTreeMap<u64, BasicNode> = voters
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            node.raft.initialize(members).await.map_err(raft_error)?;
            return Ok(node);
        }
        // A directory made before: its stored membership is loaded by now.
        let stored: Vec<u64> = node
            .raft
            .metrics()
            .borrow_watched()
            .membership_config
            .membership()
            .voter_ids()
            .collect();
        if stored != configured {
            node.shutdown().await;
            return Err(NodeError::OtherVoters {
                dir: dir.to_path_buf(),
                node_id,
                voters: stored,
                configured,
            });
        }
        Ok(node)
    }

    /// Waits until this node has applied everything the quorum committed
    /// before the call (a read index from the leader, asked through
    /// `dialer` when that is another node), so what it then reads of the
    /// state is not older than the call. Waits for a leader as long as it
    /// takes; a caller bounds it if it must.
    pub async fn catch_up<D: Dialer>(&self, dialer: &D) -> u64 {
        let me = self.raft.metrics().borrow_watched().id;
        let mut metrics = self.raft.metrics();
        loop {
            let leader = metrics.borrow_watched().current_leader;
            let index = match leader {
                Some(leader) if leader == me => self.read_index().await,
                Some(leader) => {
                    let mut channel = dialer.dial(leader);
                    match channel.call(PeerRequest::ReadIndex, CATCH_UP_CALL).await {
                        Ok(PeerResponse::ReadIndex(index)) => index,
                        _ => None,
                    }
                }
                None => None,
            };
            if let Some(index) = index {
                let applied = self
                    .raft
                    .wait(None)
                    .applied_index_at_least(Some(index), "caught up with the quorum")
                    .await;
                if applied.is_ok() {
                    return index;
                }
            }
            // No leader yet, or it changed: wait for news, or retry soon.
            let _ = tokio::time::timeout(CATCH_UP_RETRY, metrics.changed()).await;
        }
    }

    /// Answers a peer's Raft message (Hello is the connection's business).
    pub async fn answer(&self, request: PeerRequest) -> PeerResponse {
        let failed = |e: &dyn std::fmt::Display| PeerResponse::Failed(e.to_string());
        match request {
            PeerRequest::Append(rpc) => match self.raft.append_entries(rpc).await {
                Ok(response) => PeerResponse::Append(response),
                Err(e) => failed(&e),
            },
            PeerRequest::Vote(rpc) => match self.raft.vote(rpc).await {
                Ok(response) => PeerResponse::Vote(response),
                Err(e) => failed(&e),
            },
            PeerRequest::PreVote(rpc) => match self.raft.pre_vote(rpc).await {
                Ok(response) => PeerResponse::Vote(response),
                Err(e) => failed(&e),
            },
            PeerRequest::TransferLeader(rpc) => match self.raft.handle_transfer_leader(rpc).await {
                Ok(response) => PeerResponse::TransferLeader(response),
                Err(e) => failed(&e),
            },
            PeerRequest::Snapshot { vote, meta, data } => {
                let snapshot = Snapshot {
                    meta,
                    snapshot: data,
                };
                match self.raft.install_full_snapshot(vote, snapshot).await {
                    Ok(response) => PeerResponse::Snapshot(response),
                    Err(e) => failed(&e),
                }
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(self.read_index().await),
            PeerRequest::DescribeQuorum => PeerResponse::Quorum(self.describe()),
            PeerRequest::Propose(records) => PeerResponse::Proposed(self.propose(records).await),
            PeerRequest::Hello(_) => PeerResponse::Failed("Hello once, first".to_string()),
            PeerRequest::BrokerRegistration(_) | PeerRequest::BrokerHeartbeat(_) => {
                PeerResponse::Failed("broker requests go to the controller task".to_string())
            }
        }
    }

    /// If this node leads a quorum of several, hands the leadership to the
    /// voter whose log it has matched furthest, and waits at most `wait`
    /// for another node to lead: a clean stop of the active controller then
    /// costs the quorum no election timeout.
    pub async fn hand_over(&self, wait: Duration) {
        let metrics = self.raft.metrics().borrow_watched().clone();
        let me = metrics.id;
        if metrics.current_leader != Some(me) {
            return;
        }
        let Some(replication) = metrics.replication else {
            return;
        };
        let next = replication
            .iter()
            .filter(|(id, _)| **id != me)
            .max_by_key(|(_, matched)| matched.map(|id| id.index))
            .map(|(id, _)| *id);
        let Some(next) = next else {
            return;
        };
        if self.raft.trigger().transfer_leader(next).await.is_err() {
            return;
        }
        let handed = self
            .raft
            .wait(Some(wait))
            .metrics(
                |m| m.current_leader.is_some_and(|leader| leader != me),
                "another node leads",
            )
            .await;
        match handed {
            Ok(_) => tracing::info!(to = next, "handed the quorum's leadership over"),
            Err(error) => tracing::warn!(%error, "the quorum's leadership was not handed over"),
        }
    }

    /// This node's Raft metrics now.
    pub(crate) fn metrics_now(&self) -> openraft::RaftMetrics<TypeConfig> {
        self.raft.metrics().borrow_watched().clone()
    }

    /// The node that leads the quorum now, as far as this node knows.
    pub fn leader(&self) -> Option<u64> {
        self.raft.metrics().borrow_watched().current_leader
    }

    /// The commit index a quorum confirms this node still leads at, if it
    /// does: reads of a state applied up to it are not stale.
    async fn read_index(&self) -> Option<u64> {
        let read = self
            .raft
            .ensure_linearizable(openraft::raft::ReadPolicy::ReadIndex)
            .await;
        read.ok().map(|read| read.index())
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

    /// Waits until this node has applied the entry at `index`, at most
    /// `wait`; whether it has.
    pub async fn wait_applied(&self, index: u64, wait: Duration) -> bool {
        self.raft
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "applied here")
            .await
            .is_ok()
    }

    /// The applied state now and from now on.
    pub fn subscribe(&self) -> watch::Receiver<Published> {
        self.published.clone()
    }

    /// The state as applied here now.
    pub fn image(&self) -> Arc<ClusterState> {
        self.published.borrow().image.clone()
    }

    /// The index of the last entry applied here (0 before any).
    pub fn applied_index(&self) -> u64 {
        self.published.borrow().applied.map_or(0, |id| id.index)
    }

    /// Stops the Raft. Everything it acknowledged is already on disk.
    pub async fn shutdown(&self) {
        if let Err(error) = self.raft.shutdown().await {
            tracing::warn!(%error, "the controller's raft did not stop cleanly");
        }
    }
}

pub(crate) fn voter_id(node_id: i32) -> Result<u64, NodeError> {
    u64::try_from(node_id).map_err(|_| NodeError::Raft(format!("node id {node_id} is negative")))
}

pub(crate) fn raft_config(config: &NodeConfig) -> Result<Arc<Config>, NodeError> {
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

/// The peers of a lone voter: there are none, and openraft asks for a
/// channel only to reach another voter.
pub(crate) struct NoPeers;

pub(crate) struct NoPeer;

impl Dialer for NoPeers {
    type Channel = NoPeer;

    fn dial(&self, _target: u64) -> NoPeer {
        NoPeer
    }
}

impl Channel for NoPeer {
    async fn call(
        &mut self,
        _request: PeerRequest,
        _timeout: Duration,
    ) -> io::Result<PeerResponse> {
        Err(io::Error::other("a quorum of one has no peers"))
    }
}
