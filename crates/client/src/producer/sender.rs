//! The sender task: drains the accumulator, groups batches by leader into
//! Produce requests (one batch per partition per request, at most
//! `max_request_size` bytes each), writes them, and turns each answer into
//! an outcome per batch: written, retried after a backoff (in order, after
//! a metadata refresh), or failed. It also takes the idempotent producer's
//! id, and a fresh one when a partition's sequence is broken.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rill_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use rill_protocol::messages::produce_response::PartitionProduceResponse;
use rill_protocol::messages::{InitProducerIdRequest, ProduceRequest};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::set_producer;

use super::Shared;
use super::accumulator::{Batch, PartitionQueue, State};
use super::config::Acks;
use crate::error::{Error, Result, code};
use crate::hash::FastMap;
use crate::topic_partition::TopicPartition;

/// The sender task: resets the idempotent producer when due, else sends
/// what a drain gives, else sleeps until woken or the next batch is due.
pub(super) async fn run_sender(shared: Arc<Shared>) {
    loop {
        let wake = shared.wake.notified();
        if shared.reset_due() {
            shared.reset_producer().await;
            continue;
        }
        let (ready, next_wake) = shared.drain();
        if !ready.is_empty() {
            send_batches(&shared, ready).await;
            continue;
        }
        {
            let state = shared.lock();
            if state.closed && state.queues().all(|queue| queue.in_flight.is_empty()) {
                return;
            }
        }
        match next_wake {
            Some(at) => {
                let _ = tokio::time::timeout_at(at.into(), wake).await;
            }
            None => wake.await,
        }
    }
}

impl Shared {
    /// Takes a producer id for the idempotent producer (InitProducerId).
    pub(super) async fn init_producer_id(&self) -> Result<()> {
        let response = self
            .client
            .call_any(ApiKey::InitProducerId, |_| {
                RequestBody::InitProducerId(InitProducerIdRequest {
                    transactional_id: None,
                    transaction_timeout_ms: i32::MAX,
                    producer_id: -1,
                    producer_epoch: -1,
                    ..Default::default()
                })
            })
            .await?;
        let ResponseBody::InitProducerId(response) = response else {
            return Err(Error::Protocol {
                addr: "broker".into(),
                reason: "InitProducerId answered with another API".into(),
            });
        };
        if response.error_code != code::NONE {
            return Err(Error::kafka("InitProducerId", response.error_code, None));
        }
        let mut state = self.lock();
        state.producer_id = response.producer_id;
        state.producer_epoch = response.producer_epoch;
        Ok(())
    }

    /// Whether a reset is due: asked for, and nothing is on the wire.
    fn reset_due(&self) -> bool {
        let state = self.lock();
        state.reset && state.queues().all(|queue| queue.in_flight.is_empty())
    }

    /// Takes a fresh producer id and restarts every partition's sequence at
    /// 0, renumbering the batches waiting to be retried in their order (a
    /// batch's producer fields are under its CRC, so they are rewritten).
    async fn reset_producer(&self) {
        if let Err(error) = self.init_producer_id().await {
            tracing::warn!(%error, "cannot reset the idempotent producer; trying again");
            tokio::time::sleep(self.config.retry_backoff).await;
            return;
        }
        let mut state = self.lock();
        let (producer_id, producer_epoch) = (state.producer_id, state.producer_epoch);
        for queue in state.queues.values_mut().flat_map(FastMap::values_mut) {
            let mut sequence = 0i32;
            for batch in &mut queue.retry {
                let mut bytes = batch.bytes.to_vec();
                if set_producer(&mut bytes, producer_id, producer_epoch, sequence).is_ok() {
                    batch.bytes = Bytes::from(bytes);
                }
                batch.base_sequence = sequence;
                sequence = sequence.wrapping_add(batch.count) & i32::MAX;
            }
            queue.next_sequence = sequence;
        }
        state.reset = false;
        drop(state);
        self.wake.notify_one();
    }

