//! The active controller: on the node that leads the quorum, the task that
//! keeps broker sessions (`logic::sessions`), answers registrations and
//! heartbeats, fences brokers that go silent and moves their partitions'
//! leadership (`logic::leadership`), proposing what it decides.
//!
//! One task per node, running whether or not the node leads: it answers
//! NOT_CONTROLLER while another node does, and starts every session afresh
//! when its node becomes leader (a failover fences nobody). Requests and
//! ticks are handled one at a time, each decision made against the image
//! applied after the previous one's proposal, so two decisions never rest on
//! the same stale state.

use std::time::{Duration, Instant};

use rill_metadata::{ClusterState, MetadataRecord};
use rill_protocol::error_code;
use tokio::sync::{mpsc, oneshot, watch};

use crate::logic::leadership::{elect_leaderless, leadership_away, leads_any};
use crate::logic::sessions::{Heartbeat, Registration, Sessions};
use crate::node::{Node, ProposeError};
use crate::wire::{BrokerError, BrokerStatus};

/// How often the active controller looks for expired sessions.
const TICK: Duration = Duration::from_millis(250);
/// Records proposed in one batch: a partition change is ~200 bytes of
/// JSON, so a batch stays far below the 4 MiB entry limit.
const PROPOSAL_RECORDS_MAX: usize = 4096;
/// Requests waiting for the task; more wait for room.
const QUEUE: usize = 256;

enum Command {
    Register(Registration, oneshot::Sender<Result<i64, BrokerError>>),
    Heartbeat(
        Heartbeat,
        oneshot::Sender<Result<BrokerStatus, BrokerError>>,
    ),
}

/// A handle on the node's controller task. Clones share it.
#[derive(Clone)]
pub struct ActiveController {
    commands: mpsc::Sender<Command>,
}

impl ActiveController {
    /// Starts the task of `node`, for brokers of cluster `cluster_id`,
    /// until `stop`.
    pub fn spawn(
        node: Node,
        node_id: i32,
        cluster_id: String,
        session_timeout_ms: u64,
        stop: watch::Receiver<bool>,
    ) -> ActiveController {
        let (commands, queue) = mpsc::channel(QUEUE);
        let task = Task {
            node,
            node_id: node_id as u64,
            cluster_id,
            session_timeout_ms,
            sessions: None,
            started: Instant::now(),
        };
        tokio::spawn(task.run(queue, stop));
        ActiveController { commands }
    }

    pub async fn register(&self, registration: Registration) -> Result<i64, BrokerError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Register(registration, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    pub async fn heartbeat(&self, heartbeat: Heartbeat) -> Result<BrokerStatus, BrokerError> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Heartbeat(heartbeat, reply)).await?;
        answer.await.map_err(|_| stopped())?
    }

    async fn send(&self, command: Command) -> Result<(), BrokerError> {
        self.commands.send(command).await.map_err(|_| stopped())
    }
}

fn stopped() -> BrokerError {
    BrokerError {
        code: error_code::NOT_CONTROLLER,
        message: "the controller is stopping".to_string(),
    }
}

fn not_controller(leader: Option<u64>) -> BrokerError {
    let message = match leader {
        Some(leader) => format!("node {leader} is the active controller"),
        None => "there is no active controller now".to_string(),
    };
    BrokerError {
        code: error_code::NOT_CONTROLLER,
        message,
    }
}

struct Task {
    node: Node,
    node_id: u64,
    cluster_id: String,
    session_timeout_ms: u64,
    /// Present while this node leads.
    sessions: Option<Sessions>,
    started: Instant,
}

