//! Producer ids (InitProducerId) handed out from blocks this node reserves
//! in the metadata, so one committed record covers many requests and two
//! nodes never hand out the same id.

use rill_controller::ProposeError;
use rill_metadata::MetadataRecord;

use super::{Cluster, TopicError, lock};
use crate::error_code;

/// Producer ids are reserved in blocks so that one durable metadata record
/// covers many InitProducerId requests.
const PRODUCER_ID_BLOCK: i64 = 1000;

impl Cluster {
    /// Hands out a new producer id, reserving a new block durably when the
    /// current one is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, TopicError> {
        {
            let mut block = lock(&self.producer_ids);
            if block.0 < block.1 {
                block.0 += 1;
                return Ok(block.0 - 1);
            }
        }
        let _guard = self.change_lock.lock().await;
        let used_up = {
            let block = lock(&self.producer_ids);
            block.0 >= block.1
        };
        if used_up {
            let start = self.reserve_producer_ids().await?;
            *lock(&self.producer_ids) = (start, start + PRODUCER_ID_BLOCK);
        }
        let mut block = lock(&self.producer_ids);
        block.0 += 1;
        Ok(block.0 - 1)
    }

    /// Reserves the next block of producer ids for this node, and returns
    /// its first id. The block starts where the metadata says the last one
    /// ended; another node reserving the same block first gets this
    /// proposal refused, and it is made again from the newer state.
    async fn reserve_producer_ids(&self) -> Result<i64, TopicError> {
        const ATTEMPTS: usize = 5;
        let mut last_error = None;
        for _ in 0..ATTEMPTS {
            let start = self.quorum.node.image().next_producer_id;
            let record = MetadataRecord::ProducerIdsAllocated {
                broker: self.config.node_id,
                next: start + PRODUCER_ID_BLOCK,
            };
            match self.quorum.propose(vec![record]).await {
                Ok(_) => return Ok(start),
                Err(ProposeError::Refused(reason)) => last_error = Some(reason),
                Err(error) => return Err(self.propose_error(error)),
            }
        }
        Err(TopicError::new(
            error_code::UNKNOWN_SERVER_ERROR,
            format!(
                "no producer-id block reserved: {}",
                last_error.unwrap_or_default()
            ),
        ))
    }
}
