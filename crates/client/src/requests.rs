//! Stateless requests that the admin client, the consumer and both group
//! protocols share: find a group's coordinator, commit and fetch a group's
//! offsets, and list the offsets of partitions (what an [`Offset`] names).
//! Each is one request and its answer; no state outlives the call.

use std::collections::{BTreeMap, HashMap};

use rill_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use rill_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use rill_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use rill_protocol::messages::{
    FindCoordinatorRequest, ListOffsetsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use rill_protocol::{ApiKey, RequestBody, ResponseBody};

use crate::client::Client;
use crate::error::{Error, Result, code};
use crate::topic_partition::{TopicPartition, group_by_topic};

/// Where to read or list from: the paper's consumers rewind at will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offset {
    /// The oldest message still kept.
    Beginning,
    /// After the newest message: only what is produced from now on.
    End,
    /// This exact offset.
    At(i64),
    /// The first message with a timestamp at or after this many
    /// milliseconds since the epoch (the end when there is none).
    Timestamp(i64),
}

/// The broker that coordinates `group_id`.
pub(crate) async fn find_coordinator(client: &Client, group_id: &str) -> Result<i32> {
    let response = client
        .call_any(ApiKey::FindCoordinator, |_| {
            RequestBody::FindCoordinator(FindCoordinatorRequest {
                key: group_id.to_string(),
                key_type: 0,
                coordinator_keys: vec![group_id.to_string()],
                ..Default::default()
            })
        })
        .await?;
    let ResponseBody::FindCoordinator(response) = response else {
        return Err(other_api(group_id, "FindCoordinator"));
    };
    // v4+ answer per key in `coordinators`; older versions at the top.
    let (error_code, node_id) = match response.coordinators.first() {
        Some(found) => (found.error_code, found.node_id),
        None => (response.error_code, response.node_id),
    };
    if error_code != code::NONE {
        return Err(Error::kafka(
            format!("find the coordinator of group '{group_id}'"),
            error_code,
            None,
        ));
    }
    if !client.metadata().brokers.contains_key(&node_id) {
        client.refresh_metadata(Some(&[])).await?;
    }
    if !client.metadata().brokers.contains_key(&node_id) {
        return Err(Error::UnknownBroker(node_id));
    }
    Ok(node_id)
}

/// The group's coordinator: `cached`, or looked up and remembered there.
pub(crate) async fn cached_coordinator(
    client: &Client,
    group_id: &str,
    cached: &mut Option<i32>,
) -> Result<i32> {
    if let Some(node) = *cached {
        return Ok(node);
    }
    let node = find_coordinator(client, group_id).await?;
    *cached = Some(node);
    Ok(node)
}

/// A group's committed offsets: for `partitions`, or all with `None`.
pub(crate) async fn fetch_committed(
    client: &Client,
    coordinator: i32,
    group_id: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<HashMap<TopicPartition, i64>> {
    let topics = partitions.map(|partitions| {
        group_by_topic(partitions)
            .into_iter()
            .map(|(name, partition_indexes)| OffsetFetchRequestTopic {
                name,
                partition_indexes: partition_indexes.into(),
                ..Default::default()
            })
            .collect()
    });
    let request = OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics,
        require_stable: false,
        ..Default::default()
    };
    let response = client
        .call(coordinator, ApiKey::OffsetFetch, |_| {
            RequestBody::OffsetFetch(request)
        })
        .await?;
    let ResponseBody::OffsetFetch(response) = response else {
        return Err(other_api(group_id, "OffsetFetch"));
    };
    if response.error_code != code::NONE {
        return Err(Error::kafka(
            format!("fetch committed offsets of group '{group_id}'"),
            response.error_code,
            None,
        ));
    }
    let mut committed = HashMap::new();
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.error_code == code::NONE && partition.committed_offset >= 0 {
                committed.insert(
                    TopicPartition::new(&topic.name, partition.partition_index),
                    partition.committed_offset,
                );
            }
        }
    }
    Ok(committed)
}

