//! Broker sessions (KIP-631, KIP-841): the active controller's soft state of
//! which brokers heartbeat, and the records their registrations, heartbeats
//! and silences call for.
//!
//! Sessions are never logged. The registrations they follow are (a broker's
//! fencing and controlled shutdown are records), so a controller that becomes
//! active rebuilds its sessions from the cluster state and starts every
//! session's clock at activation: a failover fences nobody, and a broker that
//! died meanwhile is fenced one session timeout after the new activation.
//!
//! Pure: time comes in as `now_ms`, partition leadership as a closure, and
//! the answers are records for the caller to propose. The soft state assumes
//! the records it returns commit; a controller whose proposal fails has lost
//! leadership and rebuilds its sessions when it is active again. Moving the
//! leadership of a fenced or shutting-down broker's partitions is the
//! caller's: these records are the broker's own.

use std::collections::BTreeMap;

use rill_metadata::{Broker, Listener, MetadataRecord, Uuid};
use rill_protocol::error_code;
use serde::{Deserialize, Serialize};

/// Where a broker's registration stands, as a heartbeat sees it (Kafka's
/// `BrokerControlState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Leads nothing and is not offered to clients.
    Fenced,
    /// May lead partitions.
    Unfenced,
    /// Asked to stop; its partitions are being led elsewhere (KIP-841).
    ControlledShutdown,
    /// Fenced and told to stop now. An answer only: the session keeps
    /// [`Fenced`](BrokerState::Fenced).
    ShutdownNow,
}

impl BrokerState {
    pub fn is_fenced(self) -> bool {
        matches!(self, BrokerState::Fenced | BrokerState::ShutdownNow)
    }

    pub fn should_shut_down(self) -> bool {
        self == BrokerState::ShutdownNow
    }
}

/// What a heartbeat asks for, besides keeping the session alive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wants {
    /// The broker asks to stay (or become) fenced.
    pub fence: bool,
    /// The broker is stopping.
    pub shutdown: bool,
}

/// The state a heartbeat moves a broker to (Kafka's
/// `BrokerHeartbeatManager.calculateNextBrokerState`). `caught_up`: the
/// broker has read the metadata log up to its own registration record.
/// `leads_partitions` is asked only when the answer depends on it.
pub fn next_state(
    current: BrokerState,
    wants: Wants,
    caught_up: bool,
    leads_partitions: impl FnOnce() -> bool,
) -> BrokerState {
    use BrokerState as S;
    match current {
        S::Fenced if wants.shutdown => S::ShutdownNow,
        // A broker unfences only once it knows the log as of its own
        // registration, so it never serves from an older view.
        S::Fenced if !wants.fence && caught_up => S::Unfenced,
        S::Fenced => S::Fenced,
        S::Unfenced if wants.fence && wants.shutdown => S::ShutdownNow,
        S::Unfenced if wants.fence => S::Fenced,
        S::Unfenced if !wants.shutdown => S::Unfenced,
        S::Unfenced | S::ControlledShutdown => {
            // Stopping while leading: hand leadership away first. A
            // controlled shutdown, once begun, is not withdrawn.
            if leads_partitions() {
                S::ControlledShutdown
            } else {
                S::ShutdownNow
            }
        }
        S::ShutdownNow => S::ShutdownNow,
    }
}

/// Why a registration or heartbeat was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// The broker belongs to another cluster.
    InconsistentClusterId { expected: String, got: String },
    /// Another process holds a live session under this broker id.
    DuplicateBrokerRegistration { id: i32 },
    /// A heartbeat from a registration that is not the current one (or from
    /// an id with no registration at all, as Kafka answers).
    StaleBrokerEpoch {
        id: i32,
        current: Option<i64>,
        requested: i64,
    },
    /// A negative broker id.
    InvalidBrokerId { id: i32 },
}

impl SessionError {
    /// The Kafka error code the answer carries.
    pub fn code(&self) -> i16 {
        match self {
            SessionError::InconsistentClusterId { .. } => error_code::INCONSISTENT_CLUSTER_ID,
            SessionError::DuplicateBrokerRegistration { .. } => {
                error_code::DUPLICATE_BROKER_REGISTRATION
            }
            SessionError::StaleBrokerEpoch { .. } => error_code::STALE_BROKER_EPOCH,
            SessionError::InvalidBrokerId { .. } => error_code::INVALID_REQUEST,
        }
    }
}

