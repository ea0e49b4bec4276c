//! A state as the records that rebuild it, as KRaft's snapshots are
//! (KIP-630): a log can then start from a snapshot instead of from its
//! first record. Applying [`records`] of a state to an empty one on the same
//! node gives that state back.

use crate::record::MetadataRecord;
use crate::state::{ApplyError, ClusterState, Topic};
use crate::partition::Partition;

/// The records that rebuild `state`, in an order that applies: the cluster,
/// controllers, brokers, topics with their partitions, deleted ids, producer
/// ids. Replica lists are always written out, so the result means the same
/// on every node.
pub fn records(state: &ClusterState) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    if let Some(cluster_id) = &state.cluster_id {
        records.push(MetadataRecord::ClusterCreated {
            cluster_id: cluster_id.clone(),
        });
    }
    for (id, directory_id) in state.controllers() {
        records.push(MetadataRecord::ControllerRegistered { id, directory_id });
    }
    for broker in state.brokers() {
        records.push(MetadataRecord::BrokerRegistered {
            id: broker.id,
            incarnation: broker.incarnation,
            epoch: broker.epoch,
            listeners: broker.listeners.clone(),
            rack: broker.rack.clone(),
        });
        // A registration starts fenced and running.
        if !broker.fenced {
            records.push(MetadataRecord::BrokerFencingChanged {
                id: broker.id,
                epoch: broker.epoch,
                fenced: false,
            });
        }
        if broker.in_controlled_shutdown {
            records.push(MetadataRecord::BrokerControlledShutdown {
                id: broker.id,
                epoch: broker.epoch,
            });
        }
    }
    for topic in state.topics() {
        topic_records(topic, &mut records);
    }
    let deleted = state.deleted_ids();
    if !deleted.is_empty() {
        records.push(MetadataRecord::DeletedTopicIds { ids: deleted });
    }
    if state.next_producer_id != 0 {
        records.push(MetadataRecord::ProducerIdsAllocated {
            broker: -1,
            next: state.next_producer_id,
        });
    }
    records
}

/// A topic's creation, then the state of each partition that has moved on
/// from how creation leaves it.
fn topic_records(topic: &Topic, records: &mut Vec<MetadataRecord>) {
    records.push(MetadataRecord::TopicCreated {
        name: topic.name.clone(),
        id: topic.id,
        partitions: topic.partition_count(),
        configs: topic.configs.clone(),
        assignments: topic.partitions.iter().map(|p| p.replicas.clone()).collect(),
    });
    for (index, partition) in topic.partitions.iter().enumerate() {
        if *partition != Partition::created(partition.replicas.clone()) {
            records.push(MetadataRecord::PartitionRestored {
                topic: topic.id,
                // A topic has at most `i32::MAX` partitions.
                partition: index as i32,
                state: partition.clone(),
            });
        }
    }
}

/// The state that `records` rebuild on node `node_id`.
pub fn restore(node_id: i32, records: &[MetadataRecord]) -> Result<ClusterState, ApplyError> {
    let mut state = ClusterState::new(node_id);
    for record in records {
        state.apply(record)?;
    }
    Ok(state)
}
