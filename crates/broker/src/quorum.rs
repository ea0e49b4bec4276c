//! The node's controller quorum, opened for the broker: `meta.properties`
//! checked, a metadata log from before the quorum migrated into it, and a
//! new cluster given its id. Everything after that (proposals, the applied
//! state) goes through [`rill_controller::Node`].
//!
//! On disk, under `<data_dir>/__cluster_metadata/`: `raft/` is the quorum's
//! (docs/FORMAT.md, "Controller Raft log"); `metadata.log.pre-raft` is the
//! log a migration started from, kept for a downgrade or a post-mortem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_controller::active::ActiveController;
use rill_controller::describe::QuorumInfo;
use rill_controller::logic::sessions::{Heartbeat, Registration};
use rill_controller::network::{Channel, Dialer};
use rill_controller::wire::{BrokerError, BrokerStatus, PeerRequest, PeerResponse};
use rill_controller::{Node, NodeConfig, NodeError, ProposeError};
use rill_metadata::{MetadataRecord, MetadataStore, snapshot};
use rill_protocol::error_code;
use tokio::sync::watch;

use crate::config::{BrokerConfig, ConfigError};
use crate::controller_listener;
use crate::meta_properties::{self, MetaError};
use crate::peers::{Identity, TcpChannel, TcpDialer};

const METADATA_DIR: &str = "__cluster_metadata";
const RAFT_DIR: &str = "raft";
const OLD_LOG: &str = "metadata.log";
const OLD_LOG_KEPT: &str = "metadata.log.pre-raft";

#[derive(Debug, thiserror::Error)]
pub enum QuorumError {
    #[error(transparent)]
    MetaProperties(#[from] MetaError),
    #[error(transparent)]
    OldLog(#[from] rill_metadata::StoreError),
    #[error("cannot move the metadata log {path} into the controller quorum: {source}")]
    Migration {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Node(#[from] NodeError),
    #[error("cannot record the new cluster's id: {0}")]
    ClusterId(ProposeError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot listen for controllers on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
    #[error(
        "node {node_id} refuses to join the controller quorum: {why}; start it with a data \
         directory of that quorum's cluster, or with an empty one"
    )]
    Refused { node_id: i32, why: String },
    #[error(
        "the data directory {0} is from before the controller quorum, and only a quorum of one \
         can take it over; start this node alone once (no --controller-quorum), then copy its \
         topics, or start the quorum with empty directories"
    )]
    OldLogInQuorum(PathBuf),
}

/// The node's place in the controller quorum, open.
pub struct Quorum {
    pub node: Node,
    pub cluster_id: String,
    node_id: u64,
    /// This node's controller task (active while the node leads).
    controller: ActiveController,
    /// Reaches the other voters; none in a quorum of one.
    dialer: Option<Arc<TcpDialer>>,
    /// The channel to the node that led at the last broker request.
    to_leader: tokio::sync::Mutex<Option<(u64, TcpChannel)>>,
    /// Stops the controller listener and the controller task.
    stop: watch::Sender<bool>,
}

/// Longest wait at a clean stop for another voter to take the leadership.
const HAND_OVER_WAIT: Duration = Duration::from_secs(3);

/// One broker request to the active controller.
const BROKER_CALL: Duration = Duration::from_secs(5);

impl Quorum {
    /// Hands the leadership over if this node has it, stops the listener
    /// and the controller task, then the Raft.
    pub async fn shutdown(&self) {
        if self.dialer.is_some() {
            self.node.hand_over(HAND_OVER_WAIT).await;
        }
        self.stop.send_replace(true);
        self.node.shutdown().await;
    }

    /// Registers this node's broker with the active controller, wherever
    /// it is: the broker epoch.
    pub async fn register(&self, registration: Registration) -> Result<i64, BrokerError> {
        if let Some(leader) = self.remote_leader() {
            let request = PeerRequest::BrokerRegistration(registration);
            return match self.call(leader, request).await? {
                PeerResponse::BrokerRegistered(answer) => answer,
                other => Err(unexpected(other)),
            };
        }
        self.controller.register(registration).await
    }

    /// Sends this node's broker heartbeat to the active controller.
    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<BrokerStatus, BrokerError> {
        if let Some(leader) = self.remote_leader() {
            return match self
                .call(leader, PeerRequest::BrokerHeartbeat(heartbeat))
                .await?
            {
                PeerResponse::BrokerHeartbeat(answer) => answer,
                other => Err(unexpected(other)),
            };
        }
        self.controller.heartbeat(heartbeat).await
    }

