//! The consumer: a fetcher task keeps one Fetch in flight per leader and
//! queues decoded messages in a bounded buffer, so the next round trip is
//! already under way while the application handles the last answer.
//!
//! Each partition has a *position* (the next offset handed to the
//! application) and a *fetch position* (the next offset asked of the broker,
//! ahead of it by what is buffered). A seek, a pause or a new assignment bumps
//! the partition's generation, and buffered messages of an older generation
//! are dropped, so nothing from before a seek is ever delivered after it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rill_protocol::messages::FetchRequest;
use rill_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use rill_protocol::{ApiKey, Records, RequestBody, ResponseBody};
use rill_records::batch::{BatchIter, RECORD_LEN_MIN};
use rill_records::record::decode_shared_batch;
use tokio::sync::{Notify, mpsc};

use crate::admin::{Offset, list_offsets};
use crate::client::{Client, ClientConfig};
use crate::error::{Error, Result, code};
use crate::group::{Assignor, GroupMember};
use crate::group_consumer::ConsumerMember;
use crate::message::{Header, Message};

/// Fetch answers decoded ahead of the application. With the default 16 MiB
/// `fetch_max_bytes` this bounds read-ahead memory to 64 MiB.
const PREFETCH_RESPONSES: usize = 4;

/// The largest a batch may inflate to when decompressed; Kafka's own limit
/// on a batch is far smaller, so more is a decompression bomb.
const BATCH_INFLATED_BYTES_MAX: usize = 256 << 20;

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.to_string(),
            partition,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub client: ClientConfig,
    /// The consumer group; `None` consumes alone (assign mode).
    pub group_id: Option<String>,
    /// Where to start when there is no committed offset, or the position
    /// fell off the log: `Offset::Beginning` or `Offset::End` (Kafka's
    /// `auto.offset.reset`, default latest).
    pub auto_offset_reset: Offset,
    pub enable_auto_commit: bool,
    pub auto_commit_interval: Duration,
    /// How long the broker may hold a fetch waiting for data.
    pub fetch_max_wait: Duration,
    pub fetch_min_bytes: i32,
    pub fetch_max_bytes: i32,
    pub partition_max_bytes: i32,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    /// Assignors offered to the group, preferred first (classic protocol).
    pub assignors: Vec<Assignor>,
    /// Which group protocol to speak (Kafka's `group.protocol`).
    pub group_protocol: GroupProtocol,
    /// With [`GroupProtocol::Consumer`], the coordinator's assignor to use
    /// (`uniform` or `range`); `None` lets the broker choose (Kafka's
    /// `group.remote.assignor`).
    pub group_remote_assignor: Option<String>,
}

/// The consumer group protocol (Kafka's `group.protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup with a client-side assignor, rebalances
    /// stopping the group (eager) or not (cooperative).
    #[default]
    Classic,
    /// KIP-848: the coordinator assigns, members only heartbeat
    /// (ConsumerGroupHeartbeat) and reconcile; no group-wide pause.
    Consumer,
}

impl Default for ConsumerConfig {
    fn default() -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            auto_offset_reset: Offset::End,
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            fetch_max_wait: Duration::from_millis(500),
            fetch_min_bytes: 1,
            fetch_max_bytes: 16 << 20,
            partition_max_bytes: 1 << 20,
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(3),
            assignors: vec![Assignor::Range, Assignor::CooperativeSticky],
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
        }
    }
}

impl ConsumerConfig {
    pub fn new(brokers: &str) -> ConsumerConfig {
        ConsumerConfig {
            client: ClientConfig::new(brokers),
            ..ConsumerConfig::default()
        }
    }

    pub fn group(mut self, group_id: &str) -> ConsumerConfig {
        self.group_id = Some(group_id.to_string());
        self
    }

    pub fn from_beginning(mut self) -> ConsumerConfig {
        self.auto_offset_reset = Offset::Beginning;
        self
    }
}

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

struct Fetched {
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

    fn mark_consumed(&self, message: &Message) {
        let tp = TopicPartition::new(message.topic(), message.partition);
        let mut state = self.lock();
        if state.partitions.contains_key(&tp) {
            let next = message.offset + 1;
            let entry = state.consumed.entry(tp).or_insert(next);
            *entry = (*entry).max(next);
        }
    }
}