    /// Records the outcome of one batch.
    pub(super) fn complete(&self, tp: &TopicPartition, batch: Batch, outcome: Outcome) {
        let mut guard = self.lock();
        let State { queues, reset, .. } = &mut *guard;
        let Some(queue) = queues
            .get_mut(&tp.topic)
            .and_then(|by_partition| by_partition.get_mut(&tp.partition))
        else {
            drop(guard);
            self.memory.give_back(batch.memory);
            return;
        };
        let position = queue
            .in_flight
            .iter()
            .position(|order| *order == batch.order);
        if let Some(position) = position {
            queue.in_flight.remove(position);
        }
        let failed = match outcome.resolve(reset, position, queue) {
            Outcome::Written { base_offset } => {
                batch.completion.complete(Ok(base_offset));
                None
            }
            Outcome::Retry(error) if batch.first_sent.elapsed() < self.config.delivery_timeout => {
                self.queue_retry(queue, tp, batch, &error);
                drop(guard);
                self.wake.notify_one();
                return;
            }
            Outcome::Retry(error) => Some(Error::DeliveryTimeout {
                timeout_ms: self.config.delivery_timeout.as_millis() as u64,
                last: error.to_string(),
            }),
            Outcome::Failed(error)
            | Outcome::OutOfOrder(error)
            | Outcome::UnknownProducer(error) => Some(error),
        };
        if let Some(error) = failed {
            batch.completion.complete(Err(error));
            if self.idempotent {
                // Its sequences may or may not be on the broker: a fresh
                // producer id is the only safe way on.
                *reset = true;
            }
        }
        drop(guard);
        self.memory.give_back(batch.memory);
        self.progress.notify_waiters();
        self.wake.notify_one();
    }

    /// Puts a batch back among its partition's retries, in build order,
    /// after a backoff that doubles with each attempt.
    fn queue_retry(
        &self,
        queue: &mut PartitionQueue,
        tp: &TopicPartition,
        mut batch: Batch,
        error: &Error,
    ) {
        let backoff = self
            .config
            .retry_backoff
            .saturating_mul(1 << batch.attempts.min(10))
            .min(self.config.retry_backoff_max);
        batch.retry_at = Some(Instant::now() + backoff);
        tracing::debug!(%error, topic = %tp.topic, partition = tp.partition, "produce will be retried");
        let at = queue
            .retry
            .partition_point(|queued| queued.order < batch.order);
        queue.retry.insert(at, batch);
    }
}

/// How a sent batch fared.
pub(super) enum Outcome {
    Written {
        base_offset: i64,
    },
    Retry(Error),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER from the broker.
    OutOfOrder(Error),
    /// UNKNOWN_PRODUCER_ID: the broker no longer knows this producer.
    UnknownProducer(Error),
    Failed(Error),
}

impl Outcome {
    /// What the broker's sequence errors mean for this batch, given its
    /// place among its partition's batches in flight (`position`, before it
    /// was taken off) and the producer's pending reset.
    fn resolve(self, reset: &mut bool, position: Option<usize>, queue: &PartitionQueue) -> Outcome {
        match self {
            // The broker refused this batch because one before it is
            // missing: retriable while that one is still to be resolved
            // (in flight before it, waiting to be retried, or about to be
            // renumbered by a reset); otherwise this producer's sequence is
            // broken and only a reset repairs it.
            Outcome::OutOfOrder(error) => {
                if *reset || position.is_some_and(|at| at > 0) || !queue.retry.is_empty() {
                    Outcome::Retry(error)
                } else {
                    Outcome::Failed(error)
                }
            }
            Outcome::UnknownProducer(error) => {
                *reset = true;
                Outcome::Retry(error)
            }
            other => other,
        }
    }
}

/// The batches for one leader, as requests: a request carries at most one
/// batch per partition (as Kafka requires), so a partition's second batch
/// goes in a later request, written after the first.
type Rounds = Vec<Vec<(TopicPartition, Batch)>>;

/// Places batches into rounds in the order given: each in the first round
/// after its partition's previous batch that has room for it under
/// `max_bytes` (an empty round always has room). Rounds before `first_open`
/// were found too full for a batch and are skipped, so placing is about
/// constant time per batch, whatever the number of partitions.
struct RoundPlanner<T> {
    rounds: Vec<Vec<(TopicPartition, T)>>,
    bytes: Vec<usize>,
    first_open: usize,
    /// A partition's next possible round, keyed by a hash of the topic and
    /// the partition (no allocation per batch): a collision only makes a
    /// batch wait for a later round than it had to.
    next: FastMap<(u64, i32), usize>,
}

impl<T> RoundPlanner<T> {
    fn new() -> RoundPlanner<T> {
        RoundPlanner {
            rounds: Vec::new(),
            bytes: Vec::new(),
            first_open: 0,
            next: FastMap::default(),
        }
    }

    fn place(&mut self, tp: TopicPartition, item: T, len: usize, max_bytes: usize) {
        let key = (self.next.hasher().hash_one(&tp.topic), tp.partition);
        let mut r = self
            .next
            .get(&key)
            .copied()
            .unwrap_or(0)
            .max(self.first_open);
        loop {
            if r == self.rounds.len() {
                self.rounds.push(Vec::new());
                self.bytes.push(0);
            }
            if self.rounds[r].is_empty() || self.bytes[r] + len <= max_bytes {
                break;
            }
            if r == self.first_open {
                self.first_open += 1;
            }
            r += 1;
        }
        self.bytes[r] += len;
        self.rounds[r].push((tp, item));
        self.next.insert(key, r + 1);
    }
}

