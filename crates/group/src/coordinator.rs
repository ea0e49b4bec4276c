//! The coordinator: every group of this broker, the delayed answers waiting
//! for a rebalance, and the records waiting to be persisted.

use std::collections::HashMap;

use rill_protocol::messages::{JoinGroupResponse, SyncGroupResponse};

use crate::config::GroupConfig;
use crate::group::{Group, Token};
use crate::record::{GroupRecord, GroupValue, OffsetValue, RecordError, RecordKey, partition_for};

/// Longest client-id (or instance-id) prefix of a generated member id.
const MEMBER_ID_PREFIX_BYTES_MAX: usize = 255;

/// An answer now, or later under a token (see [`Completion`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<T> {
    Now(T),
    Pending(Token),
}

/// A delayed answer that is now ready.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    Join(Token, JoinGroupResponse),
    Sync(Token, SyncGroupResponse),
}

impl Completion {
    pub fn token(&self) -> Token {
        match self {
            Completion::Join(token, _) | Completion::Sync(token, _) => *token,
        }
    }
}

/// Who sent a JoinGroup, as DescribeGroups reports it.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo<'a> {
    pub client_id: &'a str,
    pub client_host: &'a str,
}

/// Why a replayed record was not applied.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("record key: {0}")]
    Key(RecordError),
    #[error("value of {key:?}: {source}")]
    Value { key: RecordKey, source: RecordError },
}

/// The group coordinator, a state machine with no IO: requests and time go
/// in; responses, completions and records to persist come out.
///
/// Not thread-safe by itself: the broker keeps it behind one mutex, which is
/// what orders the records it emits.
#[derive(Debug)]
pub struct Coordinator {
    pub(crate) config: GroupConfig,
    pub(crate) groups: HashMap<String, Group>,
    next_token: u64,
    /// State of the splitmix64 generator behind member ids.
    random_state: u64,
    pub(crate) completions: Vec<Completion>,
    pub(crate) records: Vec<GroupRecord>,
    pub(crate) next_retention_check_ms: i64,
    /// False while `__consumer_offsets` is being replayed: every request is
    /// answered COORDINATOR_LOAD_IN_PROGRESS (clients retry), as in Kafka.
    pub(crate) loaded: bool,
}

impl Coordinator {
    /// A coordinator that serves at once (nothing to replay).
    ///
    /// `seed` makes member ids unique across restarts; the broker passes
    /// something random (or the clock), tests pass a constant.
    pub fn new(config: GroupConfig, seed: u64) -> Coordinator {
        Coordinator {
            loaded: true,
            ..Coordinator::loading(config, seed)
        }
    }

    /// A coordinator that answers COORDINATOR_LOAD_IN_PROGRESS until
    /// [`Coordinator::finish_loading`]; records are replayed into it first.
    pub fn loading(config: GroupConfig, seed: u64) -> Coordinator {
        Coordinator {
            config,
            groups: HashMap::new(),
            next_token: 1,
            random_state: seed,
            completions: Vec::new(),
            records: Vec::new(),
            next_retention_check_ms: i64::MIN,
            loaded: false,
        }
    }

    /// Replay is done: serve requests from now on.
    pub fn finish_loading(&mut self) {
        self.loaded = true;
    }

    pub fn is_loaded(&self) -> bool {
        self.loaded
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// Delayed answers that became ready, in the order they did.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        std::mem::take(&mut self.completions)
    }

    /// Records the state machine already applied in memory and that must now
    /// be appended to `__consumer_offsets` (group changes, deletions,
    /// expired offsets), in order.
    pub fn take_records(&mut self) -> Vec<GroupRecord> {
        std::mem::take(&mut self.records)
    }