/// OffsetCommit of `offsets` to `coordinator`. `generation` is the classic
/// protocol's generation or KIP-848's member epoch; -1 and an empty member
/// id commit as a tool outside the group (as `rill group reset-offsets`
/// does).
pub(crate) async fn commit_offsets(
    client: &Client,
    coordinator: i32,
    group_id: &str,
    generation: i32,
    member_id: &str,
    offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
) -> Result<()> {
    let request = OffsetCommitRequest {
        group_id: group_id.to_string(),
        generation_id_or_member_epoch: generation,
        member_id: member_id.to_string(),
        group_instance_id: None,
        retention_time_ms: -1,
        topics: commit_topics(offsets),
        ..Default::default()
    };
    let response = client
        .call(coordinator, ApiKey::OffsetCommit, |_| {
            RequestBody::OffsetCommit(request)
        })
        .await?;
    let ResponseBody::OffsetCommit(response) = response else {
        return Err(other_api(group_id, "OffsetCommit"));
    };
    for topic in response.topics {
        for partition in topic.partitions {
            if partition.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("commit offsets of group '{group_id}'"),
                    partition.error_code,
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// An OffsetCommit's topics: each partition's offset, no metadata, no
/// leader epoch, the broker's commit time.
fn commit_topics(
    offsets: impl IntoIterator<Item = (TopicPartition, i64)>,
) -> Vec<OffsetCommitRequestTopic> {
    let mut by_topic: BTreeMap<String, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (tp, offset) in offsets {
        by_topic
            .entry(tp.topic)
            .or_default()
            .push(OffsetCommitRequestPartition {
                partition_index: tp.partition,
                committed_offset: offset,
                committed_leader_epoch: -1,
                commit_timestamp: -1,
                committed_metadata: Some(String::new()),
                ..Default::default()
            });
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| OffsetCommitRequestTopic {
            name,
            partitions,
            ..Default::default()
        })
        .collect()
}

/// ListOffsets for some partitions of one topic, sent to each leader.
pub(crate) async fn list_offsets(
    client: &Client,
    topic: &str,
    partitions: &[i32],
    spec: Offset,
) -> Result<BTreeMap<i32, i64>> {
    let timestamp = match spec {
        Offset::At(offset) => return Ok(partitions.iter().map(|&p| (p, offset)).collect()),
        Offset::Beginning => -2,
        Offset::End => -1,
        Offset::Timestamp(ms) => ms,
    };
    let mut by_leader: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for &partition in partitions {
        by_leader
            .entry(client.leader(topic, partition).await?)
            .or_default()
            .push(partition);
    }
    let mut offsets = BTreeMap::new();
    for (leader, partitions) in by_leader {
        offsets.extend(list_offsets_at(client, leader, topic, &partitions, timestamp).await?);
    }
    // A timestamp after the last message names no offset (-1): the end.
    if offsets.values().any(|&offset| offset < 0) {
        let ends = Box::pin(list_offsets(client, topic, partitions, Offset::End)).await?;
        for (partition, offset) in offsets.iter_mut() {
            if *offset < 0 {
                *offset = ends.get(partition).copied().unwrap_or(0);
            }
        }
    }
    Ok(offsets)
}

/// One ListOffsets to `leader` for `partitions` of `topic`.
async fn list_offsets_at(
    client: &Client,
    leader: i32,
    topic: &str,
    partitions: &[i32],
    timestamp: i64,
) -> Result<Vec<(i32, i64)>> {
    let request = ListOffsetsRequest {
        replica_id: -1,
        isolation_level: 0,
        topics: vec![ListOffsetsTopic {
            name: topic.to_string(),
            partitions: partitions
                .iter()
                .map(|&partition| ListOffsetsPartition {
                    partition_index: partition,
                    current_leader_epoch: -1,
                    timestamp,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let ResponseBody::ListOffsets(response) = client
        .call(leader, ApiKey::ListOffsets, |_| {
            RequestBody::ListOffsets(request)
        })
        .await?
    else {
        return Err(Error::Protocol {
            addr: "broker".into(),
            reason: "ListOffsets answered with another API".into(),
        });
    };
    let mut offsets = Vec::new();
    for topic_answer in response.topics {
        for answer in topic_answer.partitions {
            if answer.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("list offsets of {topic}-{}", answer.partition_index),
                    answer.error_code,
                    None,
                ));
            }
            offsets.push((answer.partition_index, answer.offset));
        }
    }
    Ok(offsets)
}

/// A coordinator's answer of the wrong kind.
fn other_api(group_id: &str, api: &str) -> Error {
    Error::Group {
        group: group_id.to_string(),
        reason: format!("{api} answered with another API"),
    }
}