/// Groups batches by leader and writes each leader's requests in order,
/// from this task (so a partition's batches reach the broker in the order
/// they were built); each leader's answers are awaited in a task of their
/// own, so the sender goes back to draining at once.
async fn send_batches(shared: &Arc<Shared>, ready: Vec<(TopicPartition, Batch)>) {
    let mut by_leader: HashMap<i32, RoundPlanner<Batch>> = HashMap::new();
    let max_bytes = shared.config.max_request_size;
    for (tp, batch) in ready {
        match shared.client.leader(&tp.topic, tp.partition).await {
            Ok(leader) => {
                let len = batch.bytes.len();
                by_leader
                    .entry(leader)
                    .or_insert_with(RoundPlanner::new)
                    .place(tp, batch, len, max_bytes);
            }
            Err(error) => {
                let outcome = if error.is_retriable() {
                    let _ = shared.client.refresh_topic(&tp.topic).await;
                    Outcome::Retry(error)
                } else {
                    Outcome::Failed(error)
                };
                shared.complete(&tp, batch, outcome);
            }
        }
    }
    for (leader, planner) in by_leader {
        send_to_leader(shared, leader, planner.rounds).await;
    }
}

async fn send_to_leader(shared: &Arc<Shared>, leader: i32, rounds: Rounds) {
    let connection = match shared.client.connection(leader).await {
        Ok(connection) => connection,
        Err(error) => return all_failed(shared, leader, rounds, &error).await,
    };
    let version = match connection.version(ApiKey::Produce) {
        Ok(version) => version,
        Err(error) => return all_failed(shared, leader, rounds, &error).await,
    };
    let mut rounds = rounds;
    let requests: Vec<RequestBody> = rounds
        .iter_mut()
        .map(|round| produce_request(shared, round))
        .collect();
    // All rounds in one write: with small batches this is what keeps the
    // producer from paying a system call per message.
    if shared.config.acks == Acks::None {
        let written = connection.send_oneway(version, &requests).await;
        for round in rounds {
            match &written {
                Ok(()) => answered(shared, leader, round, Ok(None)).await,
                Err(error) => request_failed(shared, leader, round, error).await,
            }
        }
        return;
    }
    let answers = match connection.write_requests(version, &requests).await {
        Ok(answers) => answers,
        Err(error) => return all_failed(shared, leader, rounds, &error).await,
    };
    drop(requests);
    let shared = shared.clone();
    tokio::spawn(async move {
        for (round, answer) in rounds.into_iter().zip(answers) {
            let result = answer.wait().await.map(Some);
            answered(&shared, leader, round, result).await;
        }
    });
}

/// Every round for `leader` failed before it was written.
async fn all_failed(shared: &Shared, leader: i32, rounds: Rounds, error: &Error) {
    for round in rounds {
        request_failed(shared, leader, round, error).await;
    }
}

/// The Produce request for one round of batches (one per partition).
fn produce_request(shared: &Shared, round: &mut [(TopicPartition, Batch)]) -> RequestBody {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, batch) in round.iter_mut() {
        batch.attempts += 1;
        let data = PartitionProduceData {
            index: tp.partition,
            records: Some(Records::Bytes(batch.bytes.clone())),
            ..Default::default()
        };
        match topics.iter_mut().find(|topic| topic.name == tp.topic) {
            Some(topic) => topic.partition_data.push(data),
            None => topics.push(TopicProduceData {
                name: tp.topic.clone(),
                partition_data: vec![data],
                ..Default::default()
            }),
        }
    }
    RequestBody::Produce(ProduceRequest {
        transactional_id: None,
        acks: shared.config.acks.wire(),
        timeout_ms: shared.config.client.request_timeout.as_millis() as i32,
        topic_data: topics,
        ..Default::default()
    })
}

/// Handles the answer to one request: `Ok(None)` when none was asked for
/// (acks=0) and the request was written.
async fn answered(
    shared: &Shared,
    leader: i32,
    batches: Vec<(TopicPartition, Batch)>,
    result: Result<Option<ResponseBody>>,
) {
    match result {
        Ok(None) => {
            for (tp, batch) in batches {
                shared.complete(&tp, batch, Outcome::Written { base_offset: -1 });
            }
        }
        Ok(Some(ResponseBody::Produce(response))) => {
            let mut answers = HashMap::new();
            for topic in response.responses {
                for partition in topic.partition_responses {
                    answers.insert(TopicPartition::new(&topic.name, partition.index), partition);
                }
            }
            let mut refresh = Vec::new();
            for (tp, batch) in batches {
                let outcome = produce_outcome(leader, &tp, answers.remove(&tp), &mut refresh);
                shared.complete(&tp, batch, outcome);
            }
            if !refresh.is_empty() {
                refresh.sort();
                refresh.dedup();
                let _ = shared.client.refresh_metadata(Some(&refresh)).await;
            }
        }
        Ok(Some(_)) => {
            for (tp, batch) in batches {
                let error = Error::Protocol {
                    addr: format!("broker {leader}"),
                    reason: "Produce answered with another API".into(),
                };
                shared.complete(&tp, batch, Outcome::Failed(error));
            }
        }
        Err(error) => request_failed(shared, leader, batches, &error).await,
    }
}

