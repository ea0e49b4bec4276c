//! Who leads each partition when brokers come and go: the partition
//! changes the active controller proposes when a broker is fenced, shuts
//! down, or is unfenced (Kafka's `ReplicationControlManager`
//! `handleBrokerFenced` / `handleBrokerUnfenced`, with unclean election off).
//!
//! Leadership moves only within the in-sync replicas: a replica outside
//! them may lack acknowledged records, and electing it would lose them.
//! Until partitions replicate, the in-sync set of a partition is its one
//! replica, so a fenced broker's partitions go without a leader
//! (LEADER_NOT_AVAILABLE to clients) and get it back when it unfences. The
//! in-sync set is left as it is, so that its members can lead again.
//!
//! Pure: the image in, records out.

use rill_metadata::{ClusterState, MetadataRecord, Partition, TopicId};

/// Changes that take leadership away from `broker`: each partition it
/// leads goes to the first other in-sync replica (in replica order, the
/// preferred leader first) that `usable` accepts, or to no leader.
pub fn leadership_away(
    image: &ClusterState,
    broker: i32,
    usable: impl Fn(i32) -> bool,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.leader != Some(broker) {
                continue;
            }
            let next = partition
                .replicas
                .iter()
                .copied()
                .find(|r| *r != broker && partition.isr.contains(r) && usable(*r));
            records.push(new_leader(topic.id, index, partition, next));
        }
    }
    records
}

/// Changes that give each partition without a leader the first in-sync
/// replica (preferred leader first) that `usable` accepts, if one does.
pub fn elect_leaderless(image: &ClusterState, usable: impl Fn(i32) -> bool) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics() {
        for (index, partition) in topic.partitions.iter().enumerate() {
            if partition.leader.is_some() {
                continue;
            }
            let leader = partition
                .replicas
                .iter()
                .copied()
                .find(|r| partition.isr.contains(r) && usable(*r));
            if leader.is_some() {
                records.push(new_leader(topic.id, index, partition, leader));
            }
        }
    }
    records
}

/// The change that gives partition `index` of `topic` the leader `leader`
/// (or none) in the next leader epoch, its in-sync replicas unchanged.
fn new_leader(
    topic: TopicId,
    index: usize,
    partition: &Partition,
    leader: Option<i32>,
) -> MetadataRecord {
    MetadataRecord::PartitionChanged {
        topic,
        partition: index as i32,
        leader,
        leader_epoch: partition.leader_epoch.saturating_add(1),
        isr: partition.isr.clone(),
        replicas: None,
        adding: None,
        removing: None,
    }
}

/// Whether `broker` leads any partition.
pub fn leads_any(image: &ClusterState, broker: i32) -> bool {
    image
        .topics()
        .any(|t| t.partitions.iter().any(|p| p.leader == Some(broker)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn image() -> ClusterState {
        let mut state = ClusterState::new(1);
        state
            .apply(&MetadataRecord::TopicCreated {
                name: "t".to_string(),
                id: TopicId([1; 16]),
                partitions: 3,
                configs: BTreeMap::new(),
                assignments: vec![vec![1], vec![2], vec![1, 2]],
            })
            .unwrap();
        state
    }

    fn apply(state: &mut ClusterState, records: &[MetadataRecord]) {
        for record in records {
            state.apply(record).unwrap();
        }
    }

    fn leaders(state: &ClusterState) -> Vec<Option<i32>> {
        let topic = state.topics().next().unwrap();
        topic.partitions.iter().map(|p| p.leader).collect()
    }

    #[test]
    fn a_fenced_brokers_partitions_wait_for_it_then_come_back() {
        let mut state = image();
        let away = leadership_away(&state, 1, |_| true);
        // Partition 2's other replica is not in sync: it does not lead.
        assert_eq!(away.len(), 2);
        apply(&mut state, &away);
        assert_eq!(leaders(&state), [None, Some(2), None]);
        assert!(!leads_any(&state, 1));
        // Nobody else may lead them while broker 1 is away.
        assert!(elect_leaderless(&state, |b| b != 1).is_empty());
        let back = elect_leaderless(&state, |_| true);
        apply(&mut state, &back);
        assert_eq!(leaders(&state), [Some(1), Some(2), Some(1)]);
        let topic = state.topics().next().unwrap();
        assert_eq!(topic.partitions[0].leader_epoch, 2);
    }

    #[test]
    fn leadership_moves_to_another_in_sync_replica() {
        let mut state = image();
        let topic = state.topics().next().unwrap().id;
        apply(
            &mut state,
            &[MetadataRecord::PartitionChanged {
                topic,
                partition: 2,
                leader: Some(1),
                leader_epoch: 0,
                isr: vec![1, 2],
                replicas: None,
                adding: None,
                removing: None,
            }],
        );
        let away = leadership_away(&state, 1, |_| true);
        apply(&mut state, &away);
        assert_eq!(leaders(&state), [None, Some(2), Some(2)]);
    }
}
