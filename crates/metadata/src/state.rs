//! The cluster state that the metadata records add up to.
//!
//! `apply` is the only way to change it, and it is deterministic: replaying
//! the same records on another node (or after a restart) gives the same state.
//! A record that does not fit the state (a config for a deleted topic, ...)
//! is refused with an [`ApplyError`] and changes nothing; the writer checks
//! before it appends, so a refusal on replay means the log is damaged.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::broker::{Broker, Listener};
use crate::id::{TopicId, Uuid};
use crate::partition::{Partition, PartitionChange, check_replicas};
use crate::record::MetadataRecord;

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub name: String,
    pub id: TopicId,
    /// Topic-level overrides by Kafka config name.
    pub configs: BTreeMap<String, String>,
    /// By partition index.
    pub partitions: Vec<Partition>,
}

impl Topic {
    pub fn partition_count(&self) -> i32 {
        // `apply` keeps a topic within `i32` partitions.
        self.partitions.len() as i32
    }
}

/// The epoch a proposer writes in `BrokerRegistered`: the broker epoch is
/// then the index of the log entry that carries the record (KRaft's is the
/// registration record's offset, which a proposer to openraft cannot know
/// in advance). Replaying the log gives the same index, so every node
/// agrees; snapshots write the epoch itself.
pub const EPOCH_OF_ENTRY: i64 = -1;

/// Everything the metadata log has said so far.
///
/// Topics are shared (`Arc`), so a copy of the state costs a pointer per
/// topic and a changed topic is told from an unchanged one by
/// `Arc::ptr_eq`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterState {
    /// The replica that partitions recorded without one have (see
    /// [`ClusterState::new`]).
    implicit_replica: i32,
    pub cluster_id: Option<String>,
    topics: BTreeMap<String, Arc<Topic>>,
    names_by_id: HashMap<TopicId, String>,
    /// Ids of deleted topics. Ids are random and never reused, so a partition
    /// directory tagged with one of these holds a deleted topic's data
    /// (a crash came between the deletion record and the directory's rename).
    deleted_ids: HashSet<TopicId>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    brokers: BTreeMap<i32, Broker>,
    /// Controller id → the id of its metadata directory.
    controllers: BTreeMap<i32, Uuid>,
    /// Partitions of all topics, at most [`PARTITIONS_MAX`].
    partition_total: usize,
}

/// Partitions the cluster holds at most, all topics together. It bounds the
/// memory a metadata log can ask for at replay (each partition's state is
/// about 200 bytes), and is above what one node can serve
/// (`max_partitions` is at most 1,000,000 unless set higher).
pub const PARTITIONS_MAX: usize = 2_000_000;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("the cluster id is already set to {0}")]
    ClusterIdSet(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic id {0} is already in use")]
    TopicIdInUse(TopicId),
    #[error("topic id {0} was a deleted topic's, and ids are never reused")]
    TopicIdDeleted(TopicId),
    #[error("no topic has id {0}")]
    UnknownTopicId(TopicId),
    #[error("topic `{name}` has {current} partitions and cannot go to {requested}")]
    PartitionsShrink {
        name: String,
        current: i32,
        requested: i32,
    },
    #[error("a topic must have at least one partition, not {0}")]
    NoPartitions(i32),
    #[error("topic `{name}` gets {new} new partitions but replica lists for {lists}")]
    AssignmentCount {
        name: String,
        new: i32,
        lists: usize,
    },
    #[error("topic `{name}` has no partition {partition}")]
    UnknownPartition { name: String, partition: i32 },
    #[error("partition {partition} of topic `{name}`: {reason}")]
    BadPartition {
        name: String,
        partition: i32,
        reason: String,
    },
    #[error("the cluster would have {0} partitions, over the limit of {PARTITIONS_MAX}")]
    TooManyPartitions(i64),
    #[error("producer ids only move forward: {current} to {requested}")]
    ProducerIdsBackwards { current: i64, requested: i64 },
    #[error("{0} is not a node id: node ids are never negative")]
    NegativeNodeId(i32),
    #[error("no broker {0} is registered")]
    UnknownBroker(i32),
    #[error("broker {id} is registered at epoch {current}, not {requested}")]
    StaleBrokerEpoch {
        id: i32,
        current: i64,
        requested: i64,
    },
}