/// A BrokerRegistration request, as the controller needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: i32,
    pub cluster_id: String,
    /// Random per process start: a restart has a new one.
    pub incarnation: Uuid,
    pub listeners: Vec<Listener>,
    pub rack: Option<String>,
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub broker_id: i32,
    pub broker_epoch: i64,
    /// The last metadata log offset the broker has applied.
    pub current_metadata_offset: i64,
    pub wants: Wants,
}

/// A BrokerHeartbeat answer and the records to propose before sending it.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatAnswer {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub in_controlled_shutdown: bool,
    pub should_shut_down: bool,
    pub records: Vec<MetadataRecord>,
}

#[derive(Debug, Clone)]
struct Session {
    incarnation: Uuid,
    /// The broker epoch, which is also the offset of the registration record.
    epoch: i64,
    /// Never [`BrokerState::ShutdownNow`].
    state: BrokerState,
    last_contact_ms: u64,
}

/// The active controller's broker sessions.
#[derive(Debug, Clone)]
pub struct Sessions {
    cluster_id: String,
    session_timeout_ms: u64,
    sessions: BTreeMap<i32, Session>,
}

impl Sessions {
    pub fn new(cluster_id: impl Into<String>, session_timeout_ms: u64) -> Self {
        Sessions {
            cluster_id: cluster_id.into(),
            session_timeout_ms,
            sessions: BTreeMap::new(),
        }
    }