/// A batch's outcome from its partition's answer in a Produce response;
/// a retriable error adds the topic to `refresh`.
fn produce_outcome(
    leader: i32,
    tp: &TopicPartition,
    answer: Option<PartitionProduceResponse>,
    refresh: &mut Vec<String>,
) -> Outcome {
    let Some(answer) = answer else {
        return Outcome::Retry(Error::Protocol {
            addr: format!("broker {leader}"),
            reason: format!("no answer for {tp}"),
        });
    };
    let error = || {
        Error::kafka(
            format!("produce to {tp}"),
            answer.error_code,
            answer.error_message.clone(),
        )
    };
    match answer.error_code {
        // DUPLICATE: a retry of a batch the broker already wrote.
        code::NONE | code::DUPLICATE_SEQUENCE_NUMBER => Outcome::Written {
            base_offset: answer.base_offset,
        },
        code::OUT_OF_ORDER_SEQUENCE_NUMBER => Outcome::OutOfOrder(error()),
        code::UNKNOWN_PRODUCER_ID => Outcome::UnknownProducer(error()),
        error_code if code::is_retriable(error_code) => {
            refresh.push(tp.topic.clone());
            Outcome::Retry(error())
        }
        _ => Outcome::Failed(error()),
    }
}

/// A request that got no answer: its batches are retried when the cause
/// may pass (a dropped connection, a moved leader), after a metadata
/// refresh.
async fn request_failed(
    shared: &Shared,
    leader: i32,
    batches: Vec<(TopicPartition, Batch)>,
    error: &Error,
) {
    let retriable =
        error.is_retriable() || matches!(error, Error::Protocol { .. } | Error::UnknownBroker(_));
    let topics: Vec<String> = batches.iter().map(|(tp, _)| tp.topic.clone()).collect();
    let _ = shared.client.refresh_metadata(Some(&topics)).await;
    for (tp, batch) in batches {
        let error = Error::Protocol {
            addr: format!("broker {leader}"),
            reason: error.to_string(),
        };
        let outcome = if retriable {
            Outcome::Retry(error)
        } else {
            Outcome::Failed(error)
        };
        shared.complete(&tp, batch, outcome);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn tp(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition::new(topic, partition)
    }

    /// Requests stay under the size limit (a larger batch alone), carry a
    /// partition at most once, and a partition's batches go out in order.
    #[test]
    fn rounds_respect_the_request_size_and_keep_each_partitions_order() {
        let mut planner = RoundPlanner::new();
        let mut placed = Vec::new();
        for n in 0..3_000usize {
            let partition = (n * 7 % 1_000) as i32;
            let topic = if n % 2 == 0 { "a" } else { "b" };
            let len = if n == 1_234 { 5_000 } else { 100 + n % 300 };
            planner.place(tp(topic, partition), (n, len), len, 4_096);
            placed.push(n);
        }
        let mut last_round: HashMap<TopicPartition, (usize, usize)> = HashMap::new();
        let mut seen = 0;
        for (r, round) in planner.rounds.iter().enumerate() {
            let bytes: usize = round.iter().map(|(_, (_, len))| len).sum();
            assert!(
                bytes <= 4_096 || round.len() == 1,
                "round {r}: {bytes} bytes"
            );
            let mut in_round = std::collections::HashSet::new();
            for (tp, (n, _)) in round {
                assert!(in_round.insert(tp.clone()), "{tp:?} twice in round {r}");
                if let Some((previous_round, previous_n)) = last_round.get(tp) {
                    assert!(
                        *previous_round < r && *previous_n < *n,
                        "{tp:?} out of order"
                    );
                }
                last_round.insert(tp.clone(), (r, *n));
                seen += 1;
            }
        }
        assert_eq!(seen, placed.len());
        let total: usize = planner
            .rounds
            .iter()
            .flatten()
            .map(|(_, (_, len))| len)
            .sum();
        assert!(
            planner.rounds.len() <= total / 3_500 + 3,
            "{} rounds for {total} bytes: rounds are filled",
            planner.rounds.len()
        );
    }
}