impl ClusterState {
    /// An empty state on node `node_id`. Logs written before replica lists
    /// existed were written by one node that held every partition, so a
    /// topic or partition recorded without replicas gets this node as its
    /// one replica; a cluster's records always name their replicas, and so
    /// do snapshots, so this never depends on which node replays them.
    pub fn new(node_id: i32) -> ClusterState {
        ClusterState {
            implicit_replica: node_id,
            cluster_id: None,
            topics: BTreeMap::new(),
            names_by_id: HashMap::new(),
            deleted_ids: HashSet::new(),
            next_producer_id: 0,
            brokers: BTreeMap::new(),
            controllers: BTreeMap::new(),
            partition_total: 0,
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<Topic>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&Arc<Topic>> {
        self.names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// Whether a topic with this id existed and was deleted.
    pub fn was_deleted(&self, id: TopicId) -> bool {
        self.deleted_ids.contains(&id)
    }

    /// Ids of deleted topics, in order.
    pub fn deleted_ids(&self) -> Vec<TopicId> {
        let mut ids: Vec<TopicId> = self.deleted_ids.iter().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// All topics, ordered by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<Topic>> {
        self.topics.values()
    }

    pub fn broker(&self, id: i32) -> Option<&Broker> {
        self.brokers.get(&id)
    }

    /// All registered brokers, ordered by id.
    pub fn brokers(&self) -> impl Iterator<Item = &Broker> {
        self.brokers.values()
    }

    /// Registered controllers and their directory ids, ordered by id.
    pub fn controllers(&self) -> impl Iterator<Item = (i32, Uuid)> + '_ {
        self.controllers.iter().map(|(id, dir)| (*id, *dir))
    }

    /// Applies one record carried by the log entry at `index`: as
    /// [`apply`](ClusterState::apply), but a `BrokerRegistered` with epoch
    /// [`EPOCH_OF_ENTRY`] takes `index` as its broker epoch.
    pub fn apply_at(&mut self, index: u64, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::BrokerRegistered {
                id,
                incarnation,
                epoch: EPOCH_OF_ENTRY,
                listeners,
                rack,
            } => {
                let epoch = i64::try_from(index).unwrap_or(i64::MAX);
                self.register_broker(*id, *incarnation, epoch, listeners, rack)
            }
            _ => self.apply(record),
        }
    }

    /// Applies one record, or leaves the state unchanged and says why not.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        use MetadataRecord as R;
        match record {
            R::ClusterCreated { cluster_id } => {
                if let Some(existing) = &self.cluster_id {
                    return Err(ApplyError::ClusterIdSet(existing.clone()));
                }
                self.cluster_id = Some(cluster_id.clone());
                Ok(())
            }
            R::TopicCreated {
                name,
                id,
                partitions,
                configs,
                assignments,
            } => self.create_topic(name, *id, *partitions, configs, assignments),
            R::PartitionsCreated {
                id,
                partitions,
                assignments,
            } => self.create_partitions(*id, *partitions, assignments),
            R::TopicConfigChanged { id, name, value } => {
                let topic = Arc::make_mut(self.topic_by_id_mut(*id)?);
                match value {
                    Some(value) => topic.configs.insert(name.clone(), value.clone()),
                    None => topic.configs.remove(name),
                };
                Ok(())
            }
            R::TopicDeleted { id } => self.delete_topic(*id),
            R::DeletedTopicIds { ids } => {
                if let Some(live) = ids.iter().find(|id| self.names_by_id.contains_key(id)) {
                    return Err(ApplyError::TopicIdInUse(*live));
                }
                self.deleted_ids.extend(ids.iter().copied());
                Ok(())
            }
            R::ProducerIdsAllocated { broker: _, next } => self.allocate_producer_ids(*next),
            R::PartitionChanged { .. } | R::PartitionRestored { .. } => {
                self.apply_partition_record(record)
            }
            R::BrokerRegistered { .. }
            | R::BrokerFencingChanged { .. }
            | R::BrokerControlledShutdown { .. }
            | R::BrokerUnregistered { .. }
            | R::ControllerRegistered { .. } => self.apply_node_record(record),
        }
    }