    /// This controller became active: one session per registered broker,
    /// each starting now, whatever the previous controller had seen.
    pub fn activate<'a>(&mut self, now_ms: u64, brokers: impl IntoIterator<Item = &'a Broker>) {
        self.sessions = brokers
            .into_iter()
            .map(|broker| (broker.id, Session::restarted(broker, now_ms)))
            .collect();
    }

    /// A broker registers; `epoch` is the log index its `BrokerRegistered`
    /// record will take, which becomes its broker epoch. The session starts
    /// fenced. Answers the record to propose.
    pub fn register(
        &mut self,
        now_ms: u64,
        registration: Registration,
        epoch: i64,
    ) -> Result<MetadataRecord, SessionError> {
        self.check_registration(now_ms, &registration)?;
        let Registration {
            id,
            incarnation,
            listeners,
            rack,
            ..
        } = registration;
        let session = Session {
            incarnation,
            epoch,
            state: BrokerState::Fenced,
            last_contact_ms: now_ms,
        };
        self.sessions.insert(id, session);
        Ok(MetadataRecord::BrokerRegistered {
            id,
            incarnation,
            epoch,
            listeners,
            rack,
        })
    }

    /// Kafka's `ClusterControlManager.registerBroker` checks. The same
    /// incarnation registering again is its own retry and is accepted; a
    /// new one is refused while the old one's session lives, so two
    /// processes never share an id.
    fn check_registration(
        &self,
        now_ms: u64,
        registration: &Registration,
    ) -> Result<(), SessionError> {
        if registration.cluster_id != self.cluster_id {
            return Err(SessionError::InconsistentClusterId {
                expected: self.cluster_id.clone(),
                got: registration.cluster_id.clone(),
            });
        }
        if registration.id < 0 {
            return Err(SessionError::InvalidBrokerId {
                id: registration.id,
            });
        }
        match self.sessions.get(&registration.id) {
            Some(session)
                if session.incarnation != registration.incarnation
                    && self.is_live(session, now_ms) =>
            {
                Err(SessionError::DuplicateBrokerRegistration {
                    id: registration.id,
                })
            }
            _ => Ok(()),
        }
    }

    /// A broker heartbeats. `leads_partitions` says whether it still leads
    /// any partition; it is asked only for a broker that wants to stop.
    pub fn heartbeat(
        &mut self,
        now_ms: u64,
        heartbeat: &Heartbeat,
        leads_partitions: impl FnOnce() -> bool,
    ) -> Result<HeartbeatAnswer, SessionError> {
        let id = heartbeat.broker_id;
        let session = match self.sessions.get_mut(&id) {
            Some(session) if session.epoch == heartbeat.broker_epoch => session,
            other => {
                return Err(SessionError::StaleBrokerEpoch {
                    id,
                    current: other.map(|session| session.epoch),
                    requested: heartbeat.broker_epoch,
                });
            }
        };
        let is_caught_up = heartbeat.current_metadata_offset >= session.epoch;
        let current = session.state;
        let next = next_state(current, heartbeat.wants, is_caught_up, leads_partitions);
        session.last_contact_ms = now_ms;
        session.state = match next {
            BrokerState::ShutdownNow => BrokerState::Fenced,
            state => state,
        };
        Ok(HeartbeatAnswer {
            is_caught_up,
            is_fenced: next.is_fenced(),
            in_controlled_shutdown: next == BrokerState::ControlledShutdown,
            should_shut_down: next.should_shut_down(),
            records: transition_records(id, session.epoch, current, next),
        })
    }

    /// Time passes: every broker that is not fenced and has not been heard
    /// from for a whole session timeout is fenced. Answers the records to
    /// propose.
    pub fn tick(&mut self, now_ms: u64) -> Vec<MetadataRecord> {
        let timeout = self.session_timeout_ms;
        let mut records = Vec::new();
        for (&id, session) in &mut self.sessions {
            if session.state != BrokerState::Fenced && session.expired(now_ms, timeout) {
                session.state = BrokerState::Fenced;
                records.push(fencing(id, session.epoch, true));
            }
        }
        records
    }

    /// The registration of broker `id` committed with broker epoch `epoch`
    /// (the index of its entry; see `rill_metadata::EPOCH_OF_ENTRY`).
    pub fn registered_at(&mut self, id: i32, epoch: i64) {
        if let Some(session) = self.sessions.get_mut(&id) {
            session.epoch = epoch;
        }
    }

    /// The broker's registration was removed: its session ends.
    pub fn unregister(&mut self, id: i32) {
        self.sessions.remove(&id);
    }

    /// Where broker `id`'s session stands, if it has one.
    pub fn state(&self, id: i32) -> Option<BrokerState> {
        self.sessions.get(&id).map(|session| session.state)
    }

    /// A session lives while its broker is unfenced and heard from within
    /// the timeout: a fenced registration holds nothing a restarted process
    /// must wait for.
    fn is_live(&self, session: &Session, now_ms: u64) -> bool {
        session.state != BrokerState::Fenced && !session.expired(now_ms, self.session_timeout_ms)
    }
}

impl Session {
    fn restarted(broker: &Broker, now_ms: u64) -> Self {
        let state = if broker.fenced {
            BrokerState::Fenced
        } else if broker.in_controlled_shutdown {
            BrokerState::ControlledShutdown
        } else {
            BrokerState::Unfenced
        };
        Session {
            incarnation: broker.incarnation,
            epoch: broker.epoch,
            state,
            last_contact_ms: now_ms,
        }
    }

    /// Expired at exactly one timeout after the last contact.
    fn expired(&self, now_ms: u64, timeout_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_contact_ms) >= timeout_ms
    }
}

/// The records a heartbeat's state change calls for. A fenced broker told
/// to stop is fenced already and needs none.
fn transition_records(
    id: i32,
    epoch: i64,
    current: BrokerState,
    next: BrokerState,
) -> Vec<MetadataRecord> {
    use BrokerState as S;
    match (current, next) {
        (a, b) if a == b => Vec::new(),
        (S::Fenced, S::ShutdownNow) => Vec::new(),
        (_, S::Unfenced) => vec![fencing(id, epoch, false)],
        (_, S::Fenced | S::ShutdownNow) => vec![fencing(id, epoch, true)],
        (_, S::ControlledShutdown) => vec![MetadataRecord::BrokerControlledShutdown { id, epoch }],
    }
}

