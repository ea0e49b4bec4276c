//! Group membership over the KIP-848 consumer group protocol
//! (`group.protocol=consumer`): the coordinator assigns partitions, and the
//! member only heartbeats (ConsumerGroupHeartbeat) and reconciles.
//!
//! A heartbeat carries the member's epoch and the partitions it owns; the
//! answer may carry a new target assignment. Reconciling it: offsets of the
//! partitions the member gives up are committed first, then the fetcher
//! stops them and starts the new ones (from their committed offsets), and
//! the next heartbeat reports what the member now owns, which lets the
//! coordinator hand the given-up partitions to their next owner. There is no
//! JoinGroup/SyncGroup and no client-side assignor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rill_protocol::messages::ConsumerGroupHeartbeatRequest;
use rill_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use rill_protocol::messages::consumer_group_heartbeat_response::Assignment;
use rill_protocol::{ApiKey, RequestBody, ResponseBody, Uuid};

use crate::client::{Client, Metadata};
use crate::error::{Error, Result, code};
use crate::fetcher::Shared;
use crate::member_task::{JOIN_ATTEMPTS_MAX, MemberTask};
use crate::requests::{cached_coordinator, commit_offsets, fetch_committed};
use crate::topic_partition::{TopicPartition, group_by_topic};

/// The epoch a member sends to leave the group.
const LEAVE_EPOCH: i32 = -1;

#[derive(Default)]
struct MemberState {
    member_id: String,
    /// 0 until the coordinator has taken the member in.
    epoch: i32,
    coordinator: Option<i32>,
    topics: Vec<String>,
    owned: Vec<TopicPartition>,
    heartbeat_interval: Option<Duration>,
}

pub(crate) struct ConsumerMember {
    consumer: Arc<Shared>,
    group_id: String,
    state: tokio::sync::Mutex<MemberState>,
    task: MemberTask,
}

impl ConsumerMember {
    pub(crate) fn new(consumer: Arc<Shared>, group_id: String) -> Arc<ConsumerMember> {
        Arc::new(ConsumerMember {
            consumer,
            group_id,
            state: tokio::sync::Mutex::new(MemberState::default()),
            task: MemberTask::default(),
        })
    }

    fn client(&self) -> &Client {
        &self.consumer.client
    }

    fn group_error(&self, reason: impl Into<String>) -> Error {
        Error::Group {
            group: self.group_id.clone(),
            reason: reason.into(),
        }
    }

    /// Joins the group for `topics` (the first heartbeat) and keeps the
    /// membership alive in a task.
    pub(crate) async fn start(self: Arc<ConsumerMember>, topics: Vec<String>) -> Result<()> {
        {
            let mut state = self.state.lock().await;
            state.topics = topics;
            state.epoch = 0;
        }
        self.join().await?;
        let member = self.clone();
        self.task
            .replace(tokio::spawn(async move { member.keep_alive().await }));
        Ok(())
    }

    /// The first heartbeat, which joins. A coordinator still loading its
    /// groups (a broker just started answers COORDINATOR_LOAD_IN_PROGRESS
    /// until its replay ends), moved or not yet found answers with a
    /// retriable code, which Kafka's clients retry; so does this, a bounded
    /// number of times.
    async fn join(&self) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.heartbeat().await {
                Err(error) if attempts < JOIN_ATTEMPTS_MAX && error.is_retriable() => {
                    tracing::debug!(group = %self.group_id, %error, "joining again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                joined => return joined,
            }
        }
    }

    async fn coordinator(&self, state: &mut MemberState) -> Result<i32> {
        cached_coordinator(self.client(), &self.group_id, &mut state.coordinator).await
    }

