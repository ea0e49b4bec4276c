//! The node's controller quorum, opened for the broker: `meta.properties`
//! checked, a metadata log from before the quorum migrated into it, and a
//! new cluster given its id. Everything after that (proposals, the applied
//! state) goes through [`rill_controller::Node`].
//!
//! On disk, under `<data_dir>/__cluster_metadata/`: `raft/` is the quorum's
//! (docs/FORMAT.md, "Controller Raft log"); `metadata.log.pre-raft` is the
//! log a migration started from, kept for a downgrade or a post-mortem.

use std::path::{Path, PathBuf};

use rill_controller::{Node, NodeConfig, NodeError, ProposeError};
use rill_metadata::{MetadataRecord, MetadataStore, snapshot};

use crate::config::BrokerConfig;
use crate::meta_properties::{self, MetaError};

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
}

/// Opens the quorum of the data directory in `config` and returns it with
/// the cluster's id, once this node leads it.
pub async fn open(config: &BrokerConfig) -> Result<(Node, String), QuorumError> {
    let data_dir = &config.data_dir;
    let stored = meta_properties::read(data_dir)?;
    // Before any replay: the replay maps old partitions to this node id.
    meta_properties::check_node(data_dir, stored.as_ref(), config.node_id)?;
    let dir = data_dir.join(METADATA_DIR);
    let raft_dir = dir.join(RAFT_DIR);
    if !raft_dir.exists() && dir.join(OLD_LOG).exists() {
        migrate(&dir, &raft_dir, config.node_id).await?;
    }
    if raft_dir.exists() && dir.join(OLD_LOG).exists() {
        // The migration is whole; the old log is kept, out of the way.
        keep_old_log(&dir)?;
    }
    let node = Node::open_single(&raft_dir, config.node_id, &NodeConfig::default()).await?;
    let known = node.subscribe().borrow().image.cluster_id.clone();
    let cluster_id = match known {
        Some(id) => id,
        None => {
            let cluster_id = meta_properties::random_id();
            let created = MetadataRecord::ClusterCreated {
                cluster_id: cluster_id.clone(),
            };
            node.propose(vec![created])
                .await
                .map_err(QuorumError::ClusterId)?;
            cluster_id
        }
    };
    meta_properties::settle(data_dir, stored, config.node_id, &cluster_id)?;
    Ok((node, cluster_id))
}

/// Replays the old metadata log (cutting a torn tail, refusing damage as it
/// always did) and makes the raft directory from its state.
async fn migrate(dir: &Path, raft_dir: &Path, node_id: i32) -> Result<(), QuorumError> {
    let old = MetadataStore::open(dir, node_id)?;
    let records = snapshot::records(old.state());
    drop(old);
    let topics = records.len();
    rill_controller::node::migrate(raft_dir, node_id, records)
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

        let (node, cluster_id) = open(&config(dir.path())).await.unwrap();
        assert_eq!(cluster_id, "old-cluster");
        let image = node.subscribe().borrow().image.clone();
        assert_eq!(snapshot::records(&image), before);
        assert!(!metadata_dir.join(OLD_LOG).exists());
        assert!(metadata_dir.join(OLD_LOG_KEPT).exists());
        let index = node.propose(vec![topic("c", 3)]).await.unwrap();
        assert!(index > 1, "after the migrated snapshot: {index}");
        node.shutdown().await;
        drop(node);

        let (node, cluster_id) = open(&config(dir.path())).await.unwrap();
        assert_eq!(cluster_id, "old-cluster");
        let image = node.subscribe().borrow().image.clone();
        assert_eq!(image.topics().count(), 3);
        assert_eq!(image.next_producer_id, 2000);
        node.shutdown().await;
    }

    /// A crash after the raft directory was renamed into place, before the
    /// old log was moved aside: the quorum's state wins, the old log is set
    /// aside.
    #[tokio::test]
    async fn a_migration_cut_before_the_old_log_moved_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let (node, cluster_id) = open(&config(dir.path())).await.unwrap();
        node.shutdown().await;
        drop(node);
        let metadata_dir = dir.path().join(METADATA_DIR);
        let mut stale = MetadataStore::open(&metadata_dir, 0).unwrap();
        stale
            .append(&[MetadataRecord::ClusterCreated {
                cluster_id: "stale".to_string(),
            }])
            .unwrap();
        drop(stale);
        let (node, reopened) = open(&config(dir.path())).await.unwrap();
        assert_eq!(reopened, cluster_id);
        assert!(metadata_dir.join(OLD_LOG_KEPT).exists());
        node.shutdown().await;
    }
}