    /// Proposes `records` to the quorum through its leader, wherever it
    /// is, and returns once this node has applied them too, so that what
    /// the caller reads next includes its own change.
    pub async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, ProposeError> {
        let Some(leader) = self.remote_leader() else {
            return self.node.propose(records).await;
        };
        let index = match self.call(leader, PeerRequest::Propose(records)).await {
            Ok(PeerResponse::Proposed(answer)) => answer?,
            Ok(other) => return Err(ProposeError::Stopped(format!("{other:?}"))),
            Err(error) => {
                // The leader is away or gone: the client retries once a
                // new one is known.
                tracing::debug!(%error, "cannot forward a metadata change");
                return Err(ProposeError::NotLeader {
                    leader: Some(leader),
                });
            }
        };
        if self.node.wait_applied(index, BROKER_CALL).await {
            Ok(index)
        } else {
            Err(ProposeError::Stopped(format!(
                "the change at index {index} was not applied here in time"
            )))
        }
    }

    /// The quorum as its leader sees it, or as this node does when the
    /// leader cannot be asked.
    pub async fn describe(&self) -> QuorumInfo {
        if let Some(leader) = self.remote_leader()
            && let Ok(PeerResponse::Quorum(info)) =
                self.call(leader, PeerRequest::DescribeQuorum).await
        {
            return info;
        }
        self.node.describe()
    }

    /// The leader, if it is another node; this node's own controller task
    /// answers otherwise (and says NOT_CONTROLLER while nobody leads).
    fn remote_leader(&self) -> Option<u64> {
        self.node.leader().filter(|leader| *leader != self.node_id)
    }

