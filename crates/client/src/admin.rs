//! The admin client: topics, configs, offsets and groups.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use rill_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use rill_protocol::messages::delete_topics_request::DeleteTopicState;
use rill_protocol::messages::describe_configs_request::DescribeConfigsResource;
use rill_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use rill_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteTopicsRequest,
    DescribeConfigsRequest, DescribeGroupsRequest, IncrementalAlterConfigsRequest,
    ListGroupsRequest,
};
use rill_protocol::{ApiKey, RequestBody, ResponseBody};

use crate::client::{Client, ClientConfig, TopicInfo};
use crate::error::{Error, Result, code};
use crate::group::decode_assignment;
use crate::requests::{Offset, commit_offsets, fetch_committed, find_coordinator, list_offsets};
use crate::topic_partition::TopicPartition;

/// Kafka's resource type for a topic in config requests.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type for a broker in config requests.
const RESOURCE_BROKER: i8 = 4;

/// How long admin calls wait for metadata to show their effect: topic
/// creation is asynchronous in a cluster.
const PROPAGATION_WAIT: Duration = Duration::from_secs(10);

/// A topic to create.
#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker's default.
    pub partitions: i32,
    /// -1: the broker's default.
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

impl NewTopic {
    pub fn new(name: &str, partitions: i32) -> NewTopic {
        NewTopic {
            name: name.to_string(),
            partitions,
            replication_factor: -1,
            configs: Vec::new(),
        }
    }

    pub fn config(mut self, key: &str, value: &str) -> NewTopic {
        self.configs.push((key.to_string(), value.to_string()));
        self
    }
}

/// One config entry of a topic or broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub is_default: bool,
    pub read_only: bool,
    pub is_sensitive: bool,
}

/// A group as ListGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    pub protocol_type: String,
    /// Empty when the broker is too old to say.
    pub state: String,
}

/// A member of a group and the partitions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberDescription {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: String,
    pub protocol_type: String,
    /// The assignor in use.
    pub protocol: String,
    pub members: Vec<GroupMemberDescription>,
}

/// Admin operations on a cluster.
#[derive(Clone)]
pub struct AdminClient {
    client: Client,
}

impl AdminClient {
    pub async fn connect(config: ClientConfig) -> Result<AdminClient> {
        Ok(AdminClient {
            client: Client::connect(config).await?,
        })
    }

