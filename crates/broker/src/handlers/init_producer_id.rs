//! InitProducerId: a new producer id for an idempotent producer, or the same
//! id with the next epoch when a producer asks to bump its epoch (KIP-360).
//! Transactions are not implemented, so a transactional id is refused.

use std::sync::Arc;

use rill_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse};

use crate::error_code;
use crate::server::Shared;

pub async fn handle(
    shared: &Arc<Shared>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refuse = |code| InitProducerIdResponse {
        error_code: code,
        producer_id: -1,
        producer_epoch: -1,
        ..Default::default()
    };
    if request.transactional_id.is_some() {
        return refuse(error_code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    }
    if request.producer_id >= 0 {
        // An epoch bump of an existing idempotent producer: the logs fence
        // the old epoch when the new one first appends.
        if request.producer_epoch < 0 {
            return refuse(error_code::INVALID_REQUEST);
        }
        if request.producer_epoch >= i16::MAX - 1 {
            // Epochs are exhausted (a client never holds i16::MAX, but a
            // request may claim it): start over with a fresh id.
            return fresh(shared).await;
        }
        return InitProducerIdResponse {
            error_code: error_code::NONE,
            producer_id: request.producer_id,
            producer_epoch: request.producer_epoch + 1,
            ..Default::default()
        };
    }
    fresh(shared).await
}

async fn fresh(shared: &Arc<Shared>) -> InitProducerIdResponse {
    match shared.cluster.allocate_producer_id().await {
        Ok(producer_id) => InitProducerIdResponse {
            error_code: error_code::NONE,
            producer_id,
            producer_epoch: 0,
            ..Default::default()
        },
        Err(failure) => InitProducerIdResponse {
            error_code: failure.code,
            producer_id: -1,
            producer_epoch: -1,
            ..Default::default()
        },
    }
}