    async fn call(&self, leader: u64, request: PeerRequest) -> Result<PeerResponse, BrokerError> {
        let Some(dialer) = &self.dialer else {
            return Err(unreachable(
                leader,
                "a quorum of one has no peers".to_string(),
            ));
        };
        let mut cached = self.to_leader.lock().await;
        if cached.as_ref().is_none_or(|(to, _)| *to != leader) {
            *cached = Some((leader, dialer.dial(leader)));
        }
        let (_, channel) = cached.as_mut().expect("set above");
        channel
            .call(request, BROKER_CALL)
            .await
            .map_err(|e| unreachable(leader, e.to_string()))
    }
}

fn unreachable(leader: u64, why: String) -> BrokerError {
    BrokerError {
        code: error_code::NOT_CONTROLLER,
        message: format!("cannot reach the active controller, node {leader}: {why}"),
    }
}

fn unexpected(answer: PeerResponse) -> BrokerError {
    BrokerError {
        code: error_code::UNKNOWN_SERVER_ERROR,
        message: format!("the controller answered {answer:?}"),
    }
}

/// Opens the quorum of the data directory in `config` and returns it once
/// the cluster has an id and this node has caught up with its metadata.
pub async fn open(config: &BrokerConfig) -> Result<Quorum, QuorumError> {
    let data_dir = &config.data_dir;
    let stored = meta_properties::read(data_dir)?;
    // Before any replay: the replay maps old partitions to this node id.
    meta_properties::check_node(data_dir, stored.as_ref(), config.node_id)?;
    let dir = data_dir.join(METADATA_DIR);
    let raft_dir = dir.join(RAFT_DIR);
    let voters = config.voters()?;
    let node_config = NodeConfig {
        election_timeout_ms: config.controller_election_timeout_ms,
        ..NodeConfig::default()
    };
    if !raft_dir.exists() && dir.join(OLD_LOG).exists() {
        if voters.len() > 1 {
            return Err(QuorumError::OldLogInQuorum(data_dir.clone()));
        }
        migrate(&dir, &raft_dir, config.node_id).await?;
    }
    if raft_dir.exists() && dir.join(OLD_LOG).exists() {
        // The migration is whole; the old log is kept, out of the way.
        keep_old_log(&dir)?;
    }
    let (stop_tx, stop) = watch::channel(false);
    let mut peers = None;
    let node = match config.controller_address()? {
        None => {
            let node = Node::open_single(&raft_dir, config.node_id, &node_config).await?;
            // A lone voter leads, so this proposes the id of a new cluster
            // (or finds it) at once; no peer can refuse it.
            let no_peers = watch::channel(None);
            if let Err(error) = await_cluster_id(&node, config.node_id, no_peers.1).await {
                node.shutdown().await;
                return Err(error);
            }
            node
        }
        Some(address) => {
            let stored_id = stored.as_ref().map(|meta| meta.cluster_id.clone());
            let (node, identity, dialer) = open_with_peers(
                config,
                &node_config,
                &raft_dir,
                &address,
                voters,
                stored_id,
                stop.clone(),
            )
            .await?;
            peers = Some((identity, dialer));
            node
        }
    };
    // Both ways above return only once the applied metadata has it.
    let cluster_id = node.image().cluster_id.clone().unwrap_or_default();
    let controller = ActiveController::spawn(
        node.clone(),
        config.node_id,
        cluster_id.clone(),
        config.broker_session_timeout_ms,
        stop.clone(),
    );
    let dialer = peers.map(|(identity, dialer)| {
        let _ = identity.controller.set(controller.clone());
        dialer
    });
    let quorum = Quorum {
        node,
        cluster_id: cluster_id.clone(),
        node_id: config.node_id as u64,
        controller,
        dialer,
        to_leader: tokio::sync::Mutex::new(None),
        stop: stop_tx,
    };
    if let Err(error) = meta_properties::settle(data_dir, stored, config.node_id, &cluster_id) {
        quorum.shutdown().await;
        return Err(error.into());
    }
    Ok(quorum)
}

/// Opens a node of a quorum reached over the network: binds its controller
/// listener, opens the Raft, then waits for the cluster's id (proposing one
/// if it leads a new quorum) and for the committed metadata.
async fn open_with_peers(
    config: &BrokerConfig,
    node_config: &NodeConfig,
    raft_dir: &Path,
    address: &str,
    voters: BTreeMap<u64, String>,
    stored_cluster_id: Option<String>,
    stop: watch::Receiver<bool>,
) -> Result<(Node, Arc<Identity>, Arc<TcpDialer>), QuorumError> {
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .map_err(|source| QuorumError::Listen {
            address: address.to_string(),
            source,
        })?;
    let (cluster_id, known) = watch::channel(stored_cluster_id);
    let identity = Arc::new(Identity {
        node_id: config.node_id as u64,
        cluster_id: known,
        controller: Default::default(),
    });
    let dialer = Arc::new(TcpDialer::new(identity.clone(), voters.clone()));
    let node = Node::open(
        raft_dir,
        config.node_id,
        &voters,
        dialer.clone(),
        node_config,
    )
    .await?;
    tokio::spawn(controller_listener::serve(
        listener,
        node.clone(),
        identity.clone(),
        stop,
    ));
    let formed = await_cluster_id(&node, config.node_id, dialer.refusals()).await;
    let id = match formed {
        Ok(id) => id,
        Err(error) => {
            node.shutdown().await;
            return Err(error);
        }
    };
    cluster_id.send_replace(Some(id));
    let index = node.catch_up(&*dialer).await;
    tracing::info!(index, "caught up with the controller quorum's metadata");
    Ok((node, identity, dialer))
}

/// How often the wait for a quorum says it is still waiting.
const WAITING_NOTE: Duration = Duration::from_secs(10);

/// Waits until the applied metadata has a cluster id; the first leader of
/// a new quorum proposes it. Stops at the first refusal of a peer.
async fn await_cluster_id(
    node: &Node,
    node_id: i32,
    mut refusals: watch::Receiver<Option<String>>,
) -> Result<String, QuorumError> {
    let mut published = node.subscribe();
    let mut noted = Instant::now();
    loop {
        if let Some(id) = published.borrow().image.cluster_id.clone() {
            return Ok(id);
        }
        if let Some(why) = refusals.borrow().clone() {
            return Err(QuorumError::Refused { node_id, why });
        }
        if node.leader() == Some(node_id as u64) {
            let created = MetadataRecord::ClusterCreated {
                cluster_id: meta_properties::random_id(),
            };
            match node.propose(vec![created]).await {
                // Applied (the loop reads it), or another leader's is.
                Ok(_) | Err(ProposeError::Refused(_) | ProposeError::NotLeader { .. }) => continue,
                Err(error) => return Err(QuorumError::ClusterId(error)),
            }
        }
        if noted.elapsed() >= WAITING_NOTE {
            tracing::info!("waiting for a majority of the controller quorum to form the cluster");
            noted = Instant::now();
        }
        // Leadership changes are not on these channels: look again soon.
        tokio::select! {
            _ = published.changed() => {}
            _ = refusals.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Replays the old metadata log (cutting a torn tail, refusing damage as it
/// always did) and makes the raft directory from its state.
async fn migrate(dir: &Path, raft_dir: &Path, node_id: i32) -> Result<(), QuorumError> {
    let old = MetadataStore::open(dir, node_id)?;
    let records = snapshot::records(old.state());
    drop(old);
    let topics = records.len();
    rill_controller::migrate::migrate(raft_dir, node_id, records)
        .await
        .map_err(|source| QuorumError::Migration {
            path: dir.join(OLD_LOG),
            source,
        })?;
    tracing::info!(
        records = topics,
        "moved the metadata log into a controller quorum of one; the old log is kept as {OLD_LOG_KEPT}"
    );
    Ok(())
}

fn keep_old_log(dir: &Path) -> Result<(), QuorumError> {
    let from = dir.join(OLD_LOG);
    let moved = std::fs::rename(&from, dir.join(OLD_LOG_KEPT))
        .and_then(|()| rill_metadata::store::sync_dir(dir));
    moved.map_err(|source| QuorumError::Migration { path: from, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> BrokerConfig {
        BrokerConfig {
            data_dir: dir.to_path_buf(),
            ..Default::default()
        }
    }

    /// A data directory of a broker from before the quorum (its metadata
    /// log written by `MetadataStore`) opens with every topic, keeps its
    /// cluster id, takes new changes, and opens again from the quorum.
    #[tokio::test]
    async fn a_pre_quorum_metadata_log_moves_into_the_quorum() {
        let dir = tempfile::tempdir().unwrap();
        let metadata_dir = dir.path().join(METADATA_DIR);
        let mut old = MetadataStore::open(&metadata_dir, 0).unwrap();
        let topic = |name: &str, n: u8| MetadataRecord::TopicCreated {
            name: name.to_string(),
            id: rill_metadata::TopicId([n; 16]),
            partitions: 2,
            configs: Default::default(),
            assignments: Vec::new(),
        };
        old.append(&[MetadataRecord::ClusterCreated {
            cluster_id: "old-cluster".to_string(),
        }])
        .unwrap();
        old.append(&[topic("a", 1), topic("b", 2)]).unwrap();
        old.append(&[MetadataRecord::ProducerIdsAllocated {
            broker: 0,
            next: 2000,
        }])
        .unwrap();
        let before = snapshot::records(old.state());
        drop(old);

        let quorum = open(&config(dir.path())).await.unwrap();
        let (node, cluster_id) = (&quorum.node, quorum.cluster_id.clone());
        assert_eq!(cluster_id, "old-cluster");
        let image = node.subscribe().borrow().image.clone();
        assert_eq!(snapshot::records(&image), before);
        assert!(!metadata_dir.join(OLD_LOG).exists());
        assert!(metadata_dir.join(OLD_LOG_KEPT).exists());
        let index = node.propose(vec![topic("c", 3)]).await.unwrap();
        assert!(index > 1, "after the migrated snapshot: {index}");
        quorum.shutdown().await;
        drop(quorum);

        let quorum = open(&config(dir.path())).await.unwrap();
        let (node, cluster_id) = (&quorum.node, quorum.cluster_id.clone());
        assert_eq!(cluster_id, "old-cluster");
        let image = node.subscribe().borrow().image.clone();
        assert_eq!(image.topics().count(), 3);
        assert_eq!(image.next_producer_id, 2000);
        quorum.shutdown().await;
    }

    /// A crash after the raft directory was renamed into place, before the
    /// old log was moved aside: the quorum's state wins, the old log is set
    /// aside.
    #[tokio::test]
    async fn a_migration_cut_before_the_old_log_moved_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let quorum = open(&config(dir.path())).await.unwrap();
        let cluster_id = quorum.cluster_id.clone();
        quorum.shutdown().await;
        drop(quorum);
        let metadata_dir = dir.path().join(METADATA_DIR);
        let mut stale = MetadataStore::open(&metadata_dir, 0).unwrap();
        stale
            .append(&[MetadataRecord::ClusterCreated {
                cluster_id: "stale".to_string(),
            }])
            .unwrap();
        drop(stale);
        let quorum = open(&config(dir.path())).await.unwrap();
        assert_eq!(quorum.cluster_id, cluster_id);
        assert!(metadata_dir.join(OLD_LOG_KEPT).exists());
        quorum.shutdown().await;
    }
}