    pub fn from_client(client: Client) -> AdminClient {
        AdminClient { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates topics and waits until metadata shows them.
    pub async fn create_topics(&self, topics: Vec<NewTopic>) -> Result<()> {
        let names: Vec<String> = topics.iter().map(|topic| topic.name.clone()).collect();
        let timeout_ms = self.client.config().request_timeout.as_millis() as i32;
        let request = CreateTopicsRequest {
            topics: topics
                .into_iter()
                .map(|topic| CreatableTopic {
                    name: topic.name,
                    num_partitions: topic.partitions,
                    replication_factor: topic.replication_factor,
                    configs: topic
                        .configs
                        .into_iter()
                        .map(|(name, value)| CreatableTopicConfig {
                            name,
                            value: Some(value),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
            timeout_ms,
            validate_only: false,
            ..Default::default()
        };
        let ResponseBody::CreateTopics(response) = self
            .client
            .call_any(ApiKey::CreateTopics, |_| RequestBody::CreateTopics(request))
            .await?
        else {
            return Err(unexpected("CreateTopics"));
        };
        for topic in response.topics {
            if topic.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("create topic '{}'", topic.name),
                    topic.error_code,
                    topic.error_message,
                ));
            }
        }
        self.wait_for(&names, true).await
    }

    /// Deletes topics and waits until metadata no longer shows them.
    pub async fn delete_topics(&self, names: &[String]) -> Result<()> {
        let timeout_ms = self.client.config().request_timeout.as_millis() as i32;
        let request = DeleteTopicsRequest {
            topics: names
                .iter()
                .map(|name| DeleteTopicState {
                    name: Some(name.clone()),
                    ..Default::default()
                })
                .collect(),
            topic_names: names.to_vec(),
            timeout_ms,
            ..Default::default()
        };
        let ResponseBody::DeleteTopics(response) = self
            .client
            .call_any(ApiKey::DeleteTopics, |_| RequestBody::DeleteTopics(request))
            .await?
        else {
            return Err(unexpected("DeleteTopics"));
        };
        for topic in response.responses {
            if topic.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                return Err(Error::UnknownTopic(topic.name.unwrap_or_default()));
            }
            if topic.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("delete topic '{}'", topic.name.unwrap_or_default()),
                    topic.error_code,
                    topic.error_message,
                ));
            }
        }
        self.wait_for(names, false).await
    }

    async fn wait_for(&self, names: &[String], present: bool) -> Result<()> {
        let deadline = Instant::now() + PROPAGATION_WAIT;
        loop {
            let metadata = self.client.refresh_metadata(Some(names)).await?;
            let done = names.iter().all(|name| {
                metadata
                    .topics
                    .get(name)
                    .is_some_and(|topic| topic.partitions.iter().all(|p| p.leader >= 0))
                    == present
            });
            if done {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    addr: "cluster metadata".into(),
                    timeout_ms: PROPAGATION_WAIT.as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every topic, sorted by name (internal ones included).
    pub async fn list_topics(&self) -> Result<Vec<Arc<TopicInfo>>> {
        let metadata = self.client.refresh_metadata(None).await?;
        let mut topics: Vec<Arc<TopicInfo>> = metadata.topics.values().cloned().collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(topics)
    }

    /// One topic's partitions, leaders and replicas.
    pub async fn describe_topic(&self, name: &str) -> Result<Arc<TopicInfo>> {
        self.client.refresh_topic(name).await
    }

    /// A topic's configs (`None`) or a broker's (`Some(node_id)`).
    pub async fn describe_configs(
        &self,
        topic: Option<&str>,
        broker: Option<i32>,
    ) -> Result<Vec<ConfigEntry>> {
        let (resource_type, resource_name) = match (topic, broker) {
            (Some(topic), _) => (RESOURCE_TOPIC, topic.to_string()),
            (None, Some(node)) => (RESOURCE_BROKER, node.to_string()),
            (None, None) => return Err(Error::Config("describe_configs needs a resource".into())),
        };
        let request = DescribeConfigsRequest {
            resources: vec![DescribeConfigsResource {
                resource_type,
                resource_name,
                configuration_keys: None,
                ..Default::default()
            }],
            ..Default::default()
        };
        let ResponseBody::DescribeConfigs(response) = self
            .client
            .call_any(ApiKey::DescribeConfigs, |_| {
                RequestBody::DescribeConfigs(request)
            })
            .await?
        else {
            return Err(unexpected("DescribeConfigs"));
        };
        let mut entries = Vec::new();
        for result in response.results {
            if result.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                return Err(Error::UnknownTopic(result.resource_name));
            }
            if result.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("describe configs of '{}'", result.resource_name),
                    result.error_code,
                    result.error_message,
                ));
            }
            for config in result.configs {
                entries.push(ConfigEntry {
                    name: config.name,
                    value: config.value,
                    // Before v1 only `is_default` says it; from v1 the source.
                    is_default: config.is_default || config.config_source == 5,
                    read_only: config.read_only,
                    is_sensitive: config.is_sensitive,
                });
            }
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Sets (`Some`) or resets to the default (`None`) topic configs.
    pub async fn alter_topic_configs(
        &self,
        topic: &str,
        changes: Vec<(String, Option<String>)>,
    ) -> Result<()> {
        let request = IncrementalAlterConfigsRequest {
            resources: vec![AlterConfigsResource {
                resource_type: RESOURCE_TOPIC,
                resource_name: topic.to_string(),
                configs: changes
                    .into_iter()
                    .map(|(name, value)| AlterableConfig {
                        name,
                        // 0 = SET, 1 = DELETE (back to the default).
                        config_operation: if value.is_some() { 0 } else { 1 },
                        value,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            validate_only: false,
            ..Default::default()
        };
        let ResponseBody::IncrementalAlterConfigs(response) = self
            .client
            .call_any(ApiKey::IncrementalAlterConfigs, |_| {
                RequestBody::IncrementalAlterConfigs(request)
            })
            .await?
        else {
            return Err(unexpected("IncrementalAlterConfigs"));
        };
        for result in response.responses {
            if result.error_code == code::UNKNOWN_TOPIC_OR_PARTITION {
                return Err(Error::UnknownTopic(result.resource_name));
            }
            if result.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("alter configs of '{}'", result.resource_name),
                    result.error_code,
                    result.error_message,
                ));
            }
        }
        Ok(())
    }

    /// Grows a topic to `total` partitions.
    pub async fn create_partitions(&self, topic: &str, total: i32) -> Result<()> {
        let timeout_ms = self.client.config().request_timeout.as_millis() as i32;
        let request = CreatePartitionsRequest {
            topics: vec![CreatePartitionsTopic {
                name: topic.to_string(),
                count: total,
                assignments: None,
                ..Default::default()
            }],
            timeout_ms,
            validate_only: false,
            ..Default::default()
        };
        let ResponseBody::CreatePartitions(response) = self
            .client
            .call_any(ApiKey::CreatePartitions, |_| {
                RequestBody::CreatePartitions(request)
            })
            .await?
        else {
            return Err(unexpected("CreatePartitions"));
        };
        for result in response.results {
            if result.error_code != code::NONE {
                return Err(Error::kafka(
                    format!("add partitions to '{}'", result.name),
                    result.error_code,
                    result.error_message,
                ));
            }
        }
        self.client.refresh_topic(topic).await.map(|_| ())
    }

    /// The offset `spec` names in each partition of `topic`, by partition.
    pub async fn list_offsets(&self, topic: &str, spec: Offset) -> Result<BTreeMap<i32, i64>> {
        let info = self.client.topic(topic).await?;
        let partitions: Vec<i32> = info.partitions.iter().map(|p| p.partition).collect();
        list_offsets(&self.client, topic, &partitions, spec).await
    }
}

impl AdminClient {
    /// Every group on every broker, sorted by id.
    pub async fn list_groups(&self) -> Result<Vec<GroupListing>> {
        let metadata = self.client.refresh_metadata(Some(&[])).await?;
        let mut groups = Vec::new();
        for &node in metadata.brokers.keys() {
            let ResponseBody::ListGroups(response) = self
                .client
                .call(node, ApiKey::ListGroups, |_| {
                    RequestBody::ListGroups(ListGroupsRequest::default())
                })
                .await?
            else {
                return Err(unexpected("ListGroups"));
            };
            if response.error_code != code::NONE {
                return Err(Error::kafka("list groups", response.error_code, None));
            }
            groups.extend(response.groups.into_iter().map(|group| GroupListing {
                group_id: group.group_id,
                protocol_type: group.protocol_type,
                state: group.group_state,
            }));
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        Ok(groups)
    }

    /// A group's state, assignor and members.
    pub async fn describe_group(&self, group_id: &str) -> Result<GroupDescription> {
        let coordinator = find_coordinator(&self.client, group_id).await?;
        let request = DescribeGroupsRequest {
            groups: vec![group_id.to_string()],
            ..Default::default()
        };
        let ResponseBody::DescribeGroups(response) = self
            .client
            .call(coordinator, ApiKey::DescribeGroups, |_| {
                RequestBody::DescribeGroups(request)
            })
            .await?
        else {
            return Err(unexpected("DescribeGroups"));
        };
        let group = response
            .groups
            .into_iter()
            .next()
            .ok_or_else(|| unexpected("DescribeGroups"))?;
        if group.error_code != code::NONE {
            return Err(Error::kafka(
                format!("describe group '{group_id}'"),
                group.error_code,
                None,
            ));
        }
        let mut members = Vec::new();
        for member in group.members {
            members.push(GroupMemberDescription {
                member_id: member.member_id,
                client_id: member.client_id,
                client_host: member.client_host,
                // Only consumer groups carry the consumer protocol.
                assignment: decode_assignment(&member.member_assignment).unwrap_or_default(),
            });
        }
        Ok(GroupDescription {
            group_id: group.group_id,
            state: group.group_state,
            protocol_type: group.protocol_type,
            protocol: group.protocol_data,
            members,
        })
    }

    /// A group's committed offsets for every partition it has one for.
    pub async fn group_offsets(&self, group_id: &str) -> Result<BTreeMap<TopicPartition, i64>> {
        let coordinator = find_coordinator(&self.client, group_id).await?;
        let committed = fetch_committed(&self.client, coordinator, group_id, None).await?;
        Ok(committed.into_iter().collect())
    }

    /// Sets a group's committed offsets for every partition of `topic` to
    /// what `to` names. The group must have no active members (as in Kafka).
    pub async fn reset_group_offsets(
        &self,
        group_id: &str,
        topic: &str,
        to: Offset,
    ) -> Result<BTreeMap<i32, i64>> {
        let offsets = self.list_offsets(topic, to).await?;
        let coordinator = find_coordinator(&self.client, group_id).await?;
        let partitions = offsets
            .iter()
            .map(|(&partition, &offset)| (TopicPartition::new(topic, partition), offset));
        commit_offsets(&self.client, coordinator, group_id, -1, "", partitions).await?;
        Ok(offsets)
    }

    /// Deletes groups with no active members, and their offsets.
    pub async fn delete_groups(&self, group_ids: &[String]) -> Result<()> {
        for group_id in group_ids {
            let coordinator = find_coordinator(&self.client, group_id).await?;
            let request = DeleteGroupsRequest {
                groups_names: vec![group_id.clone()],
                ..Default::default()
            };
            let ResponseBody::DeleteGroups(response) = self
                .client
                .call(coordinator, ApiKey::DeleteGroups, |_| {
                    RequestBody::DeleteGroups(request)
                })
                .await?
            else {
                return Err(unexpected("DeleteGroups"));
            };
            for result in response.results {
                if result.error_code != code::NONE {
                    return Err(Error::kafka(
                        format!("delete group '{}'", result.group_id),
                        result.error_code,
                        None,
                    ));
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn unexpected(api: &str) -> Error {
    Error::Protocol {
        addr: "broker".into(),
        reason: format!("{api} answered with another API"),
    }
}
