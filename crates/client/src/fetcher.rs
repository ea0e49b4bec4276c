//! The consumer's fetcher: a task keeps one Fetch in flight per leader and
//! queues decoded messages in a bounded buffer, so the next round trip is
//! already under way while the application handles the last answer.
//!
//! Each partition has a *position* (the next offset handed to the
//! application) and a *fetch position* (the next offset asked of the broker,
//! ahead of it by what is buffered). A seek, a pause or a new assignment bumps
//! the partition's generation, and buffered messages of an older generation
//! are dropped, so nothing from before a seek is ever delivered after it.
//! [`Shared`] is that state, shared by the fetcher task, the consumer and its
//! group membership.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rill_protocol::messages::FetchRequest;
use rill_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::{BatchIter, RECORD_LEN_MIN};
use rill_records::record::{Record, decode_shared_batch};
use tokio::sync::{Notify, mpsc};

use crate::client::Client;
use crate::consumer_config::ConsumerConfig;
use crate::error::{Error, Result, code};
use crate::message::{Header, Message};
use crate::requests::{Offset, list_offsets};
use crate::topic_partition::TopicPartition;

/// Fetch answers decoded ahead of the application. With the default 16 MiB
/// `fetch_max_bytes` this bounds read-ahead memory to 64 MiB.
const PREFETCH_RESPONSES: usize = 4;

/// The largest a batch may inflate to when decompressed; Kafka's own limit
/// on a batch is far smaller, so more is a decompression bomb.
const BATCH_INFLATED_BYTES_MAX: usize = 256 << 20;

#[derive(Debug)]
struct PartitionState {
    /// Next offset for the application; -1 until known.
    position: i64,
    fetch_position: i64,
    /// A seek not yet turned into an offset.
    reset: Option<Offset>,
    paused: bool,
    generation: u64,
    /// After a seek to a timestamp: skip messages older than it. A broker
    /// may answer the timestamp with the start of the batch holding it.
    skip_before_ms: Option<i64>,
}

#[derive(Default)]
struct State {
    partitions: BTreeMap<TopicPartition, PartitionState>,
    /// Offsets the application has finished with, ready to commit.
    consumed: HashMap<TopicPartition, i64>,
    next_generation: u64,
    closed: bool,
    /// The last error the fetcher could not get past, for `poll` to report.
    fatal: Option<String>,
}

impl State {
    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }
}

/// One partition's messages from one fetch answer, as queued for `poll`.
pub(crate) struct Fetched {
    tp: TopicPartition,
    generation: u64,
    messages: Vec<Message>,
}

pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) config: ConsumerConfig,
    state: Mutex<State>,
    wake: Notify,
}

