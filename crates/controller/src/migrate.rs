//! The migration of a data directory from before the controller quorum:
//! its metadata log's state becomes the first snapshot of a quorum of one
//! (docs/FORMAT.md, "Migration").

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::Path;
use std::sync::Arc;

use openraft::BasicNode;
use rill_metadata::MetadataRecord;

use crate::durable;
use crate::network::Network;
use crate::node::{NoPeers, NodeConfig, raft_config, voter_id};
use crate::state_machine::Snapshot;
use crate::types::{Membership, SnapshotMeta, StoredMembership, Vote, log_id};
use crate::{LogStore, Raft, StateMachine, snapshot_store};

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
        let raft = Raft::new(me, config, Network::new(Arc::new(NoPeers)), log, machine)
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
