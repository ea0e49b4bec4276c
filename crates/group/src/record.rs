//! The records the coordinator persists in `__consumer_offsets`, and their
//! bytes. The layout is Kafka's own (OffsetCommitKey v1 / OffsetCommitValue
//! v3, GroupMetadataKey v2 / GroupMetadataValue v3), so a dump of the topic
//! reads the same as Kafka's; docs/FORMAT.md gives it byte by byte.
//!
//! A key names an offset or a group; a value `None` is a tombstone: the
//! offset or the group is deleted.

use bytes::Bytes;
use rill_protocol::codec::{DecodeError, Decoder, EncodeError, Encoder};

/// Key version of an offset commit (Kafka's OffsetCommitKey v1).
pub const OFFSET_KEY_VERSION: i16 = 1;
/// Key version of a group's metadata (Kafka's GroupMetadataKey v2).
pub const GROUP_KEY_VERSION: i16 = 2;
/// Value version of an offset commit (Kafka's OffsetCommitValue v3).
pub const OFFSET_VALUE_VERSION: i16 = 3;
/// Value version of a group's metadata (Kafka's GroupMetadataValue v3).
pub const GROUP_VALUE_VERSION: i16 = 3;

/// One record to append to (or replayed from) `__consumer_offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The partition of `__consumer_offsets` the group maps to.
    pub partition: i32,
    pub key: Bytes,
    /// `None`: a tombstone.
    pub value: Option<Bytes>,
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    Offset {
        group_id: String,
        topic: String,
        partition: i32,
    },
    Group {
        group_id: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    pub offset: i64,
    /// -1 when the client did not say.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A classic group as stored after each completed rebalance, so that a
/// restarted coordinator knows the members and their assignments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    /// When the group entered its current state; for an empty group, when it
    /// became empty (offsets expire from there).
    pub state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// One member of a stored group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's selected protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unknown key version {0}")]
    UnknownKeyVersion(i16),
    #[error("unknown {what} value version {version}")]
    UnknownValueVersion { what: &'static str, version: i16 },
    #[error("malformed record: {0}")]
    Malformed(#[from] DecodeError),
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    #[error("cannot encode record: {0}")]
    Encode(#[from] EncodeError),
}

/// The partition of `__consumer_offsets` that holds `group_id`, computed as
/// Kafka does (`Utils.abs(groupId.hashCode()) % partitions`) so the mapping
/// stays the same if data ever moves between the two systems.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    let hash = java_string_hash(group_id);
    // Kafka's Utils.abs maps i32::MIN to 0 instead of overflowing.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partitions.max(1)
}

/// `java.lang.String.hashCode`: over UTF-16 code units, wrapping.
fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

impl RecordKey {
    pub fn group_id(&self) -> &str {
        match self {
            RecordKey::Offset { group_id, .. } | RecordKey::Group { group_id } => group_id,
        }
    }

    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut enc = Encoder::new();
        match self {
            RecordKey::Offset {
                group_id,
                topic,
                partition,
            } => {
                enc.put_i16(OFFSET_KEY_VERSION);
                enc.put_string(group_id, false)?;
                enc.put_string(topic, false)?;
                enc.put_i32(*partition);
            }
            RecordKey::Group { group_id } => {
                enc.put_i16(GROUP_KEY_VERSION);
                enc.put_string(group_id, false)?;
            }
        }
        Ok(enc.finish().buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<RecordKey, RecordError> {
        let mut dec = Decoder::new(Bytes::copy_from_slice(bytes));
        let key = match dec.i16()? {
            // Version 0 has the same layout as 1 in Kafka.
            0 | OFFSET_KEY_VERSION => RecordKey::Offset {
                group_id: dec.string(false, "group")?,
                topic: dec.string(false, "topic")?,
                partition: dec.i32()?,
            },
            GROUP_KEY_VERSION => RecordKey::Group {
                group_id: dec.string(false, "group")?,
            },
            other => return Err(RecordError::UnknownKeyVersion(other)),
        };
        finished(&dec)?;
        Ok(key)
    }
}

impl OffsetValue {
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut enc = Encoder::new();
        enc.put_i16(OFFSET_VALUE_VERSION);
        enc.put_i64(self.offset);
        enc.put_i32(self.leader_epoch);
        enc.put_string(&self.metadata, false)?;
        enc.put_i64(self.commit_timestamp_ms);
        Ok(enc.finish().buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<OffsetValue, RecordError> {
        let mut dec = Decoder::new(Bytes::copy_from_slice(bytes));
        let version = dec.i16()?;
        if version != OFFSET_VALUE_VERSION {
            return Err(RecordError::UnknownValueVersion {
                what: "offset",
                version,
            });
        }
        let value = OffsetValue {
            offset: dec.i64()?,
            leader_epoch: dec.i32()?,
            metadata: dec.string(false, "metadata")?,
            commit_timestamp_ms: dec.i64()?,
        };
        finished(&dec)?;
        Ok(value)
    }
}

impl GroupValue {
    pub fn encode(&self) -> Result<Bytes, RecordError> {
        let mut enc = Encoder::new();
        enc.put_i16(GROUP_VALUE_VERSION);
        enc.put_string(&self.protocol_type, false)?;
        enc.put_i32(self.generation);
        enc.put_opt_string(self.protocol_name.as_deref(), true, false, "protocol")?;
        enc.put_opt_string(self.leader.as_deref(), true, false, "leader")?;
        enc.put_i64(self.state_timestamp_ms);
        let count = i32::try_from(self.members.len()).map_err(|_| EncodeError::TooLong {
            what: "members",
            len: self.members.len(),
        })?;
        enc.put_i32(count);
        for member in &self.members {
            enc.put_string(&member.member_id, false)?;
            enc.put_opt_string(member.group_instance_id.as_deref(), true, false, "instance")?;
            enc.put_string(&member.client_id, false)?;
            enc.put_string(&member.client_host, false)?;
            enc.put_i32(member.rebalance_timeout_ms);
            enc.put_i32(member.session_timeout_ms);
            enc.put_bytes(&member.subscription, false)?;
            enc.put_bytes(&member.assignment, false)?;
        }
        Ok(enc.finish().buf)
    }

    pub fn decode(bytes: &[u8]) -> Result<GroupValue, RecordError> {
        let mut dec = Decoder::new(Bytes::copy_from_slice(bytes));
        let version = dec.i16()?;
        if version != GROUP_VALUE_VERSION {
            return Err(RecordError::UnknownValueVersion {
                what: "group",
                version,
            });
        }
        let protocol_type = dec.string(false, "protocol type")?;
        let generation = dec.i32()?;
        let protocol_name = dec.opt_string(true, false, "protocol")?;
        let leader = dec.opt_string(true, false, "leader")?;
        let state_timestamp_ms = dec.i64()?;
        // The member count is checked against the bytes left (a member takes
        // at least 24: three 2-byte string lengths, a 2-byte instance id
        // length, two timeouts and two 4-byte byte-string lengths) before
        // allocating.
        let members = dec.array(false, 24, "members", |dec| {
            Ok(MemberValue {
                member_id: dec.string(false, "member id")?,
                group_instance_id: dec.opt_string(true, false, "instance id")?,
                client_id: dec.string(false, "client id")?,
                client_host: dec.string(false, "client host")?,
                rebalance_timeout_ms: dec.i32()?,
                session_timeout_ms: dec.i32()?,
                subscription: dec.bytes(false, "subscription")?,
                assignment: dec.bytes(false, "assignment")?,
            })
        })?;
        let value = GroupValue {
            protocol_type,
            generation,
            protocol_name,
            leader,
            state_timestamp_ms,
            members,
        };
        finished(&dec)?;
        Ok(value)
    }
}

fn finished(dec: &Decoder) -> Result<(), RecordError> {
    match dec.remaining() {
        0 => Ok(()),
        left => Err(RecordError::TrailingBytes(left)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partition_matches_kafka() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("ab"), 97 * 31 + 98);
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("ab", 50), (97 * 31 + 98) % 50);
        // "polygenelubricants" is the classic string whose hash is i32::MIN.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
    }

    fn member() -> impl Strategy<Value = MemberValue> {
        (
            ".{0,8}",
            proptest::option::of(".{0,8}"),
            ".{0,8}",
            ".{0,8}",
            any::<i32>(),
            any::<i32>(),
            proptest::collection::vec(any::<u8>(), 0..16),
            proptest::collection::vec(any::<u8>(), 0..16),
        )
            .prop_map(
                |(
                    member_id,
                    group_instance_id,
                    client_id,
                    client_host,
                    rebalance,
                    session,
                    sub,
                    asg,
                )| {
                    MemberValue {
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        rebalance_timeout_ms: rebalance,
                        session_timeout_ms: session,
                        subscription: Bytes::from(sub),
                        assignment: Bytes::from(asg),
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn keys_round_trip(group in ".{0,12}", topic in ".{0,12}", partition in any::<i32>()) {
            for key in [
                RecordKey::Offset { group_id: group.clone(), topic: topic.clone(), partition },
                RecordKey::Group { group_id: group.clone() },
            ] {
                let bytes = key.encode().unwrap();
                prop_assert_eq!(RecordKey::decode(&bytes).unwrap(), key);
            }
        }

        #[test]
        fn offset_values_round_trip(offset in any::<i64>(), epoch in any::<i32>(), metadata in ".{0,20}", ts in any::<i64>()) {
            let value = OffsetValue { offset, leader_epoch: epoch, metadata, commit_timestamp_ms: ts };
            prop_assert_eq!(OffsetValue::decode(&value.encode().unwrap()).unwrap(), value);
        }

        #[test]
        fn group_values_round_trip(
            protocol_type in ".{0,8}",
            generation in any::<i32>(),
            protocol_name in proptest::option::of(".{0,8}"),
            leader in proptest::option::of(".{0,8}"),
            ts in any::<i64>(),
            members in proptest::collection::vec(member(), 0..4),
        ) {
            let value = GroupValue { protocol_type, generation, protocol_name, leader, state_timestamp_ms: ts, members };
            prop_assert_eq!(GroupValue::decode(&value.encode().unwrap()).unwrap(), value);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = RecordKey::decode(&bytes);
            let _ = OffsetValue::decode(&bytes);
            let _ = GroupValue::decode(&bytes);
        }
    }

    #[test]
    fn truncated_and_trailing_bytes_are_errors() {
        let value = OffsetValue {
            offset: 7,
            leader_epoch: -1,
            metadata: "m".into(),
            commit_timestamp_ms: 1,
        }
        .encode()
        .unwrap();
        assert!(OffsetValue::decode(&value[..value.len() - 1]).is_err());
        let mut longer = value.to_vec();
        longer.push(0);
        assert_eq!(
            OffsetValue::decode(&longer),
            Err(RecordError::TrailingBytes(1))
        );
    }
}