/// The async consumer.
#[derive(Clone)]
pub struct AsyncConsumer {
    shared: Arc<Shared>,
    fetched: Arc<tokio::sync::Mutex<mpsc::Receiver<Fetched>>>,
    group: Option<Group>,
}

/// The consumer's group membership, by protocol.
#[derive(Clone)]
enum Group {
    Classic(Arc<GroupMember>),
    Consumer(Arc<ConsumerMember>),
}

impl Group {
    async fn start(&self, topics: Vec<String>) -> Result<()> {
        match self {
            Group::Classic(member) => member.clone().start(topics).await,
            Group::Consumer(member) => member.clone().start(topics).await,
        }
    }

    async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        match self {
            Group::Classic(member) => member.committed(partitions).await,
            Group::Consumer(member) => member.committed(partitions).await,
        }
    }

    async fn commit(&self, offsets: HashMap<TopicPartition, i64>) -> Result<()> {
        match self {
            Group::Classic(member) => member.commit(offsets).await,
            Group::Consumer(member) => member.commit(offsets).await,
        }
    }

    async fn leave(&self) -> Result<()> {
        match self {
            Group::Classic(member) => member.leave().await,
            Group::Consumer(member) => member.leave().await,
        }
    }
}

impl AsyncConsumer {
    /// Connects to the cluster and starts the fetcher; nothing is consumed
    /// until [`AsyncConsumer::assign`] or [`AsyncConsumer::subscribe`].
    pub async fn connect(config: ConsumerConfig) -> Result<AsyncConsumer> {
        let client = Client::connect(config.client.clone()).await?;
        let group_id = config.group_id.clone();
        let shared = Arc::new(Shared {
            client,
            config,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        });
        let (sender, receiver) = mpsc::channel(PREFETCH_RESPONSES);
        tokio::spawn(run_fetcher(shared.clone(), sender));
        let group = group_id.map(|group_id| match shared.config.group_protocol {
            GroupProtocol::Classic => Group::Classic(GroupMember::new(shared.clone(), group_id)),
            GroupProtocol::Consumer => {
                Group::Consumer(ConsumerMember::new(shared.clone(), group_id))
            }
        });
        Ok(AsyncConsumer {
            shared,
            fetched: Arc::new(tokio::sync::Mutex::new(receiver)),
            group,
        })
    }

    pub fn client(&self) -> &Client {
        &self.shared.client
    }

    /// Consumes exactly these partitions, from the group's committed offsets
    /// when there is a group, else from `auto_offset_reset`.
    pub async fn assign(&self, partitions: Vec<TopicPartition>) -> Result<()> {
        for tp in &partitions {
            let info = self.shared.client.topic(&tp.topic).await?;
            if !info.partitions.iter().any(|p| p.partition == tp.partition) {
                return Err(Error::UnknownPartition {
                    topic: tp.topic.clone(),
                    partition: tp.partition,
                });
            }
        }
        let starts = match &self.group {
            Some(group) => group.committed(&partitions).await?,
            None => HashMap::new(),
        };
        self.shared.set_assignment(&partitions, &starts);
        Ok(())
    }

    /// Every partition of `topic`.
    pub async fn assign_topic(&self, topic: &str) -> Result<()> {
        let info = self.shared.client.topic(topic).await?;
        let partitions = info
            .partitions
            .iter()
            .map(|p| TopicPartition::new(topic, p.partition))
            .collect();
        self.assign(partitions).await
    }

    /// Joins the consumer group for these topics; the group's coordinator
    /// hands out partitions, and rebalances when members come and go.
    pub async fn subscribe(&self, topics: &[&str]) -> Result<()> {
        let Some(group) = &self.group else {
            return Err(Error::Config("subscribe needs a group_id".into()));
        };
        for topic in topics {
            self.shared.client.topic(topic).await?;
        }
        group
            .start(topics.iter().map(|t| t.to_string()).collect())
            .await
    }