impl Shared {
    /// The consumer's state with no partition assigned, and the fetcher
    /// task running on it; its answers come out of the receiver.
    pub(crate) fn start(
        client: Client,
        config: ConsumerConfig,
    ) -> (Arc<Shared>, mpsc::Receiver<Fetched>) {
        let shared = Arc::new(Shared {
            client,
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        let (sender, receiver) = mpsc::channel(PREFETCH_RESPONSES);
        tokio::spawn(run_fetcher(shared.clone(), sender));
        (shared, receiver)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the assignment. Partitions kept keep their position; new
    /// ones start at `starts` (committed offsets) or the reset policy.
    pub(crate) fn set_assignment(
        &self,
        assignment: &[TopicPartition],
        starts: &HashMap<TopicPartition, i64>,
    ) {
        let mut state = self.lock();
        state
            .partitions
            .retain(|tp, _| assignment.iter().any(|assigned| assigned == tp));
        state.consumed.retain(|tp, _| assignment.contains(tp));
        for tp in assignment {
            if state.partitions.contains_key(tp) {
                continue;
            }
            let generation = state.generation();
            let (position, reset) = match starts.get(tp) {
                Some(&offset) if offset >= 0 => (offset, None),
                _ => (-1, Some(self.config.auto_offset_reset)),
            };
            state.partitions.insert(
                tp.clone(),
                PartitionState {
                    position,
                    fetch_position: position,
                    reset,
                    paused: false,
                    generation,
                    skip_before_ms: None,
                },
            );
        }
        drop(state);
        self.wake.notify_one();
    }

    pub(crate) fn assignment(&self) -> Vec<TopicPartition> {
        self.lock().partitions.keys().cloned().collect()
    }

    /// The offsets to commit: what the application consumed.
    pub(crate) fn committable(&self) -> HashMap<TopicPartition, i64> {
        self.lock().consumed.clone()
    }

    pub(crate) fn mark_consumed(&self, message: &Message) {
        let tp = TopicPartition::new(message.topic(), message.partition);
        let mut state = self.lock();
        if state.partitions.contains_key(&tp) {
            let next = message.offset + 1;
            let entry = state.consumed.entry(tp).or_insert(next);
            *entry = (*entry).max(next);
        }
    }

    /// Moves a partition's position; the next message from it is at `offset`.
    pub(crate) fn seek(&self, tp: &TopicPartition, offset: Offset) -> Result<()> {
        let mut state = self.lock();
        let generation = state.generation();
        let Some(partition) = state.partitions.get_mut(tp) else {
            return Err(not_assigned(tp));
        };
        partition.generation = generation;
        partition.skip_before_ms = match offset {
            Offset::Timestamp(ms) => Some(ms),
            _ => None,
        };
        match offset {
            Offset::At(at) if at >= 0 => {
                partition.position = at;
                partition.fetch_position = at;
                partition.reset = None;
            }
            other => {
                partition.position = -1;
                partition.reset = Some(other);
            }
        }
        drop(state);
        self.wake.notify_one();
        Ok(())
    }

    pub(crate) fn set_paused(&self, partitions: &[TopicPartition], paused: bool) {
        let mut state = self.lock();
        for tp in partitions {
            let generation = state.generation();
            if let Some(partition) = state.partitions.get_mut(tp)
                && partition.paused != paused
            {
                partition.paused = paused;
                // Read-ahead past the position is dropped and fetched again.
                partition.generation = generation;
                partition.fetch_position = partition.position;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// The next offset handed out for `tp`, resolving a pending seek to the
    /// beginning, end or a timestamp now.
    pub(crate) async fn position(&self, tp: &TopicPartition) -> Result<i64> {
        resolve_resets(self).await?;
        self.lock()
            .partitions
            .get(tp)
            .map(|p| p.position)
            .filter(|&p| p >= 0)
            .ok_or_else(|| not_assigned(tp))
    }

    /// The last error the fetcher could not get past, once.
    pub(crate) fn take_fatal(&self) -> Option<String> {
        self.lock().fatal.take()
    }

    /// The messages of `fetched` still due to the application (none of a
    /// stale generation, a paused partition, or before the position), with
    /// the position moved past them; `None` when none is.
    pub(crate) fn accept(&self, fetched: Fetched) -> Option<Vec<Message>> {
        let mut state = self.lock();
        let partition = state.partitions.get_mut(&fetched.tp)?;
        if partition.generation != fetched.generation || partition.paused {
            return None;
        }
        let mut messages = fetched.messages;
        // Usually all are new; filtering then only moves every message.
        if messages
            .first()
            .is_some_and(|first| first.offset < partition.position)
        {
            messages.retain(|message| message.offset >= partition.position);
        }
        let last_offset = messages.last()?.offset;
        partition.position = last_offset + 1;
        if let Some(skip_before_ms) = partition.skip_before_ms {
            let first = messages
                .iter()
                .position(|m| m.timestamp.is_some_and(|t| t >= skip_before_ms))?;
            partition.skip_before_ms = None;
            messages.drain(..first);
        }
        Some(messages)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Stops the fetcher task.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

fn not_assigned(tp: &TopicPartition) -> Error {
    Error::Config(format!("{tp} is not assigned to this consumer"))
}

/// Resolves pending seeks and runs fetch rounds until the consumer closes.
async fn run_fetcher(shared: Arc<Shared>, sender: mpsc::Sender<Fetched>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let wake = shared.wake.notified();
        if shared.lock().closed {
            return;
        }
        if let Err(error) = resolve_resets(&shared).await {
            tracing::debug!(%error, "cannot resolve a consumer position yet");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
            continue;
        }
        let plan = fetch_plan(&shared).await;
        if plan.is_empty() {
            // Nothing to fetch: wait for an assignment, seek or resume.
            let _ = tokio::time::timeout(Duration::from_secs(1), wake).await;
            continue;
        }
        let mut rounds = tokio::task::JoinSet::new();
        for (leader, partitions) in plan {
            rounds.spawn(fetch_from(shared.clone(), leader, partitions));
        }
        let mut failed = false;
        while let Some(joined) = rounds.join_next().await {
            let Ok(result) = joined else { continue };
            match result {
                Ok(batches) => {
                    for fetched in batches {
                        if sender.send(fetched).await.is_err() {
                            return;
                        }
                    }
                }
                Err(error) => {
                    tracing::debug!(%error, "fetch failed");
                    failed = true;
                }
            }
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// Turns seeks to the beginning, end or a timestamp into offsets.
async fn resolve_resets(shared: &Shared) -> Result<()> {
    let pending: Vec<(TopicPartition, Offset, u64)> = shared
        .lock()
        .partitions
        .iter()
        .filter_map(|(tp, p)| p.reset.map(|reset| (tp.clone(), reset, p.generation)))
        .collect();
    for (tp, reset, generation) in pending {
        let offsets = list_offsets(&shared.client, &tp.topic, &[tp.partition], reset).await?;
        let Some(&offset) = offsets.get(&tp.partition) else {
            continue;
        };
        let mut state = shared.lock();
        if let Some(partition) = state.partitions.get_mut(&tp)
            && partition.generation == generation
        {
            partition.position = offset;
            partition.fetch_position = offset;
            partition.reset = None;
        }
    }
    Ok(())
}

/// The partitions to fetch now, grouped by leader, with their offsets and
/// generations.
async fn fetch_plan(shared: &Shared) -> HashMap<i32, Vec<Planned>> {
    let ready: Vec<Planned> = shared
        .lock()
        .partitions
        .iter()
        .filter(|(_, p)| !p.paused && p.reset.is_none() && p.fetch_position >= 0)
        .map(|(tp, p)| (tp.clone(), p.fetch_position, p.generation))
        .collect();
    let mut plan: HashMap<i32, Vec<Planned>> = HashMap::new();
    for (tp, offset, generation) in ready {
        match shared.client.leader(&tp.topic, tp.partition).await {
            Ok(leader) => plan
                .entry(leader)
                .or_default()
                .push((tp, offset, generation)),
            Err(_) => {
                let _ = shared.client.refresh_topic(&tp.topic).await;
            }
        }
    }
    plan
}

/// A partition to fetch: where from, and the generation it was planned at.
type Planned = (TopicPartition, i64, u64);

async fn fetch_from(
    shared: Arc<Shared>,
    leader: i32,
    partitions: Vec<Planned>,
) -> Result<Vec<Fetched>> {
    let config = &shared.config;
    let request = fetch_request(config, &partitions);
    let connection = shared.client.connection(leader).await?;
    let response = connection
        .call_with_timeout(
            ApiKey::Fetch,
            |_| RequestBody::Fetch(request),
            config.fetch_max_wait,
        )
        .await?;
    let ResponseBody::Fetch(response) = response else {
        return Err(Error::Protocol {
            addr: connection.addr().to_string(),
            reason: "Fetch answered with another API".into(),
        });
    };
    if response.error_code != code::NONE {
        return Err(Error::kafka("fetch", response.error_code, None));
    }
    let asked: HashMap<TopicPartition, (i64, u64)> = partitions
        .into_iter()
        .map(|(tp, offset, generation)| (tp, (offset, generation)))
        .collect();
    let mut fetched = Vec::new();
    let mut stale_topics = Vec::new();
    for topic in response.responses {
        for answer in topic.partitions {
            let tp = TopicPartition::new(&topic.topic, answer.partition_index);
            let Some(&(offset, generation)) = asked.get(&tp) else {
                continue;
            };
            let Some(bytes) = usable_records(&shared, &tp, answer, generation, &mut stale_topics)
            else {
                continue;
            };
            if let Some(batch) = take_records(&shared, tp, &bytes, offset, generation)? {
                fetched.push(batch);
            }
        }
    }
    if !stale_topics.is_empty() {
        stale_topics.sort();
        stale_topics.dedup();
        shared.client.refresh_metadata(Some(&stale_topics)).await?;
    }
    Ok(fetched)
}

/// One Fetch for `partitions`, all at the same leader.
fn fetch_request(config: &ConsumerConfig, partitions: &[Planned]) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset, _) in partitions {
        let partition = FetchPartition {
            partition: tp.partition,
            current_leader_epoch: -1,
            fetch_offset: *offset,
            last_fetched_epoch: -1,
            log_start_offset: -1,
            partition_max_bytes: config.partition_max_bytes,
            ..Default::default()
        };
        match topics.iter_mut().find(|t| t.topic == tp.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(FetchTopic {
                topic: tp.topic.clone(),
                partitions: vec![partition],
                ..Default::default()
            }),
        }
    }
    FetchRequest {
        replica_id: -1,
        max_wait_ms: config.fetch_max_wait.as_millis() as i32,
        min_bytes: config.fetch_min_bytes,
        max_bytes: config.fetch_max_bytes,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics,
        ..Default::default()
    }
}

/// A partition's records from a fetch answer, or `None` after handling its
/// error: an offset out of range resets the position, a moved or unknown
/// leader adds the topic to `stale_topics` for a metadata refresh.
fn usable_records(
    shared: &Shared,
    tp: &TopicPartition,
    answer: rill_protocol::messages::fetch_response::PartitionData,
    generation: u64,
    stale_topics: &mut Vec<String>,
) -> Option<Bytes> {
    match answer.error_code {
        code::NONE => {}
        code::OFFSET_OUT_OF_RANGE => {
            reset_out_of_range(shared, tp, generation);
            return None;
        }
        code::NOT_LEADER_OR_FOLLOWER
        | code::UNKNOWN_TOPIC_OR_PARTITION
        | code::LEADER_NOT_AVAILABLE
        | code::FENCED_LEADER_EPOCH
        | code::UNKNOWN_LEADER_EPOCH => {
            stale_topics.push(tp.topic.clone());
            return None;
        }
        other => {
            tracing::warn!(topic = %tp.topic, partition = tp.partition, error = code::name(other), "fetch error");
            return None;
        }
    }
    match answer.records {
        Some(Records::Bytes(bytes)) => Some(bytes),
        _ => None,
    }
}

/// Decodes a partition's records fetched from `offset` and moves its fetch
/// position past them, unless a seek, pause or reassignment made them stale.
fn take_records(
    shared: &Shared,
    tp: TopicPartition,
    bytes: &Bytes,
    offset: i64,
    generation: u64,
) -> Result<Option<Fetched>> {
    let (messages, next_offset) = decode_messages(&tp, bytes, offset)?;
    let mut state = shared.lock();
    let Some(partition) = state.partitions.get_mut(&tp) else {
        return Ok(None);
    };
    if partition.generation != generation || partition.fetch_position != offset {
        return Ok(None);
    }
    partition.fetch_position = next_offset;
    drop(state);
    Ok((!messages.is_empty()).then_some(Fetched {
        tp,
        generation,
        messages,
    }))
}

fn reset_out_of_range(shared: &Shared, tp: &TopicPartition, generation: u64) {
    let reset = shared.config.auto_offset_reset;
    let mut state = shared.lock();
    let next = state.generation();
    if let Some(partition) = state.partitions.get_mut(tp)
        && partition.generation == generation
    {
        partition.generation = next;
        partition.position = -1;
        partition.reset = Some(reset);
    }
}

/// A fetched record as the application's message.
fn to_message(
    record: Record,
    topic: &Arc<str>,
    partition: i32,
    offset: i64,
    timestamp: i64,
) -> Message {
    let headers = if record.headers.is_empty() {
        Vec::new()
    } else {
        record
            .headers
            .into_iter()
            .map(|header| Header {
                key: String::from_utf8_lossy(&header.key).into_owned(),
                value: header.value,
            })
            .collect()
    };
    Message {
        key: record.key,
        value: record.value,
        headers,
        topic: Some(topic.clone()),
        partition,
        offset,
        timestamp: Some(timestamp),
    }
}

/// Decodes the complete batches of a fetch answer into messages at or after
/// `from`; returns them and the offset to fetch next.
fn decode_messages(tp: &TopicPartition, bytes: &Bytes, from: i64) -> Result<(Vec<Message>, i64)> {
    // Room for every message of the answer at once: reserving batch by
    // batch doubled the vector as it went, moving the messages already
    // decoded each time. A batch header's count is trusted only as far as
    // the batch's bytes could hold that many records; a compressed batch
    // may hold more, and the vector grows for those.
    let room: usize = BatchIter::new(bytes)
        .map_while(Result::ok)
        .filter(|(_, view)| !view.is_control())
        .map(|(_, view)| {
            let fit = view.records_bytes().len() / RECORD_LEN_MIN;
            usize::try_from(view.record_count()).map_or(0, |count| count.min(fit))
        })
        .sum();
    let mut messages = Vec::with_capacity(room);
    // One topic name for every message of the answer: a `String` each was
    // an allocation per message.
    let topic: Arc<str> = Arc::from(tp.topic.as_str());
    let mut next_offset = from;
    for item in BatchIter::new(bytes) {
        // A fetch answer may end in a partial batch; it is fetched again.
        let Ok((position, view)) = item else { break };
        let end = position + view.total_len();
        if end > bytes.len() {
            break;
        }
        // Uncompressed records stay slices of the answer: no copy.
        let batch = decode_shared_batch(&bytes.slice(position..end), BATCH_INFLATED_BYTES_MAX)?;
        next_offset = next_offset.max(batch.last_offset() + 1);
        if batch.is_control {
            continue;
        }
        // The records are moved apart, not cloned: their keys and values
        // become the messages' without touching the answer's count.
        for (offset, timestamp, record) in batch.into_records() {
            if offset < from {
                continue;
            }
            messages.push(to_message(record, &topic, tp.partition, offset, timestamp));
        }
    }
    Ok((messages, next_offset))
}
