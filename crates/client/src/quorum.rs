//! The controller quorum as DescribeQuorum tells it (KIP-595): who leads,
//! in which epoch, how far the metadata log is committed, and how far
//! each voter has replicated it.

use rill_protocol::messages::DescribeQuorumRequest;
use rill_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use rill_protocol::{ApiKey, RequestBody, ResponseBody};

use crate::admin::{AdminClient, unexpected};
use crate::error::{Error, Result, code};

/// The quorum of the metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumDescription {
    /// -1 while there is none.
    pub leader_id: i32,
    pub leader_epoch: i32,
    /// One past the last committed entry.
    pub high_watermark: i64,
    pub voters: Vec<VoterState>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterState {
    pub id: i32,
    /// One past the last entry the leader knows this voter holds; -1 if
    /// it does not know.
    pub log_end_offset: i64,
    /// When the leader last heard from it (Unix ms); -1 if unknown.
    pub last_fetch_timestamp: i64,
}

impl AdminClient {
    pub async fn describe_quorum(&self) -> Result<QuorumDescription> {
        let request = DescribeQuorumRequest {
            topics: vec![TopicData {
                topic_name: "__cluster_metadata".to_string(),
                partitions: vec![PartitionData {
                    partition_index: 0,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let ResponseBody::DescribeQuorum(response) = self
            .client()
            .call_any(ApiKey::DescribeQuorum, |_| {
                RequestBody::DescribeQuorum(request)
            })
            .await?
        else {
            return Err(unexpected("DescribeQuorum"));
        };
        let partition = response
            .topics
            .into_iter()
            .flat_map(|topic| topic.partitions)
            .next()
            .ok_or_else(|| unexpected("DescribeQuorum"))?;
        for error in [response.error_code, partition.error_code] {
            if error != code::NONE {
                return Err(Error::kafka("describe the quorum", error, None));
            }
        }
        Ok(QuorumDescription {
            leader_id: partition.leader_id,
            leader_epoch: partition.leader_epoch,
            high_watermark: partition.high_watermark,
            voters: partition
                .current_voters
                .into_iter()
                .map(|voter| VoterState {
                    id: voter.replica_id,
                    log_end_offset: voter.log_end_offset,
                    last_fetch_timestamp: voter.last_fetch_timestamp,
                })
                .collect(),
        })
    }
}
