//! Three controller Rafts in one process, on disk stores, over an in-memory
//! network that can cut nodes off: a leader is elected, record batches
//! replicate and apply to equal states, the leader restarts from its files,
//! and a node cut off while the others purge their logs catches up by
//! snapshot.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::alias::{SnapshotOf, VoteOf};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogReader, RaftLogStorage};
use openraft::{
    BasicNode, Config, OptionalSend, RaftNetworkFactory, RaftNetworkV2, SnapshotPolicy,
};
use rill_controller::{Applied, LogStore, Raft, RecordBatch, StateMachine, TypeConfig};
use rill_metadata::{MetadataRecord, TopicId, snapshot};

/// The nodes reachable in the test, and those cut off.
#[derive(Clone, Default)]
struct Router {
    rafts: Arc<Mutex<HashMap<u64, Raft>>>,
    cut: Arc<Mutex<BTreeSet<u64>>>,
}

impl Router {
    fn raft(&self, id: u64) -> Raft {
        self.rafts.lock().unwrap()[&id].clone()
    }

    fn cut_off(&self, id: u64) {
        self.cut.lock().unwrap().insert(id);
    }

    fn heal(&self) {
        self.cut.lock().unwrap().clear();
    }
}

/// One node's way to its peers.
struct Factory {
    router: Router,
    me: u64,
}

struct Peer {
    router: Router,
    from: u64,
    to: u64,
}

impl Peer {
    fn raft(&self) -> Result<Raft, Unreachable<TypeConfig>> {
        let cut = self.router.cut.lock().unwrap();
        if cut.contains(&self.from) || cut.contains(&self.to) {
            return Err(Unreachable::new(&io::Error::other("cut off")));
        }
        let rafts = self.router.rafts.lock().unwrap();
        rafts
            .get(&self.to)
            .cloned()
            .ok_or_else(|| Unreachable::new(&io::Error::other("down")))
    }
}

fn unreachable(e: impl std::error::Error + 'static) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkFactory<TypeConfig> for Factory {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, _node: &BasicNode) -> Peer {
        assert_ne!(target, self.me, "a node never dials itself");
        Peer {
            router: self.router.clone(),
            from: self.me,
            to: target,
        }
    }
}

impl RaftNetworkV2<TypeConfig> for Peer {
    type SnapshotData = Vec<u8>;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft()?.append_entries(rpc).await.map_err(unreachable)
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft()?.vote(rpc).await.map_err(unreachable)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft()?.pre_vote(rpc).await.map_err(unreachable)
    }

    async fn transfer_leader(
        &mut self,
        rpc: TransferLeaderRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.raft()?
            .handle_transfer_leader(rpc)
            .await
            .map_err(unreachable)
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, Vec<u8>>,
        _cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        _option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let raft = self.raft()?;
        raft.install_full_snapshot(vote, snapshot)
            .await
            .map_err(|e| StreamingError::Unreachable(Unreachable::new(&e)))
    }
}

struct Cluster {
    _dir: tempfile::TempDir,
    root: PathBuf,
    router: Router,
    config: Arc<Config>,
    machines: BTreeMap<u64, StateMachine>,
}

const WAIT: Option<Duration> = Some(Duration::from_secs(20));

impl Cluster {
    /// Three nodes, started and initialized, with a leader.
    async fn start() -> (Cluster, u64) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
            max_in_snapshot_log_to_keep: 5,
            enable_pre_vote: Some(true),
            ..Default::default()
        };
        let mut cluster = Cluster {
            root: dir.path().to_path_buf(),
            _dir: dir,
            router: Router::default(),
            config: Arc::new(config.validate().unwrap()),
            machines: BTreeMap::new(),
        };
        let mut members = BTreeMap::new();
        for id in 1..=3 {
            cluster.start_node(id).await;
            members.insert(id, BasicNode::new(format!("node-{id}")));
        }
        cluster.router.raft(1).initialize(members).await.unwrap();
        let leader = cluster.leader(None).await;
        (cluster, leader)
    }

    fn node_dir(&self, id: u64) -> PathBuf {
        self.root.join(format!("node-{id}"))
    }

    /// Starts node `id` from whatever its directory holds.
    async fn start_node(&mut self, id: u64) {
        let dir = self.node_dir(id);
        let log = LogStore::open(&dir).await.unwrap();
        let sm = StateMachine::open(&dir, id as i32).await.unwrap();
        let factory = Factory {
            router: self.router.clone(),
            me: id,
        };
        let raft = Raft::new(id, self.config.clone(), factory, log, sm.clone())
            .await
            .unwrap();
        self.router.rafts.lock().unwrap().insert(id, raft);
        self.machines.insert(id, sm);
    }

    async fn stop_node(&mut self, id: u64) {
        let raft = self.router.rafts.lock().unwrap().remove(&id).unwrap();
        raft.shutdown().await.unwrap();
        self.machines.remove(&id);
    }

    /// The leader every running, reachable node agrees on, other than
    /// `not` (a node just stopped, which the others still take for leader
    /// until its heartbeats are missed).
    async fn leader(&self, not: Option<u64>) -> u64 {
        let ids: Vec<u64> = self.machines.keys().copied().collect();
        let first = self.router.raft(ids[0]);
        let metrics = first
            .wait(WAIT)
            .metrics(
                |m| m.current_leader.is_some_and(|l| Some(l) != not),
                "a leader",
            )
            .await
            .unwrap();
        let leader = metrics.current_leader.unwrap();
        for id in ids {
            let raft = self.router.raft(id);
            raft.wait(WAIT)
                .current_leader(leader, "same leader")
                .await
                .unwrap();
        }
        leader
    }

    /// Waits until every running node applied `index`, and checks that
    /// their states are the same records.
    async fn converge(&self, index: u64) -> Vec<MetadataRecord> {
        let mut states = Vec::new();
        for (id, sm) in &self.machines {
            let raft = self.router.raft(*id);
            raft.wait(WAIT)
                .applied_index_at_least(Some(index), "applied")
                .await
                .unwrap();
            let published = sm.subscribe().borrow().clone();
            assert!(published.applied.is_some_and(|a| a.index >= index));
            states.push(snapshot::records(&published.image));
        }
        for state in &states[1..] {
            assert_eq!(state, &states[0]);
        }
        states.swap_remove(0)
    }
}