    /// The partitions currently assigned.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.assignment()
    }

    /// Moves a partition's position; the next message from it is at `offset`.
    pub fn seek(&self, tp: &TopicPartition, offset: Offset) -> Result<()> {
        let mut state = self.shared.lock();
        let generation = state.generation();
        let Some(partition) = state.partitions.get_mut(tp) else {
            return Err(Error::Config(format!(
                "{}-{} is not assigned to this consumer",
                tp.topic, tp.partition
            )));
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
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Seeks every assigned partition.
    pub fn seek_all(&self, offset: Offset) -> Result<()> {
        for tp in self.assignment() {
            self.seek(&tp, offset)?;
        }
        Ok(())
    }

    /// Stops fetching these partitions until [`AsyncConsumer::resume`];
    /// their positions stay where the application left them.
    pub fn pause(&self, partitions: &[TopicPartition]) {
        self.set_paused(partitions, true);
    }

    pub fn resume(&self, partitions: &[TopicPartition]) {
        self.set_paused(partitions, false);
    }

    fn set_paused(&self, partitions: &[TopicPartition], paused: bool) {
        let mut state = self.shared.lock();
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
        self.shared.wake.notify_one();
    }

    /// The next offset this consumer will hand out for `tp`. A pending seek
    /// to the beginning, end or a timestamp is resolved now, as in Kafka.
    pub async fn position(&self, tp: &TopicPartition) -> Result<i64> {
        resolve_resets(&self.shared).await?;
        self.shared
            .lock()
            .partitions
            .get(tp)
            .map(|p| p.position)
            .filter(|&p| p >= 0)
            .ok_or_else(|| {
                Error::Config(format!(
                    "{}-{} is not assigned to this consumer",
                    tp.topic, tp.partition
                ))
            })
    }

    /// Waits up to `timeout` for messages; an empty vector means none came.
    /// What it returns counts as consumed for commits.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<Message>> {
        let messages = self.poll_uncommitted(timeout).await?;
        if let Some(last) = messages.last() {
            // Messages of one call come from one partition, in order.
            self.shared.mark_consumed(last);
        }
        Ok(messages)
    }

    /// As `poll`, leaving it to the caller to mark messages consumed.
    pub(crate) async fn poll_uncommitted(&self, timeout: Duration) -> Result<Vec<Message>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut receiver = self.fetched.lock().await;
        loop {
            if let Some(error) = self.shared.lock().fatal.take() {
                return Err(Error::Protocol {
                    addr: "fetcher".into(),
                    reason: error,
                });
            }
            let fetched = match tokio::time::timeout_at(deadline, receiver.recv()).await {
                Err(_) => return Ok(Vec::new()),
                Ok(None) => return Err(Error::ConsumerClosed),
                Ok(Some(fetched)) => fetched,
            };
            let mut state = self.shared.lock();
            let Some(partition) = state.partitions.get_mut(&fetched.tp) else {
                continue;
            };
            if partition.generation != fetched.generation || partition.paused {
                continue;
            }
            let mut messages = fetched.messages;
            // Usually all are new; filtering then only moves every message.
            if messages
                .first()
                .is_some_and(|first| first.offset < partition.position)
            {
                messages.retain(|message| message.offset >= partition.position);
            }
            let Some(last_offset) = messages.last().map(|m| m.offset) else {
                continue;
            };
            partition.position = last_offset + 1;
            if let Some(skip_before_ms) = partition.skip_before_ms {
                match messages
                    .iter()
                    .position(|m| m.timestamp.is_some_and(|t| t >= skip_before_ms))
                {
                    Some(first) => {
                        partition.skip_before_ms = None;
                        messages.drain(..first);
                    }
                    None => continue,
                }
            }
            return Ok(messages);
        }
    }

    /// Marks a message as processed: commits cover it from now on.
    pub fn mark_consumed(&self, message: &Message) {
        self.shared.mark_consumed(message);
    }

    /// Commits what was consumed to the group, now.
    pub async fn commit(&self) -> Result<()> {
        match &self.group {
            Some(group) => group.commit(self.shared.committable()).await,
            None => Err(Error::Config("commit needs a group_id".into())),
        }
    }

    /// Commits (when auto-commit is on), leaves the group, stops fetching.
    pub async fn close(&self) -> Result<()> {
        let result = match &self.group {
            Some(group) => group.leave().await,
            None => Ok(()),
        };
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        result
    }
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
async fn fetch_plan(shared: &Shared) -> HashMap<i32, Vec<(TopicPartition, i64, u64)>> {
    let ready: Vec<(TopicPartition, i64, u64)> = shared
        .lock()
        .partitions
        .iter()
        .filter(|(_, p)| !p.paused && p.reset.is_none() && p.fetch_position >= 0)
        .map(|(tp, p)| (tp.clone(), p.fetch_position, p.generation))
        .collect();
    let mut plan: HashMap<i32, Vec<(TopicPartition, i64, u64)>> = HashMap::new();
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

async fn fetch_from(
    shared: Arc<Shared>,
    leader: i32,
    partitions: Vec<(TopicPartition, i64, u64)>,
) -> Result<Vec<Fetched>> {
    let config = &shared.config;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, offset, _) in &partitions {
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
    let request = FetchRequest {
        replica_id: -1,
        max_wait_ms: config.fetch_max_wait.as_millis() as i32,
        min_bytes: config.fetch_min_bytes,
        max_bytes: config.fetch_max_bytes,
        isolation_level: 0,
        session_id: 0,
        session_epoch: -1,
        topics,
        ..Default::default()
    };
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
    let asked: HashMap<(String, i32), (i64, u64)> = partitions
        .into_iter()
        .map(|(tp, offset, generation)| ((tp.topic, tp.partition), (offset, generation)))
        .collect();
    let mut fetched = Vec::new();
    let mut stale_topics = Vec::new();
    for topic in response.responses {
        for answer in topic.partitions {
            let key = (topic.topic.clone(), answer.partition_index);
            let Some(&(offset, generation)) = asked.get(&key) else {
                continue;
            };
            let tp = TopicPartition::new(&topic.topic, answer.partition_index);
            match answer.error_code {
                code::NONE => {}
                code::OFFSET_OUT_OF_RANGE => {
                    reset_out_of_range(&shared, &tp, generation);
                    continue;
                }
                code::NOT_LEADER_OR_FOLLOWER
                | code::UNKNOWN_TOPIC_OR_PARTITION
                | code::LEADER_NOT_AVAILABLE
                | code::FENCED_LEADER_EPOCH
                | code::UNKNOWN_LEADER_EPOCH => {
                    stale_topics.push(tp.topic.clone());
                    continue;
                }
                other => {
                    tracing::warn!(topic = %tp.topic, partition = tp.partition, error = code::name(other), "fetch error");
                    continue;
                }
            }
            let Some(Records::Bytes(bytes)) = answer.records else {
                continue;
            };
            let (messages, next_offset) = decode_messages(&tp, &bytes, offset)?;
            let mut state = shared.lock();
            let Some(partition) = state.partitions.get_mut(&tp) else {
                continue;
            };
            if partition.generation != generation || partition.fetch_position != offset {
                continue;
            }
            partition.fetch_position = next_offset;
            drop(state);
            if !messages.is_empty() {
                fetched.push(Fetched {
                    tp,
                    generation,
                    messages,
                });
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
            messages.push(Message {
                key: record.key,
                value: record.value,
                headers,
                topic: Some(topic.clone()),
                partition: tp.partition,
                offset,
                timestamp: Some(timestamp),
            });
        }
    }
    Ok((messages, next_offset))
}

/// The paper's consumer: `create_message_streams(topic, n)` returns `n`
/// blocking iterators that never end, with the topic's partitions divided
/// evenly among them (and among the group's processes when there is a
/// group). It runs its own tokio runtime; call it from plain threads.
pub struct Consumer {
    runtime: tokio::runtime::Runtime,
    inner: AsyncConsumer,
    /// Each stream's last message handed out, not yet counted as consumed.
    handed_out: Mutex<Vec<Arc<Mutex<Option<Message>>>>>,
}

impl Consumer {
    pub fn new(config: ConsumerConfig) -> Result<Consumer> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rill-consumer")
            .enable_all()
            .build()
            .map_err(|error| Error::Config(format!("cannot start a tokio runtime: {error}")))?;
        let inner = runtime.block_on(AsyncConsumer::connect(config))?;
        Ok(Consumer {
            runtime,
            inner,
            handed_out: Mutex::new(Vec::new()),
        })
    }

    /// A consumer of `group` on these brokers, starting at the beginning
    /// of each partition the group has no offset for.
    pub fn connect(brokers: &str, group: Option<&str>) -> Result<Consumer> {
        let mut config = ConsumerConfig::new(brokers).from_beginning();
        config.group_id = group.map(String::from);
        Consumer::new(config)
    }

    /// `n` streams over `topic`. Each blocks when it has nothing new and
    /// ends only when the consumer is closed.
    pub fn create_message_streams(&self, topic: &str, n: usize) -> Result<Vec<MessageStream>> {
        if n == 0 {
            return Err(Error::Config("at least one stream is needed".into()));
        }
        let inner = self.inner.clone();
        self.runtime.block_on(async {
            if inner.group.is_some() {
                inner.subscribe(&[topic]).await
            } else {
                inner.assign_topic(topic).await
            }
        })?;
        // Per stream, messages waiting for the application: bounded so a
        // slow stream holds back fetching instead of filling memory.
        const STREAM_BUFFER: usize = 1024;
        let mut senders = Vec::with_capacity(n);
        let mut streams = Vec::with_capacity(n);
        for _ in 0..n {
            let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
            senders.push(sender);
            let handed_out = Arc::new(Mutex::new(None));
            if let Ok(mut all) = self.handed_out.lock() {
                all.push(handed_out.clone());
            }
            streams.push(MessageStream {
                receiver,
                shared: inner.shared.clone(),
                handed_out,
            });
        }
        self.runtime.spawn(dispatch(inner, senders));
        Ok(streams)
    }

    /// The async consumer underneath.
    pub fn as_async(&self) -> &AsyncConsumer {
        &self.inner
    }

    /// Commits everything the streams handed out, now.
    pub fn commit(&self) -> Result<()> {
        self.mark_handed_out();
        self.runtime.block_on(self.inner.commit())
    }

    /// Leaves the group (committing everything handed out, with
    /// auto-commit) and ends the streams.
    pub fn close(&self) -> Result<()> {
        self.mark_handed_out();
        self.runtime.block_on(self.inner.close())
    }

    fn mark_handed_out(&self) {
        let slots = match self.handed_out.lock() {
            Ok(slots) => slots.clone(),
            Err(_) => return,
        };
        for slot in &slots {
            let last = slot.lock().ok().and_then(|mut last| last.take());
            if let Some(message) = last {
                self.inner.shared.mark_consumed(&message);
            }
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Hands each message to the stream that owns its partition: the
/// partition's place among the assigned ones, modulo the stream count.
async fn dispatch(consumer: AsyncConsumer, senders: Vec<mpsc::Sender<Message>>) {
    loop {
        let messages = match consumer.poll_uncommitted(Duration::from_secs(1)).await {
            Ok(messages) => messages,
            Err(Error::ConsumerClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "consumer stream fetch failed; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let Some(first) = messages.first() else {
            if consumer.shared.lock().closed {
                return;
            }
            continue;
        };
        let tp = TopicPartition::new(first.topic(), first.partition);
        let index = consumer
            .assignment()
            .iter()
            .position(|assigned| *assigned == tp)
            .unwrap_or(0);
        let sender = &senders[index % senders.len()];
        for message in messages {
            if sender.send(message).await.is_err() {
                return;
            }
        }
    }
}

/// One of the paper's message streams: an iterator that blocks when there is
/// nothing new. As with Kafka's `poll`, asking for the next message is what
/// marks the previous one processed, so a crash while handling a message
/// leaves it to be delivered again (at least once).
pub struct MessageStream {
    receiver: mpsc::Receiver<Message>,
    shared: Arc<Shared>,
    handed_out: Arc<Mutex<Option<Message>>>,
}

impl MessageStream {
    /// Waits up to `timeout` for the next message.
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Message> {
        self.mark_previous();
        let deadline = Instant::now() + timeout;
        loop {
            match self.receiver.try_recv() {
                Ok(message) => return Some(self.hand_out(message)),
                Err(mpsc::error::TryRecvError::Disconnected) => return None,
                Err(mpsc::error::TryRecvError::Empty) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }

    /// Gives back the message last handed out: it is not committed, so the
    /// group delivers it again (to whichever member owns its partition next).
    pub fn give_back(&self) {
        if let Ok(mut slot) = self.handed_out.lock() {
            *slot = None;
        }
    }

    fn mark_previous(&self) {
        let previous = self
            .handed_out
            .lock()
            .ok()
            .and_then(|mut previous| previous.take());
        if let Some(previous) = previous {
            self.shared.mark_consumed(&previous);
        }
    }

    fn hand_out(&self, message: Message) -> Message {
        if let Ok(mut slot) = self.handed_out.lock() {
            // Only the coordinates matter for commits; keep no payload.
            *slot = Some(Message {
                topic: message.topic.clone(),
                partition: message.partition,
                offset: message.offset,
                ..Message::default()
            });
        }
        message
    }
}

impl Iterator for MessageStream {
    type Item = Message;

    fn next(&mut self) -> Option<Message> {
        self.mark_previous();
        let message = self.receiver.blocking_recv()?;
        Some(self.hand_out(message))
    }
}
