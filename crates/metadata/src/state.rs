//! The cluster state that the metadata records add up to.
//!
//! `apply` is the only way to change it, and it is deterministic: replaying
//! the same records on another node (or after a restart) gives the same state.
//! A record that does not fit the state (a config for a deleted topic, ...)
//! is refused with an [`ApplyError`]; the writer checks before it appends, so
//! a refusal on replay means the log is damaged.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::record::{MetadataRecord, TopicId};

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub name: String,
    pub id: TopicId,
    pub partitions: i32,
    /// Topic-level overrides by Kafka config name.
    pub configs: BTreeMap<String, String>,
}

/// Everything the metadata log has said so far.
#[derive(Debug, Clone, Default)]
pub struct ClusterState {
    pub cluster_id: Option<String>,
    topics: BTreeMap<String, Topic>,
    names_by_id: HashMap<TopicId, String>,
    /// Ids of deleted topics. Ids are random and never reused, so a partition
    /// directory tagged with one of these holds a deleted topic's data
    /// (a crash came between the deletion record and the directory's rename).
    deleted_ids: HashSet<TopicId>,
    /// The first producer id not yet handed out.
    pub next_producer_id: i64,
    /// How many records have been applied.
    pub records_applied: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApplyError {
    #[error("the cluster id is already set to {0}")]
    ClusterIdSet(String),
    #[error("topic `{0}` already exists")]
    TopicExists(String),
    #[error("topic id {0} is already in use")]
    TopicIdInUse(TopicId),
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
    #[error("producer ids only move forward: {current} to {requested}")]
    ProducerIdsBackwards { current: i64, requested: i64 },
}

impl ClusterState {
    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&Topic> {
        self.names_by_id
            .get(&id)
            .and_then(|name| self.topics.get(name))
    }

    /// Whether a topic with this id existed and was deleted.
    pub fn was_deleted(&self, id: TopicId) -> bool {
        self.deleted_ids.contains(&id)
    }

    /// All topics, ordered by name.
    pub fn topics(&self) -> impl Iterator<Item = &Topic> {
        self.topics.values()
    }

    /// Applies one record, or leaves the state unchanged and says why not.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), ApplyError> {
        match record {
            MetadataRecord::ClusterCreated { cluster_id } => {
                if let Some(existing) = &self.cluster_id {
                    return Err(ApplyError::ClusterIdSet(existing.clone()));
                }
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataRecord::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Err(ApplyError::TopicExists(name.clone()));
                }
                if self.names_by_id.contains_key(id) {
                    return Err(ApplyError::TopicIdInUse(*id));
                }
                if *partitions < 1 {
                    return Err(ApplyError::NoPartitions(*partitions));
                }
                self.names_by_id.insert(*id, name.clone());
                self.topics.insert(
                    name.clone(),
                    Topic {
                        name: name.clone(),
                        id: *id,
                        partitions: *partitions,
                        configs: configs.clone(),
                    },
                );
            }
            MetadataRecord::PartitionsCreated { id, partitions } => {
                let topic = self.topic_by_id_mut(*id)?;
                if *partitions < topic.partitions {
                    return Err(ApplyError::PartitionsShrink {
                        name: topic.name.clone(),
                        current: topic.partitions,
                        requested: *partitions,
                    });
                }
                topic.partitions = *partitions;
            }
            MetadataRecord::TopicConfigChanged { id, name, value } => {
                let topic = self.topic_by_id_mut(*id)?;
                match value {
                    Some(value) => topic.configs.insert(name.clone(), value.clone()),
                    None => topic.configs.remove(name),
                };
            }
            MetadataRecord::TopicDeleted { id } => {
                let name = self
                    .names_by_id
                    .remove(id)
                    .ok_or(ApplyError::UnknownTopicId(*id))?;
                self.topics.remove(&name);
                self.deleted_ids.insert(*id);
            }
            MetadataRecord::ProducerIdsAllocated { next } => {
                if *next < self.next_producer_id {
                    return Err(ApplyError::ProducerIdsBackwards {
                        current: self.next_producer_id,
                        requested: *next,
                    });
                }
                self.next_producer_id = *next;
            }
        }
        self.records_applied += 1;
        Ok(())
    }

    fn topic_by_id_mut(&mut self, id: TopicId) -> Result<&mut Topic, ApplyError> {
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
        }
    }

    #[test]
    fn topics_come_and_go() {
        let mut state = ClusterState::default();
        state.apply(&created("a", 1, 2)).unwrap();
        assert_eq!(
            state.apply(&created("a", 2, 1)),
            Err(ApplyError::TopicExists("a".into()))
        );
        state
            .apply(&MetadataRecord::PartitionsCreated {
                id: TopicId([1; 16]),
                partitions: 5,
            })
            .unwrap();
        assert_eq!(state.topic("a").unwrap().partitions, 5);
        assert!(matches!(
            state.apply(&MetadataRecord::PartitionsCreated {
                id: TopicId([1; 16]),
                partitions: 4,
            }),
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
        state.apply(&created("a", 3, 1)).unwrap();
        assert_eq!(state.records_applied, 5);
    }

    #[test]
    fn topic_ids_round_trip_as_text() {
        let id = TopicId::random();
        let text: String = id.into();
        assert_eq!(TopicId::try_from(text).unwrap(), id);
        assert!(TopicId::try_from("xyz".to_string()).is_err());
        assert!(TopicId::try_from("é".repeat(16)).is_err());
    }
}