fn snapshots(dir: &Path) -> PathBuf {
    dir.join("snapshots")
}

fn topic(n: u64) -> MetadataRecord {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&(n + 1).to_be_bytes());
    MetadataRecord::TopicCreated {
        name: format!("topic-{n}"),
        id: TopicId(id),
        partitions: 3,
        configs: BTreeMap::new(),
        assignments: vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]],
    }
}

/// Proposes `records` on `raft`, retrying while it is still taking office
/// (a new leader takes writes once its lease is established).
async fn write(raft: &Raft, records: Vec<MetadataRecord>) -> Applied {
    for _ in 0..100 {
        match raft.client_write(RecordBatch(records.clone())).await {
            Ok(response) => return response.data,
            Err(e) if e.forward_to_leader().is_some() => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("write failed: {e}"),
        }
    }
    panic!("no write accepted in 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_replicate_and_a_restarted_leader_keeps_its_state() {
    let (mut cluster, leader) = Cluster::start().await;
    let raft = cluster.router.raft(leader);
    for n in 0..5 {
        let applied = write(&raft, vec![topic(2 * n), topic(2 * n + 1)]).await;
        assert_eq!(applied.refused, None);
    }
    // A batch that does not apply is refused whole, on every node alike.
    let refused = write(&raft, vec![topic(10), topic(0)]).await;
    assert!(refused.refused.unwrap().contains("already exists"));
    let state = cluster.converge(refused.index).await;
    assert_eq!(state.len(), 10);

    let term = raft.metrics().borrow_watched().current_term;
    cluster.stop_node(leader).await;
    drop(raft);
    let next = cluster.leader(Some(leader)).await;
    assert_ne!(next, leader);
    let applied = write(&cluster.router.raft(next), vec![topic(20)]).await;
    // Its vote and log survived the stop.
    let mut log = LogStore::open(&cluster.node_dir(leader)).await.unwrap();
    let vote = log.read_vote().await.unwrap().unwrap();
    assert_eq!(vote.leader_id.term, term);
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    assert!(last.index >= refused.index);
    drop(log);
    cluster.start_node(leader).await;
    let state = cluster.converge(applied.index).await;
    assert_eq!(state.len(), 11);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_while_logs_are_purged_catches_up_by_snapshot() {
    let (mut cluster, leader) = Cluster::start().await;
    let lagging = if leader == 3 { 2 } else { 3 };
    let raft = cluster.router.raft(leader);
    write(&raft, vec![topic(0)]).await;
    cluster.router.cut_off(lagging);
    let mut last = None;
    for n in 1..60 {
        last = Some(write(&raft, vec![topic(n)]).await.index);
    }
    let last = last.unwrap();
    raft.wait(WAIT)
        .metrics(|m| m.purged.is_some_and(|p| p.index > 5), "purged")
        .await
        .unwrap();
    cluster.router.heal();
    let state = cluster.converge(last).await;
    assert_eq!(state.len(), 60);
    let behind = cluster.router.raft(lagging);
    let metrics = behind.metrics().borrow_watched().clone();
    assert!(metrics.snapshot.is_some(), "caught up by a snapshot");
    // The snapshot it installed is on its disk.
    let files: Vec<_> = std::fs::read_dir(snapshots(&cluster.node_dir(lagging)))
        .unwrap()
        .collect();
    assert_eq!(files.len(), 1);
    // And it starts again from that snapshot and the log after it.
    drop(behind);
    cluster.stop_node(lagging).await;
    cluster.start_node(lagging).await;
    let applied = write(&raft, vec![topic(60)]).await;
    assert_eq!(cluster.converge(applied.index).await.len(), 61);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cluster_starts_from_its_snapshots_and_logs() {
    let (mut cluster, leader) = Cluster::start().await;
    let raft = cluster.router.raft(leader);
    let mut last = 0;
    for n in 0..30 {
        last = write(&raft, vec![topic(n)]).await.index;
    }
    drop(raft);
    let before = cluster.converge(last).await;
    for id in 1..=3 {
        cluster.stop_node(id).await;
    }
    // Each node's newest snapshot is loaded at open, before any entry.
    for id in 1..=3 {
        let sm = StateMachine::open(&cluster.node_dir(id), id as i32)
            .await
            .unwrap();
        let published = sm.subscribe().borrow().clone();
        let at = published.applied.expect("a snapshot").index;
        assert!(at >= 15 && at <= last, "snapshot at {at}");
        let records = snapshot::records(&published.image);
        // The state as of the snapshot: some of the topics, all of them real.
        assert!(records.len() >= 10 && records.iter().all(|r| before.contains(r)));
    }
    for id in 1..=3 {
        cluster.start_node(id).await;
    }
    cluster.leader(None).await;
    assert_eq!(cluster.converge(last).await, before);
}