impl Task {
    async fn run(mut self, mut queue: mpsc::Receiver<Command>, mut stop: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = queue.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                _ = tick.tick() => self.tick().await,
                // Only the wait's end matters (its guard is not `Send`).
                _ = async { drop(stop.wait_for(|stop| *stop).await) } => return,
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether this node leads, starting or ending its sessions when that
    /// changed since the last look.
    fn check_leadership(&mut self) -> bool {
        let leads = self.node.leader() == Some(self.node_id);
        match (leads, self.sessions.is_some()) {
            (true, false) => {
                let mut sessions = Sessions::new(self.cluster_id.clone(), self.session_timeout_ms);
                sessions.activate(self.now_ms(), self.node.image().brokers());
                self.sessions = Some(sessions);
                tracing::info!("this node is the active controller");
            }
            (false, true) => self.sessions = None,
            _ => {}
        }
        leads
    }

    async fn handle(&mut self, command: Command) {
        if !self.check_leadership() {
            let refusal = not_controller(self.node.leader());
            match command {
                Command::Register(_, reply) => drop(reply.send(Err(refusal))),
                Command::Heartbeat(_, reply) => drop(reply.send(Err(refusal))),
            }
            return;
        }
        match command {
            Command::Register(registration, reply) => {
                let _ = reply.send(self.register(registration).await);
            }
            Command::Heartbeat(heartbeat, reply) => {
                let _ = reply.send(self.heartbeat(heartbeat).await);
            }
        }
    }

    async fn register(&mut self, registration: Registration) -> Result<i64, BrokerError> {
        let now = self.now_ms();
        let id = registration.id;
        let sessions = self.sessions.as_mut().ok_or_else(|| not_controller(None))?;
        let record = sessions
            .register(now, registration, rill_metadata::EPOCH_OF_ENTRY)
            .map_err(session_error)?;
        match self.propose(vec![record]).await {
            Ok(index) => {
                let epoch = index as i64;
                if let Some(sessions) = self.sessions.as_mut() {
                    sessions.registered_at(id, epoch);
                }
                tracing::info!(broker = id, epoch, "broker registered");
                Ok(epoch)
            }
            Err(error) => {
                if let Some(sessions) = self.sessions.as_mut() {
                    sessions.unregister(id);
                }
                Err(error)
            }
        }
    }

    async fn heartbeat(&mut self, heartbeat: Heartbeat) -> Result<BrokerStatus, BrokerError> {
        let now = self.now_ms();
        let image = self.node.image();
        let id = heartbeat.broker_id;
        let sessions = self.sessions.as_mut().ok_or_else(|| not_controller(None))?;
        let answer = sessions
            .heartbeat(now, &heartbeat, || leads_any(&image, id))
            .map_err(session_error)?;
        let status = BrokerStatus {
            is_caught_up: answer.is_caught_up,
            is_fenced: answer.is_fenced,
            in_controlled_shutdown: answer.in_controlled_shutdown,
            should_shut_down: answer.should_shut_down,
        };
        if !answer.records.is_empty() {
            let mut records = answer.records;
            if status.is_fenced || status.in_controlled_shutdown {
                records.extend(leadership_away(&image, id, |b| self.usable(&image, b, id)));
            } else {
                // Unfenced: its partitions without a leader may have it back.
                records.extend(elect_leaderless(&image, |b| {
                    b == id || self.usable(&image, b, id)
                }));
            }
            tracing::info!(broker = id, ?status, "broker state changed");
            self.propose(records).await?;
        }
        Ok(status)
    }

    /// A broker that may lead: registered, unfenced, not stopping, and not
    /// the one whose change is being decided.
    fn usable(&self, image: &ClusterState, broker: i32, deciding: i32) -> bool {
        broker != deciding
            && image
                .broker(broker)
                .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
    }

    /// Fences brokers whose sessions expired, and moves their leadership.
    async fn tick(&mut self) {
        if !self.check_leadership() {
            return;
        }
        let now = self.now_ms();
        let Some(sessions) = self.sessions.as_mut() else {
            return;
        };
        let fenced = sessions.tick(now);
        if fenced.is_empty() {
            return;
        }
        let image = self.node.image();
        let mut records = Vec::new();
        for record in fenced {
            if let MetadataRecord::BrokerFencingChanged { id, .. } = &record {
                let id = *id;
                tracing::warn!(broker = id, "broker session expired: fenced");
                records.push(record);
                records.extend(leadership_away(&image, id, |b| self.usable(&image, b, id)));
            }
        }
        if let Err(error) = self.propose(records).await {
            tracing::warn!(%error, "cannot fence expired brokers");
            // Leadership lost, most likely: the next active controller
            // starts its sessions afresh.
            self.sessions = None;
        }
    }

    /// Proposes `records` in batches that fit a log entry: a broker's own
    /// record first, then its partitions' changes, which need not apply
    /// together (each is a whole change of one partition). The index of
    /// the first batch.
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, BrokerError> {
        let mut first = None;
        for batch in records.chunks(PROPOSAL_RECORDS_MAX) {
            let index = self
                .node
                .propose(batch.to_vec())
                .await
                .map_err(|error| match error {
                    ProposeError::NotLeader { leader } => not_controller(leader),
                    other => BrokerError {
                        code: error_code::UNKNOWN_SERVER_ERROR,
                        message: other.to_string(),
                    },
                })?;
            first.get_or_insert(index);
        }
        Ok(first.unwrap_or_default())
    }
}

fn session_error(error: crate::logic::sessions::SessionError) -> BrokerError {
    BrokerError {
        code: error.code(),
        message: format!("{error:?}"),
    }
}