fn fencing(id: i32, epoch: i64, fenced: bool) -> MetadataRecord {
    MetadataRecord::BrokerFencingChanged { id, epoch, fenced }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BrokerState as S;

    const CLUSTER: &str = "MkU3OEVBNTcwNTJENDM2Qk";
    const TIMEOUT: u64 = 9_000;

    fn wants(fence: bool, shutdown: bool) -> Wants {
        Wants { fence, shutdown }
    }

    fn registration(id: i32, incarnation: u8) -> Registration {
        Registration {
            id,
            cluster_id: CLUSTER.to_string(),
            incarnation: Uuid([incarnation; 16]),
            listeners: Vec::new(),
            rack: None,
        }
    }

    fn heartbeat(id: i32, epoch: i64, offset: i64, wants: Wants) -> Heartbeat {
        Heartbeat {
            broker_id: id,
            broker_epoch: epoch,
            current_metadata_offset: offset,
            wants,
        }
    }

    fn no_leaders() -> bool {
        false
    }

    /// Broker 1 registered at epoch 10 and heartbeated caught up at `now_ms`.
    fn unfenced_broker(sessions: &mut Sessions, now_ms: u64) {
        sessions.register(now_ms, registration(1, 1), 10).unwrap();
        let answer = sessions
            .heartbeat(now_ms, &heartbeat(1, 10, 10, Wants::default()), no_leaders)
            .unwrap();
        assert!(!answer.is_fenced);
    }

    #[test]
    fn next_state_table() {
        // (current, want fence, want shutdown, caught up, leads, next)
        let cases = [
            (S::Fenced, false, false, false, false, S::Fenced),
            (S::Fenced, false, false, true, false, S::Unfenced),
            (S::Fenced, true, false, true, false, S::Fenced),
            (S::Fenced, false, true, true, true, S::ShutdownNow),
            (S::Fenced, true, true, false, false, S::ShutdownNow),
            (S::Unfenced, false, false, true, true, S::Unfenced),
            (S::Unfenced, false, false, false, false, S::Unfenced),
            (S::Unfenced, true, false, true, true, S::Fenced),
            (S::Unfenced, true, true, true, true, S::ShutdownNow),
            (S::Unfenced, false, true, true, true, S::ControlledShutdown),
            (S::Unfenced, false, true, true, false, S::ShutdownNow),
            (
                S::ControlledShutdown,
                false,
                true,
                true,
                true,
                S::ControlledShutdown,
            ),
            (
                S::ControlledShutdown,
                false,
                false,
                true,
                true,
                S::ControlledShutdown,
            ),
            (
                S::ControlledShutdown,
                false,
                true,
                true,
                false,
                S::ShutdownNow,
            ),
            (
                S::ControlledShutdown,
                true,
                false,
                false,
                false,
                S::ShutdownNow,
            ),
        ];
        for (current, fence, shutdown, caught_up, leads, expected) in cases {
            let next = next_state(current, wants(fence, shutdown), caught_up, || leads);
            assert_eq!(
                next, expected,
                "{current:?} fence={fence} shutdown={shutdown} caught_up={caught_up} leads={leads}"
            );
        }
    }

    #[test]
    fn leadership_is_asked_only_when_stopping() {
        let asked = std::cell::Cell::new(false);
        let leads = || {
            asked.set(true);
            true
        };
        next_state(S::Unfenced, Wants::default(), true, leads);
        assert!(!asked.get());
    }

    #[test]
    fn registers_fenced_and_unfences_once_caught_up() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        let record = sessions.register(0, registration(1, 1), 10).unwrap();
        assert!(matches!(
            record,
            MetadataRecord::BrokerRegistered {
                id: 1,
                epoch: 10,
                ..
            }
        ));
        assert_eq!(sessions.state(1), Some(S::Fenced));

        let behind = sessions
            .heartbeat(100, &heartbeat(1, 10, 9, Wants::default()), no_leaders)
            .unwrap();
        assert!(!behind.is_caught_up && behind.is_fenced && behind.records.is_empty());

        let caught_up = sessions
            .heartbeat(200, &heartbeat(1, 10, 10, Wants::default()), no_leaders)
            .unwrap();
        assert!(caught_up.is_caught_up && !caught_up.is_fenced);
        assert!(!caught_up.should_shut_down && !caught_up.in_controlled_shutdown);
        assert_eq!(caught_up.records, vec![fencing(1, 10, false)]);
        assert_eq!(sessions.state(1), Some(S::Unfenced));

        let again = sessions
            .heartbeat(300, &heartbeat(1, 10, 12, Wants::default()), no_leaders)
            .unwrap();
        assert!(!again.is_fenced && again.records.is_empty());
    }

    #[test]
    fn fenced_at_exactly_the_session_timeout() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 1_000);
        assert!(sessions.tick(1_000 + TIMEOUT - 1).is_empty());
        assert_eq!(sessions.state(1), Some(S::Unfenced));
        assert_eq!(sessions.tick(1_000 + TIMEOUT), vec![fencing(1, 10, true)]);
        assert_eq!(sessions.state(1), Some(S::Fenced));
        assert!(sessions.tick(1_000 + 2 * TIMEOUT).is_empty());
    }

    #[test]
    fn heartbeats_keep_the_session() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        sessions
            .heartbeat(
                TIMEOUT - 1,
                &heartbeat(1, 10, 10, Wants::default()),
                no_leaders,
            )
            .unwrap();
        assert!(sessions.tick(2 * TIMEOUT - 2).is_empty());
        assert_eq!(sessions.tick(2 * TIMEOUT - 1).len(), 1);
    }

    #[test]
    fn a_fenced_broker_that_heartbeats_again_unfences() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        sessions.tick(TIMEOUT);
        let answer = sessions
            .heartbeat(
                TIMEOUT + 1,
                &heartbeat(1, 10, 20, Wants::default()),
                no_leaders,
            )
            .unwrap();
        assert!(!answer.is_fenced);
        assert_eq!(answer.records, vec![fencing(1, 10, false)]);
    }

    fn registered(id: i32, epoch: i64, fenced: bool) -> Broker {
        Broker {
            id,
            incarnation: Uuid([id as u8; 16]),
            epoch,
            listeners: Vec::new(),
            rack: None,
            fenced,
            in_controlled_shutdown: false,
        }
    }

    #[test]
    fn failover_restarts_every_session() {
        let brokers = [registered(1, 10, false), registered(2, 20, true)];
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        // The previous controller last heard from them long ago; that is
        // not held against them.
        sessions.activate(50_000, &brokers);
        assert_eq!(sessions.state(1), Some(S::Unfenced));
        assert_eq!(sessions.state(2), Some(S::Fenced));
        assert!(sessions.tick(50_000 + TIMEOUT - 1).is_empty());
        let answer = sessions
            .heartbeat(50_001, &heartbeat(1, 10, 30, Wants::default()), no_leaders)
            .unwrap();
        assert!(!answer.is_fenced && answer.records.is_empty());
        assert!(sessions.tick(50_000 + TIMEOUT).is_empty());
        assert_eq!(sessions.tick(50_001 + TIMEOUT), vec![fencing(1, 10, true)]);
    }

    #[test]
    fn activation_forgets_the_old_sessions() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        sessions.activate(100, &[]);
        assert_eq!(sessions.state(1), None);
    }

    #[test]
    fn another_cluster_is_refused() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        let mut other = registration(1, 1);
        other.cluster_id = "another".to_string();
        let err = sessions.register(0, other, 10).unwrap_err();
        assert_eq!(err.code(), error_code::INCONSISTENT_CLUSTER_ID);
        assert_eq!(sessions.state(1), None);
    }

    #[test]
    fn a_negative_id_is_refused() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        let err = sessions.register(0, registration(-1, 1), 10).unwrap_err();
        assert_eq!(err.code(), error_code::INVALID_REQUEST);
    }

    #[test]
    fn duplicate_registration_while_the_session_lives() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        let err = sessions
            .register(TIMEOUT - 1, registration(1, 2), 20)
            .unwrap_err();
        assert_eq!(err, SessionError::DuplicateBrokerRegistration { id: 1 });
        assert_eq!(err.code(), error_code::DUPLICATE_BROKER_REGISTRATION);

        // The same process retrying is not a duplicate.
        assert!(sessions.register(1, registration(1, 1), 30).is_ok());
    }

    #[test]
    fn a_restart_registers_once_the_old_session_is_over() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        let record = sessions.register(TIMEOUT, registration(1, 2), 20).unwrap();
        assert!(matches!(
            record,
            MetadataRecord::BrokerRegistered { epoch: 20, .. }
        ));
        assert_eq!(sessions.state(1), Some(S::Fenced));
    }

    #[test]
    fn a_fenced_registration_does_not_block_a_restart() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        sessions.register(0, registration(1, 1), 10).unwrap();
        assert!(sessions.register(1, registration(1, 2), 20).is_ok());
    }

    #[test]
    fn stale_broker_epoch() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        sessions.register(0, registration(1, 1), 10).unwrap();
        sessions.register(1, registration(1, 1), 20).unwrap();
        let err = sessions
            .heartbeat(2, &heartbeat(1, 10, 30, Wants::default()), no_leaders)
            .unwrap_err();
        assert_eq!(
            err,
            SessionError::StaleBrokerEpoch {
                id: 1,
                current: Some(20),
                requested: 10
            }
        );
        assert_eq!(err.code(), error_code::STALE_BROKER_EPOCH);
        let unknown = sessions
            .heartbeat(2, &heartbeat(7, 10, 30, Wants::default()), no_leaders)
            .unwrap_err();
        assert_eq!(unknown.code(), error_code::STALE_BROKER_EPOCH);
        // A refused heartbeat keeps nothing alive.
        assert_eq!(sessions.state(1), Some(S::Fenced));
    }

    #[test]
    fn controlled_shutdown_waits_for_leadership_to_move() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        let stopping = heartbeat(1, 10, 10, wants(false, true));

        let first = sessions.heartbeat(1, &stopping, || true).unwrap();
        assert!(first.in_controlled_shutdown && !first.is_fenced && !first.should_shut_down);
        assert_eq!(
            first.records,
            vec![MetadataRecord::BrokerControlledShutdown { id: 1, epoch: 10 }]
        );

        let still_leading = sessions.heartbeat(2, &stopping, || true).unwrap();
        assert!(still_leading.in_controlled_shutdown && still_leading.records.is_empty());

        let done = sessions.heartbeat(3, &stopping, no_leaders).unwrap();
        assert!(done.should_shut_down && done.is_fenced && !done.in_controlled_shutdown);
        assert_eq!(done.records, vec![fencing(1, 10, true)]);
        assert_eq!(sessions.state(1), Some(S::Fenced));

        // Asking again is answered the same, with nothing more to write.
        let again = sessions.heartbeat(4, &stopping, || true).unwrap();
        assert!(again.should_shut_down && again.records.is_empty());
    }

    #[test]
    fn a_broker_leading_nothing_stops_at_once() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        let answer = sessions
            .heartbeat(1, &heartbeat(1, 10, 10, wants(false, true)), no_leaders)
            .unwrap();
        assert!(answer.should_shut_down && answer.is_fenced);
        assert_eq!(answer.records, vec![fencing(1, 10, true)]);
    }

    #[test]
    fn a_broker_asking_to_be_fenced_is_fenced() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        let answer = sessions
            .heartbeat(1, &heartbeat(1, 10, 10, wants(true, false)), no_leaders)
            .unwrap();
        assert!(answer.is_fenced && !answer.should_shut_down);
        assert_eq!(answer.records, vec![fencing(1, 10, true)]);
    }

    #[test]
    fn a_silent_broker_in_controlled_shutdown_is_fenced() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        sessions
            .heartbeat(1, &heartbeat(1, 10, 10, wants(false, true)), || true)
            .unwrap();
        assert_eq!(sessions.tick(1 + TIMEOUT), vec![fencing(1, 10, true)]);
    }

    #[test]
    fn unregistered_brokers_lose_their_session() {
        let mut sessions = Sessions::new(CLUSTER, TIMEOUT);
        unfenced_broker(&mut sessions, 0);
        sessions.unregister(1);
        assert_eq!(sessions.state(1), None);
        assert!(sessions.tick(TIMEOUT).is_empty());
    }
}
