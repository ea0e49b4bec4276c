//! A state as the records that rebuild it, as KRaft's snapshots are
//! (KIP-630): a log can then start from a snapshot instead of from its
//! first record. Applying [`records`] of a state to an empty one on the same
//! node gives that state back.

use crate::partition::Partition;
use crate::record::MetadataRecord;
use crate::state::{ApplyError, ClusterState, Topic};

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
        assignments: topic
            .partitions
            .iter()
            .map(|p| p.replicas.clone())
            .collect(),
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::subsequence;

    use super::*;
    use crate::broker::Listener;
    use crate::id::{TopicId, Uuid};

    /// Small id spaces, so that random records often name what exists.
    fn topic_id() -> impl Strategy<Value = TopicId> {
        (1u8..5).prop_map(|n| TopicId([n; 16]))
    }

    fn brokers() -> impl Strategy<Value = Vec<i32>> {
        subsequence(vec![0, 1, 2], 0..=3).prop_shuffle()
    }

    fn partition() -> impl Strategy<Value = Partition> {
        (brokers(), 0usize..4, 0i32..4, 0i32..4).prop_map(|(replicas, isr, epoch, bump)| {
            let isr: Vec<i32> = replicas.iter().copied().take(isr).collect();
            Partition {
                leader: isr.first().copied(),
                adding: replicas.iter().copied().skip(2).collect(),
                isr,
                replicas,
                leader_epoch: epoch,
                partition_epoch: epoch + bump,
                removing: Vec::new(),
            }
        })
    }

    fn topic_record() -> impl Strategy<Value = MetadataRecord> {
        let configs = proptest::option::of("[0-9]{1,3}");
        prop_oneof![
            3 => (topic_id(), 1i32..4, prop::bool::ANY, vec(brokers(), 3)).prop_map(
                |(id, partitions, implicit, lists)| MetadataRecord::TopicCreated {
                    name: format!("t{}", id.0[0] % 3),
                    id,
                    partitions,
                    configs: BTreeMap::from([("retention.ms".into(), "1".into())]),
                    assignments: if implicit { Vec::new() } else { lists },
                }
            ),
            3 => (topic_id(), 1i32..6, vec(brokers(), 0..3)).prop_map(|(id, partitions, lists)| {
                MetadataRecord::PartitionsCreated {
                    id,
                    partitions,
                    assignments: lists,
                }
            }),
            1 => (topic_id(), configs).prop_map(|(id, value)| MetadataRecord::TopicConfigChanged {
                id,
                name: "segment.bytes".into(),
                value,
            }),
            1 => topic_id().prop_map(|id| MetadataRecord::TopicDeleted { id }),
            1 => vec(topic_id(), 0..3).prop_map(|ids| MetadataRecord::DeletedTopicIds { ids }),
            1 => (-1i32..3, 0i64..5000)
                .prop_map(|(broker, next)| MetadataRecord::ProducerIdsAllocated { broker, next }),
            1 => "[a-z]{1,4}".prop_map(|cluster_id| MetadataRecord::ClusterCreated { cluster_id }),
        ]
    }

    fn partition_record() -> impl Strategy<Value = MetadataRecord> {
        prop_oneof![
            (
                topic_id(),
                0i32..4,
                brokers(),
                0i32..5,
                proptest::option::of(brokers())
            )
                .prop_map(|(topic, partition, isr, leader_epoch, replicas)| {
                    MetadataRecord::PartitionChanged {
                        topic,
                        partition,
                        leader: isr.first().copied(),
                        leader_epoch,
                        isr,
                        adding: replicas
                            .as_ref()
                            .map(|r| r.iter().copied().take(1).collect()),
                        replicas,
                        removing: None,
                    }
                }),
            (topic_id(), 0i32..4, partition()).prop_map(|(topic, partition, state)| {
                MetadataRecord::PartitionRestored {
                    topic,
                    partition,
                    state,
                }
            }),
        ]
    }

    fn node_record() -> impl Strategy<Value = MetadataRecord> {
        let rack = proptest::option::of("[a-c]");
        prop_oneof![
            (0i32..4, 0i64..4, rack).prop_map(|(id, epoch, rack)| {
                MetadataRecord::BrokerRegistered {
                    id,
                    incarnation: Uuid([id as u8 + 1; 16]),
                    epoch,
                    listeners: vec![Listener {
                        name: "PLAINTEXT".into(),
                        host: format!("host{id}"),
                        port: 9092,
                        security_protocol: 0,
                    }],
                    rack,
                }
            }),
            (0i32..4, 0i64..4, prop::bool::ANY).prop_map(|(id, epoch, fenced)| {
                MetadataRecord::BrokerFencingChanged { id, epoch, fenced }
            }),
            (0i32..4, 0i64..4)
                .prop_map(|(id, epoch)| MetadataRecord::BrokerControlledShutdown { id, epoch }),
            (0i32..4).prop_map(|id| MetadataRecord::BrokerUnregistered { id }),
            (0i32..3, 1u8..4).prop_map(|(id, dir)| MetadataRecord::ControllerRegistered {
                id,
                directory_id: Uuid([dir; 16]),
            }),
        ]
    }

    fn record() -> impl Strategy<Value = MetadataRecord> {
        prop_oneof![2 => topic_record(), 2 => partition_record(), 1 => node_record()]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whatever random records did to a state, its snapshot rebuilds it,
        /// also after a trip through JSON; and a refused record changed
        /// nothing.
        #[test]
        fn a_snapshot_rebuilds_the_state(node in 0i32..3, log in vec(record(), 0..80)) {
            let mut state = ClusterState::new(node);
            for record in &log {
                let before = state.clone();
                if state.apply(record).is_err() {
                    prop_assert_eq!(&state, &before);
                }
            }
            let records = records(&state);
            prop_assert_eq!(&restore(node, &records).unwrap(), &state);
            let json = serde_json::to_vec(&records).unwrap();
            let read: Vec<MetadataRecord> = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(&restore(node, &read).unwrap(), &state);
        }
    }

    #[test]
    fn an_empty_state_has_an_empty_snapshot() {
        assert!(records(&ClusterState::new(0)).is_empty());
    }
}