    /// The records about one partition's replicas and leadership.
    fn apply_partition_record(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::PartitionChanged {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
                replicas,
                adding,
                removing,
            } => {
                let change = PartitionChange {
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    isr,
                    replicas: replicas.as_deref(),
                    adding: adding.as_deref(),
                    removing: removing.as_deref(),
                };
                self.update_partition(*topic, *partition, |p| p.changed(change))
            }
            MetadataRecord::PartitionRestored {
                topic,
                partition,
                state,
            } => self.update_partition(*topic, *partition, |_| {
                state.check()?;
                Ok(state.clone())
            }),
            // `apply` sends only the records above here.
            _ => Ok(()),
        }
    }

    /// The records about brokers and controllers.
    fn apply_node_record(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::BrokerRegistered {
                id,
                incarnation,
                epoch,
                listeners,
                rack,
            } => self.register_broker(*id, *incarnation, *epoch, listeners, rack)?,
            MetadataRecord::BrokerFencingChanged { id, epoch, fenced } => {
                self.broker_at_epoch(*id, *epoch)?.fenced = *fenced;
            }
            MetadataRecord::BrokerControlledShutdown { id, epoch } => {
                self.broker_at_epoch(*id, *epoch)?.in_controlled_shutdown = true;
            }
            MetadataRecord::BrokerUnregistered { id } => {
                self.brokers
                    .remove(id)
                    .ok_or(ApplyError::UnknownBroker(*id))?;
            }
            MetadataRecord::ControllerRegistered { id, directory_id } => {
                if *id < 0 {
                    return Err(ApplyError::NegativeNodeId(*id));
                }
                self.controllers.insert(*id, *directory_id);
            }
            // `apply` sends only the records above here.
            _ => {}
        }
        Ok(())
    }

    fn delete_topic(&mut self, id: TopicId) -> Result<(), ApplyError> {
        let name = self
            .names_by_id
            .remove(&id)
            .ok_or(ApplyError::UnknownTopicId(id))?;
        if let Some(topic) = self.topics.remove(&name) {
            self.partition_total -= topic.partitions.len();
        }
        self.deleted_ids.insert(id);
        Ok(())
    }

    /// A block ends where the next begins: the end only moves up, so two
    /// nodes that proposed the same block from one state cannot both get it
    /// (the second is refused and asks again).
    fn allocate_producer_ids(&mut self, next: i64) -> Result<(), ApplyError> {
        if next <= self.next_producer_id {
            return Err(ApplyError::ProducerIdsBackwards {
                current: self.next_producer_id,
                requested: next,
            });
        }
        self.next_producer_id = next;
        Ok(())
    }

    fn create_topic(
        &mut self,
        name: &str,
        id: TopicId,
        partitions: i32,
        configs: &BTreeMap<String, String>,
        assignments: &[Vec<i32>],
    ) -> Result<(), ApplyError> {
        if self.topics.contains_key(name) {
            return Err(ApplyError::TopicExists(name.to_string()));
        }
        if self.names_by_id.contains_key(&id) {
            return Err(ApplyError::TopicIdInUse(id));
        }
        if self.deleted_ids.contains(&id) {
            return Err(ApplyError::TopicIdDeleted(id));
        }
        if partitions < 1 {
            return Err(ApplyError::NoPartitions(partitions));
        }
        let partitions = self.new_partitions(name, 0, partitions, assignments)?;
        self.partition_total += partitions.len();
        self.names_by_id.insert(id, name.to_string());
        let topic = Topic {
            name: name.to_string(),
            id,
            configs: configs.clone(),
            partitions,
        };
        self.topics.insert(name.to_string(), Arc::new(topic));
        Ok(())
    }

    fn create_partitions(
        &mut self,
        id: TopicId,
        partitions: i32,
        assignments: &[Vec<i32>],
    ) -> Result<(), ApplyError> {
        let topic = self.topic_by_id(id).ok_or(ApplyError::UnknownTopicId(id))?;
        let current = topic.partition_count();
        if partitions < current {
            return Err(ApplyError::PartitionsShrink {
                name: topic.name.clone(),
                current,
                requested: partitions,
            });
        }
        let name = topic.name.clone();
        let new = self.new_partitions(&name, current, partitions, assignments)?;
        self.partition_total += new.len();
        Arc::make_mut(self.topic_by_id_mut(id)?)
            .partitions
            .extend(new);
        Ok(())
    }

    /// Partitions `from..to` of topic `name` on their recorded replicas, or
    /// each on the implicit replica when none are recorded.
    fn new_partitions(
        &self,
        name: &str,
        from: i32,
        to: i32,
        assignments: &[Vec<i32>],
    ) -> Result<Vec<Partition>, ApplyError> {
        let total = self.partition_total as i64 + i64::from(to) - i64::from(from);
        if total > PARTITIONS_MAX as i64 {
            return Err(ApplyError::TooManyPartitions(total));
        }
        if assignments.is_empty() {
            let replicas = vec![self.implicit_replica];
            return Ok((from..to)
                .map(|_| Partition::created(replicas.clone()))
                .collect());
        }
        if assignments.len() as i64 != i64::from(to) - i64::from(from) {
            return Err(ApplyError::AssignmentCount {
                name: name.to_string(),
                new: to - from,
                lists: assignments.len(),
            });
        }
        (from..to)
            .zip(assignments)
            .map(|(partition, replicas)| {
                check_replicas(replicas).map_err(|reason| ApplyError::BadPartition {
                    name: name.to_string(),
                    partition,
                    reason,
                })?;
                Ok(Partition::created(replicas.clone()))
            })
            .collect()
    }

    /// Replaces one partition's state with `update`'s answer, or leaves it.
    fn update_partition(
        &mut self,
        id: TopicId,
        partition: i32,
        update: impl FnOnce(&Partition) -> Result<Partition, String>,
    ) -> Result<(), ApplyError> {
        let topic = self.topic_by_id_mut(id)?;
        let name = topic.name.clone();
        let index = usize::try_from(partition)
            .ok()
            .filter(|index| *index < topic.partitions.len())
            .ok_or_else(|| ApplyError::UnknownPartition {
                name: name.clone(),
                partition,
            })?;
        let next = update(&topic.partitions[index]).map_err(|reason| ApplyError::BadPartition {
            name,
            partition,
            reason,
        })?;
        Arc::make_mut(topic).partitions[index] = next;
        Ok(())
    }

    fn register_broker(
        &mut self,
        id: i32,
        incarnation: Uuid,
        epoch: i64,
        listeners: &[Listener],
        rack: &Option<String>,
    ) -> Result<(), ApplyError> {
        if id < 0 {
            return Err(ApplyError::NegativeNodeId(id));
        }
        // Broker epochs are log positions, so a later registration has a
        // larger one.
        if epoch < 0 {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                current: 0,
                requested: epoch,
            });
        }
        if let Some(current) = self.brokers.get(&id).filter(|b| b.epoch >= epoch) {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                current: current.epoch,
                requested: epoch,
            });
        }
        let broker = Broker {
            id,
            incarnation,
            epoch,
            listeners: listeners.to_vec(),
            rack: rack.clone(),
            fenced: true,
            in_controlled_shutdown: false,
        };
        self.brokers.insert(id, broker);
        Ok(())
    }

    fn broker_at_epoch(&mut self, id: i32, epoch: i64) -> Result<&mut Broker, ApplyError> {
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(ApplyError::UnknownBroker(id))?;
        if broker.epoch != epoch {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                current: broker.epoch,
                requested: epoch,
            });
        }
        Ok(broker)
    }

    fn topic_by_id_mut(&mut self, id: TopicId) -> Result<&mut Arc<Topic>, ApplyError> {
        let name = self
            .names_by_id
            .get(&id)
            .ok_or(ApplyError::UnknownTopicId(id))?;
        self.topics
            .get_mut(name)
            .ok_or(ApplyError::UnknownTopicId(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str, id: u8, partitions: i32) -> MetadataRecord {
        MetadataRecord::TopicCreated {
            name: name.to_string(),
            id: TopicId([id; 16]),
            partitions,
            configs: BTreeMap::new(),
            assignments: Vec::new(),
        }
    }

    fn grown(id: u8, partitions: i32, assignments: Vec<Vec<i32>>) -> MetadataRecord {
        MetadataRecord::PartitionsCreated {
            id: TopicId([id; 16]),
            partitions,
            assignments,
        }
    }

    #[test]
    fn topics_come_and_go() {
        let mut state = ClusterState::new(0);
        state.apply(&created("a", 1, 2)).unwrap();
        assert_eq!(
            state.apply(&created("a", 2, 1)),
            Err(ApplyError::TopicExists("a".into()))
        );
        state.apply(&grown(1, 5, Vec::new())).unwrap();
        assert_eq!(state.topic("a").unwrap().partition_count(), 5);
        assert!(matches!(
            state.apply(&grown(1, 4, Vec::new())),
            Err(ApplyError::PartitionsShrink { .. })
        ));
        state
            .apply(&MetadataRecord::TopicConfigChanged {
                id: TopicId([1; 16]),
                name: "retention.ms".into(),
                value: Some("10".into()),
            })
            .unwrap();
        assert_eq!(state.topic("a").unwrap().configs["retention.ms"], "10");
        state
            .apply(&MetadataRecord::TopicDeleted {
                id: TopicId([1; 16]),
            })
            .unwrap();
        assert!(state.topic("a").is_none());
        assert!(state.topic_by_id(TopicId([1; 16])).is_none());
        assert!(state.was_deleted(TopicId([1; 16])));
        assert!(!state.was_deleted(TopicId([2; 16])));
        // The name is free again, under a new id.
        assert_eq!(
            state.apply(&created("a", 1, 1)),
            Err(ApplyError::TopicIdDeleted(TopicId([1; 16])))
        );
        state.apply(&created("a", 3, 1)).unwrap();
        assert_eq!(state.deleted_ids(), vec![TopicId([1; 16])]);
    }

    #[test]
    fn partitions_without_replica_lists_are_on_the_replaying_node() {
        let mut state = ClusterState::new(7);
        state.apply(&created("a", 1, 2)).unwrap();
        state.apply(&grown(1, 3, Vec::new())).unwrap();
        for partition in &state.topic("a").unwrap().partitions {
            assert_eq!(*partition, Partition::created(vec![7]));
            assert_eq!(partition.leader, Some(7));
        }
        // Named replicas: one list per new partition, each valid.
        state
            .apply(&grown(1, 5, vec![vec![1, 2], vec![2, 1]]))
            .unwrap();
        let topic = state.topic("a").unwrap();
        assert_eq!(topic.partitions[4].replicas, vec![2, 1]);
        assert_eq!(topic.partitions[4].leader, Some(2));
        assert!(matches!(
            state.apply(&grown(1, 7, vec![vec![1]])),
            Err(ApplyError::AssignmentCount {
                new: 2,
                lists: 1,
                ..
            })
        ));
        assert!(matches!(
            state.apply(&grown(1, 6, vec![vec![1, 1]])),
            Err(ApplyError::BadPartition { partition: 5, .. })
        ));
    }

    #[test]
    fn partition_changes_name_a_partition_that_exists() {
        let mut state = ClusterState::new(0);
        state.apply(&created("a", 1, 1)).unwrap();
        let change =
            |partition, leader: Option<i32>, leader_epoch| MetadataRecord::PartitionChanged {
                topic: TopicId([1; 16]),
                partition,
                leader,
                leader_epoch,
                isr: leader.into_iter().collect(),
                replicas: None,
                adding: None,
                removing: None,
            };
        state.apply(&change(0, None, 1)).unwrap();
        let partition = &state.topic("a").unwrap().partitions[0];
        assert_eq!((partition.leader, partition.leader_epoch), (None, 1));
        assert_eq!(partition.partition_epoch, 1);
        assert!(matches!(
            state.apply(&change(1, None, 2)),
            Err(ApplyError::UnknownPartition { partition: 1, .. })
        ));
        assert!(matches!(
            state.apply(&change(-1, None, 2)),
            Err(ApplyError::UnknownPartition { partition: -1, .. })
        ));
        assert!(matches!(
            state.apply(&change(0, Some(0), 1)),
            Err(ApplyError::BadPartition { .. })
        ));
    }

    #[test]
    fn the_partition_count_is_bounded() {
        let mut state = ClusterState::new(0);
        state.apply(&created("a", 1, i32::MAX)).unwrap_err();
        let half = (PARTITIONS_MAX / 2) as i32;
        state.apply(&created("a", 1, half)).unwrap();
        state.apply(&created("b", 2, half)).unwrap();
        assert_eq!(
            state.apply(&created("c", 3, 1)),
            Err(ApplyError::TooManyPartitions(PARTITIONS_MAX as i64 + 1))
        );
        // Deleting frees room.
        state
            .apply(&MetadataRecord::TopicDeleted {
                id: TopicId([2; 16]),
            })
            .unwrap();
        state.apply(&created("c", 3, 1)).unwrap();
    }

    fn registered(id: i32, epoch: i64) -> MetadataRecord {
        MetadataRecord::BrokerRegistered {
            id,
            incarnation: Uuid([id as u8; 16]),
            epoch,
            listeners: vec![Listener {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: 0,
            }],
            rack: None,
        }
    }

    #[test]
    fn brokers_register_unfence_shut_down_and_leave() {
        let mut state = ClusterState::new(0);
        state.apply(&registered(1, 10)).unwrap();
        let broker = state.broker(1).unwrap();
        assert!(broker.fenced && !broker.in_controlled_shutdown);
        let unfence = |epoch| MetadataRecord::BrokerFencingChanged {
            id: 1,
            epoch,
            fenced: false,
        };
        assert_eq!(
            state.apply(&unfence(9)),
            Err(ApplyError::StaleBrokerEpoch {
                id: 1,
                current: 10,
                requested: 9
            })
        );
        state.apply(&unfence(10)).unwrap();
        state
            .apply(&MetadataRecord::BrokerControlledShutdown { id: 1, epoch: 10 })
            .unwrap();
        let broker = state.broker(1).unwrap();
        assert!(!broker.fenced && broker.in_controlled_shutdown);
        // A restart registers anew, fenced, at a later epoch only.
        assert!(state.apply(&registered(1, 10)).is_err());
        state.apply(&registered(1, 20)).unwrap();
        let broker = state.broker(1).unwrap();
        assert!(broker.fenced && !broker.in_controlled_shutdown);
        state
            .apply(&MetadataRecord::BrokerUnregistered { id: 1 })
            .unwrap();
        assert!(state.broker(1).is_none());
        assert_eq!(
            state.apply(&MetadataRecord::BrokerUnregistered { id: 1 }),
            Err(ApplyError::UnknownBroker(1))
        );
        assert_eq!(
            state.apply(&registered(-1, 1)),
            Err(ApplyError::NegativeNodeId(-1))
        );
        state
            .apply(&MetadataRecord::ControllerRegistered {
                id: 3,
                directory_id: Uuid([3; 16]),
            })
            .unwrap();
        assert_eq!(
            state.controllers().collect::<Vec<_>>(),
            [(3, Uuid([3; 16]))]
        );
    }

    #[test]
    fn a_copy_shares_the_topics_it_did_not_change() {
        let mut state = ClusterState::new(0);
        state.apply(&created("a", 1, 1)).unwrap();
        state.apply(&created("b", 2, 1)).unwrap();
        let before = state.clone();
        state.apply(&grown(2, 2, Vec::new())).unwrap();
        assert!(Arc::ptr_eq(
            before.topic("a").unwrap(),
            state.topic("a").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            before.topic("b").unwrap(),
            state.topic("b").unwrap()
        ));
    }
}
