//! The consumer's API: [`AsyncConsumer`] (assign, subscribe, seek, pause,
//! poll, commit) over the fetcher task (`fetcher`) and a group membership
//! in either protocol (`group`, `group_consumer`), and the paper's blocking
//! [`Consumer`] with its [`MessageStream`]s on top.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::client::Client;
use crate::consumer_config::{ConsumerConfig, GroupProtocol};
use crate::error::{Error, Result};
use crate::fetcher::{Fetched, Shared};
use crate::group::GroupMember;
use crate::group_consumer::ConsumerMember;
use crate::message::Message;
use crate::requests::Offset;
use crate::topic_partition::TopicPartition;

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
        let (shared, receiver) = Shared::start(client, config);
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
        self.shared.seek(tp, offset)
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
        self.shared.set_paused(partitions, paused);
    }

    /// The next offset this consumer will hand out for `tp`. A pending seek
    /// to the beginning, end or a timestamp is resolved now, as in Kafka.
    pub async fn position(&self, tp: &TopicPartition) -> Result<i64> {
        self.shared.position(tp).await
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
            if let Some(error) = self.shared.take_fatal() {
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
            if let Some(messages) = self.shared.accept(fetched) {
                return Ok(messages);
            }
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
        self.shared.close();
        result
    }
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
            if consumer.shared.is_closed() {
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