    /// Replays one record of `__consumer_offsets` (at startup, oldest first;
    /// a later record for the same key wins). `value` `None` is a tombstone.
    pub fn load(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: i64) -> Result<(), LoadError> {
        let key = RecordKey::decode(key).map_err(LoadError::Key)?;
        match (key, value) {
            (
                RecordKey::Offset {
                    group_id,
                    topic,
                    partition,
                },
                Some(bytes),
            ) => {
                let value = OffsetValue::decode(bytes).map_err(|source| LoadError::Value {
                    key: RecordKey::Offset {
                        group_id: group_id.clone(),
                        topic: topic.clone(),
                        partition,
                    },
                    source,
                })?;
                let group = self
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id, now_ms));
                group
                    .offsets
                    .entry(topic)
                    .or_default()
                    .insert(partition, value);
            }
            (
                RecordKey::Offset {
                    group_id,
                    topic,
                    partition,
                },
                None,
            ) => {
                if let Some(group) = self.groups.get_mut(&group_id) {
                    remove_offset(group, &topic, partition);
                }
            }
            (RecordKey::Group { group_id }, Some(bytes)) => {
                let value = GroupValue::decode(bytes).map_err(|source| LoadError::Value {
                    key: RecordKey::Group {
                        group_id: group_id.clone(),
                    },
                    source,
                })?;
                self.groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(group_id, now_ms))
                    .restore(value, now_ms);
            }
            (RecordKey::Group { group_id }, None) => {
                self.groups.remove(&group_id);
            }
        }
        Ok(())
    }

    /// Applies records returned by a commit once the broker appended them
    /// (the same path as replay, so memory never runs ahead of the log).
    pub fn apply(&mut self, records: &[GroupRecord], now_ms: i64) -> Result<(), LoadError> {
        for record in records {
            self.load(&record.key, record.value.as_deref(), now_ms)?;
        }
        Ok(())
    }

    /// The number of groups held (including offset-only groups).
    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub(crate) fn token(&mut self) -> Token {
        let token = Token(self.next_token);
        self.next_token += 1;
        token
    }

    /// A new member id: `<client id>-<32 hex digits>`, as Kafka forms them.
    pub(crate) fn member_id(&mut self, client_id: &str) -> String {
        // Client ids may be 32767 bytes long; an id must stay well inside
        // the i16 length of the strings it is stored and sent in.
        let mut end = client_id.len().min(MEMBER_ID_PREFIX_BYTES_MAX);
        while !client_id.is_char_boundary(end) {
            end -= 1;
        }
        let high = self.random();
        let low = self.random();
        format!("{}-{high:016x}{low:016x}", &client_id[..end])
    }

    fn random(&mut self) -> u64 {
        // splitmix64: a tiny, well-mixed generator; ids only need to be
        // unique, not secret.
        self.random_state = self.random_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.random_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn partition(&self, group_id: &str) -> i32 {
        partition_for(group_id, self.config.offsets_topic_partitions)
    }

    pub(crate) fn group_record(&self, group: &Group) -> Option<GroupRecord> {
        let key = RecordKey::Group {
            group_id: group.id.clone(),
        };
        // Encoding fails only for strings over 32767 bytes, which requests
        // cannot carry (their own length prefixes are i16), so dropping the
        // record here loses nothing a client could have sent.
        let key = key.encode().ok()?;
        let value = group.to_value().encode().ok()?;
        Some(GroupRecord {
            partition: self.partition(&group.id),
            key,
            value: Some(value),
        })
    }

    pub(crate) fn tombstone(&self, key: RecordKey) -> Option<GroupRecord> {
        Some(GroupRecord {
            partition: self.partition(key.group_id()),
            key: key.encode().ok()?,
            value: None,
        })
    }
}

pub(crate) fn remove_offset(group: &mut Group, topic: &str, partition: i32) -> bool {
    let Some(partitions) = group.offsets.get_mut(topic) else {
        return false;
    };
    let removed = partitions.remove(&partition).is_some();
    if partitions.is_empty() {
        group.offsets.remove(topic);
    }
    removed
}
