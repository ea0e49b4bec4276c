//! The metadata records. Each is a fact about the cluster; the state is what
//! they add up to. They are stored as JSON (docs/FORMAT.md, "Cluster
//! metadata"), so a record type can gain optional fields without a migration.
//! The broker and partition records take the shapes of KRaft's (KIP-631):
//! `RegisterBrokerRecord`, `BrokerRegistrationChangeRecord`,
//! `PartitionChangeRecord`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::broker::Listener;
pub use crate::id::{TopicId, Uuid};
use crate::partition::Partition;

/// One fact about the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The first record of a cluster's log.
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        id: TopicId,
        partitions: i32,
        /// Topic-level overrides by Kafka name (`retention.ms`, ...).
        configs: BTreeMap<String, String>,
        /// The replicas of each partition, preferred leader first. Empty in
        /// records written before replica lists (one-node logs): each
        /// partition then has one replica, the node replaying the log (see
        /// [`ClusterState::new`](crate::ClusterState::new)).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignments: Vec<Vec<i32>>,
    },
    /// The topic now has `partitions` partitions (only ever grows).
    PartitionsCreated {
        id: TopicId,
        partitions: i32,
        /// The replicas of each new partition, as in `TopicCreated`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        assignments: Vec<Vec<i32>>,
    },
    /// A topic config was set, or removed back to the default (`None`).
    TopicConfigChanged {
        id: TopicId,
        name: String,
        value: Option<String>,
    },
    TopicDeleted {
        id: TopicId,
    },
    /// Ids of topics deleted earlier: a snapshot's record of them, so their
    /// leftover directories are still recognised.
    DeletedTopicIds {
        ids: Vec<TopicId>,
    },
    /// Producer ids below `next` are handed out, in blocks so that one record
    /// covers many InitProducerId requests; `broker` got the last block
    /// (-1 in records written before brokers were named, and in snapshots).
    ProducerIdsAllocated {
        #[serde(default = "no_broker")]
        broker: i32,
        next: i64,
    },
    /// A broker process registered: a new registration, fenced, replacing
    /// any earlier one of the same id. `epoch` is the broker epoch.
    BrokerRegistered {
        id: i32,
        incarnation: Uuid,
        epoch: i64,
        listeners: Vec<Listener>,
        rack: Option<String>,
    },
    /// The registration of broker `id` at `epoch` was fenced or unfenced.
    BrokerFencingChanged {
        id: i32,
        epoch: i64,
        fenced: bool,
    },
    /// The registration of broker `id` at `epoch` is shutting down (KIP-841).
    BrokerControlledShutdown {
        id: i32,
        epoch: i64,
    },
    BrokerUnregistered {
        id: i32,
    },
    /// A controller (a Raft voter) and the id of its metadata directory,
    /// which tells a wiped disk from the one the quorum knows.
    ControllerRegistered {
        id: i32,
        directory_id: Uuid,
    },
    /// A partition's leadership or replicas changed. `leader` and `isr` are
    /// the new values (`None`: no leader); a list left `None` is unchanged.
    /// The partition epoch goes up by one.
    PartitionChanged {
        topic: TopicId,
        partition: i32,
        leader: Option<i32>,
        leader_epoch: i32,
        isr: Vec<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        adding: Option<Vec<i32>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        removing: Option<Vec<i32>>,
    },
    /// A partition's whole state, as a snapshot records it (Kafka's
    /// `PartitionRecord`): it replaces what the partition had.
    PartitionRestored {
        topic: TopicId,
        partition: i32,
        state: Partition,
    },
}

fn no_broker() -> i32 {
    -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_of_one_node_logs_read_with_their_defaults() {
        let created: MetadataRecord = serde_json::from_str(
            r#"{"type":"topic_created","name":"a","id":"01010101010101010101010101010101","partitions":2,"configs":{}}"#,
        )
        .unwrap();
        assert!(matches!(
            created,
            MetadataRecord::TopicCreated { ref assignments, .. } if assignments.is_empty()
        ));
        let allocated: MetadataRecord =
            serde_json::from_str(r#"{"type":"producer_ids_allocated","next":1000}"#).unwrap();
        assert_eq!(
            allocated,
            MetadataRecord::ProducerIdsAllocated {
                broker: -1,
                next: 1000
            }
        );
    }

    #[test]
    fn partition_changes_leave_out_the_lists_they_keep() {
        let change = MetadataRecord::PartitionChanged {
            topic: TopicId([1; 16]),
            partition: 0,
            leader: None,
            leader_epoch: 3,
            isr: vec![],
            replicas: None,
            adding: None,
            removing: Some(vec![]),
        };
        let text = serde_json::to_string(&change).unwrap();
        assert_eq!(
            text,
            r#"{"type":"partition_changed","topic":"01010101010101010101010101010101","partition":0,"leader":null,"leader_epoch":3,"isr":[],"removing":[]}"#
        );
        assert_eq!(
            serde_json::from_str::<MetadataRecord>(&text).unwrap(),
            change
        );
    }
}