    /// One heartbeat, and the reconciliation of any assignment it brings.
    async fn heartbeat(&self) -> Result<()> {
        let mut state = self.state.lock().await;
        let coordinator = self.coordinator(&mut state).await?;
        let joining = state.epoch == 0;
        let owned = self.owned_by_topic_id(&state.owned).await?;
        let config = &self.consumer.config;
        let request = ConsumerGroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: state.member_id.clone(),
            member_epoch: state.epoch,
            rebalance_timeout_ms: config.rebalance_timeout.as_millis() as i32,
            // The subscription is sent when joining; afterwards the
            // coordinator keeps it (null means unchanged).
            subscribed_topic_names: joining.then(|| state.topics.clone()),
            server_assignor: config.group_remote_assignor.clone(),
            topic_partitions: Some(owned),
            ..Default::default()
        };
        let response = self
            .client()
            .call(coordinator, ApiKey::ConsumerGroupHeartbeat, |_| {
                RequestBody::ConsumerGroupHeartbeat(request)
            })
            .await;
        let response = match response {
            Ok(ResponseBody::ConsumerGroupHeartbeat(response)) => response,
            Ok(_) => {
                return Err(self.group_error("ConsumerGroupHeartbeat answered with another API"));
            }
            Err(error) => {
                if error.is_retriable() {
                    // The coordinator may have moved.
                    state.coordinator = None;
                }
                return Err(error);
            }
        };
        if response.error_code != code::NONE {
            self.forget_on_error(&mut state, response.error_code);
            return Err(Error::kafka(
                "consumer group heartbeat",
                response.error_code,
                response.error_message,
            ));
        }
        if let Some(member_id) = response.member_id {
            state.member_id = member_id;
        }
        state.epoch = response.member_epoch;
        if response.heartbeat_interval_ms > 0 {
            state.heartbeat_interval =
                Some(Duration::from_millis(response.heartbeat_interval_ms as u64));
        }
        if let Some(assignment) = response.assignment {
            self.reconcile(&mut state, coordinator, assignment).await?;
        }
        Ok(())
    }

    /// Forgets what a heartbeat's error code invalidated: a moved
    /// coordinator, or (fenced) the member's partitions and epoch.
    fn forget_on_error(&self, state: &mut MemberState, error_code: i16) {
        match error_code {
            code::NOT_COORDINATOR | code::COORDINATOR_NOT_AVAILABLE => state.coordinator = None,
            code::UNKNOWN_MEMBER_ID | code::FENCED_MEMBER_EPOCH => {
                // The coordinator no longer counts this member: its
                // partitions may already be someone else's, so they are
                // dropped without committing, and it joins afresh.
                tracing::info!(group = %self.group_id, epoch = state.epoch, "fenced; rejoining");
                self.consumer.set_assignment(&[], &HashMap::new());
                state.owned.clear();
                state.epoch = 0;
                if error_code == code::UNKNOWN_MEMBER_ID {
                    state.member_id.clear();
                }
            }
            _ => {}
        }
    }

    /// Takes a new target assignment: commits and stops what goes, starts
    /// what comes.
    async fn reconcile(
        &self,
        state: &mut MemberState,
        coordinator: i32,
        assignment: Assignment,
    ) -> Result<()> {
        let mut assigned = Vec::new();
        for topic in assignment.topic_partitions {
            let name = self.topic_name(topic.topic_id).await?;
            for partition in topic.partitions {
                assigned.push(TopicPartition::new(&name, partition));
            }
        }
        assigned.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        let revoked: Vec<TopicPartition> = state
            .owned
            .iter()
            .filter(|tp| !assigned.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            let offsets = self
                .consumer
                .committable()
                .into_iter()
                .filter(|(tp, _)| revoked.contains(tp))
                .collect();
            if let Err(error) = self.commit_as(state, coordinator, offsets).await {
                tracing::debug!(group = %self.group_id, %error, "commit before revoking failed");
            }
        }
        let added: Vec<TopicPartition> = assigned
            .iter()
            .filter(|tp| !state.owned.contains(tp))
            .cloned()
            .collect();
        let starts = if added.is_empty() {
            HashMap::new()
        } else {
            fetch_committed(self.client(), coordinator, &self.group_id, Some(&added)).await?
        };
        self.consumer.set_assignment(&assigned, &starts);
        tracing::debug!(group = %self.group_id, epoch = state.epoch, ?assigned, "reconciled");
        state.owned = assigned;
        Ok(())
    }

    /// A topic's name from its id, reloading metadata for one not known.
    async fn topic_name(&self, id: Uuid) -> Result<String> {
        let find = |metadata: &Metadata| {
            metadata
                .topics
                .values()
                .find(|topic| topic.id == id)
                .map(|topic| topic.name.clone())
        };
        if let Some(name) = find(&self.client().metadata()) {
            return Ok(name);
        }
        let metadata = self.client().refresh_metadata(None).await?;
        find(&metadata)
            .ok_or_else(|| self.group_error(format!("assigned an unknown topic id {id:?}")))
    }

    /// The owned partitions as the heartbeat names them: by topic id.
    async fn owned_by_topic_id(&self, owned: &[TopicPartition]) -> Result<Vec<TopicPartitions>> {
        let by_topic = group_by_topic(owned);
        let mut out = Vec::with_capacity(by_topic.len());
        for (topic, partitions) in by_topic {
            let info = self.client().topic(&topic).await?;
            out.push(TopicPartitions {
                topic_id: info.id,
                partitions: partitions.into(),
                ..Default::default()
            });
        }
        Ok(out)
    }

    /// Heartbeats at the coordinator's interval, auto-commits, and rejoins
    /// after being fenced.
    async fn keep_alive(self: Arc<ConsumerMember>) {
        let config = self.consumer.config.clone();
        let mut last_commit = Instant::now();
        let mut pause = Duration::from_millis(100);
        loop {
            let interval = self
                .state
                .lock()
                .await
                .heartbeat_interval
                .unwrap_or(config.heartbeat_interval);
            tokio::time::sleep(interval.min(config.auto_commit_interval).min(pause)).await;
            if config.enable_auto_commit && last_commit.elapsed() >= config.auto_commit_interval {
                if let Err(error) = self.commit(self.consumer.committable()).await {
                    tracing::debug!(%error, "auto-commit failed");
                }
                last_commit = Instant::now();
            }
            match self.heartbeat().await {
                Ok(()) => pause = interval,
                Err(error) => {
                    tracing::debug!(group = %self.group_id, %error, "heartbeat");
                    // Retry soon: a fenced member rejoins, a moved
                    // coordinator is looked up again.
                    pause = Duration::from_millis(200);
                }
            }
        }
    }

    /// The group's committed offsets for `partitions`.
    pub(crate) async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, i64>> {
        if partitions.is_empty() {
            return Ok(HashMap::new());
        }
        let coordinator = {
            let mut state = self.state.lock().await;
            self.coordinator(&mut state).await?
        };
        fetch_committed(self.client(), coordinator, &self.group_id, Some(partitions)).await
    }

    /// Commits offsets under the member's current epoch.
    pub(crate) async fn commit(&self, offsets: HashMap<TopicPartition, i64>) -> Result<()> {
        let mut state = self.state.lock().await;
        let coordinator = self.coordinator(&mut state).await?;
        self.commit_as(&state, coordinator, offsets).await
    }

    async fn commit_as(
        &self,
        state: &MemberState,
        coordinator: i32,
        offsets: HashMap<TopicPartition, i64>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        // KIP-848: the member epoch stands where the generation was.
        commit_offsets(
            self.client(),
            coordinator,
            &self.group_id,
            state.epoch,
            &state.member_id,
            offsets,
        )
        .await
    }

    /// Commits (with auto-commit) and leaves with epoch -1, so the
    /// coordinator hands the partitions on now.
    pub(crate) async fn leave(&self) -> Result<()> {
        self.task.stop();
        let mut state = self.state.lock().await;
        if state.member_id.is_empty() || state.epoch <= 0 {
            return Ok(());
        }
        let Some(coordinator) = state.coordinator else {
            return Ok(());
        };
        if self.consumer.config.enable_auto_commit {
            self.commit_as(&state, coordinator, self.consumer.committable())
                .await
                .ok();
        }
        let request = ConsumerGroupHeartbeatRequest {
            group_id: self.group_id.clone(),
            member_id: state.member_id.clone(),
            member_epoch: LEAVE_EPOCH,
            ..Default::default()
        };
        state.epoch = LEAVE_EPOCH;
        state.owned.clear();
        self.client()
            .call(coordinator, ApiKey::ConsumerGroupHeartbeat, |_| {
                RequestBody::ConsumerGroupHeartbeat(request)
            })
            .await
            .map(|_| ())
    }
}
