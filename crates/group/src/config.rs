//! The coordinator's settings, named after the Kafka broker settings they
//! stand for.

/// Settings of the group coordinator; every limit says why it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an
    /// empty group waits for more members, so that consumers started together
    /// form one generation instead of one rebalance each. Kafka uses 3000;
    /// Rill defaults to 100 because tests and small deployments start few
    /// consumers and should not wait three seconds.
    pub initial_rebalance_delay_ms: i64,
    /// `group.min.session.timeout.ms`: a shorter session would let a member be
    /// evicted by one slow heartbeat.
    pub session_timeout_min_ms: i32,
    /// `group.max.session.timeout.ms`: a dead member holds its partitions this
    /// long at most.
    pub session_timeout_max_ms: i32,
    /// `group.max.size`: every member's metadata is sent to the leader in one
    /// JoinGroup response, which must stay a sane size.
    pub group_size_max: usize,
    /// How many groups (including offset-only groups) the coordinator holds:
    /// each costs memory for as long as it has committed offsets.
    pub groups_max: usize,
    /// Largest protocol metadata (subscription) of one member: the leader
    /// receives all of them at once (`group_size_max` × this bounds that).
    pub member_metadata_bytes_max: usize,
    /// Largest assignment the leader may hand one member in SyncGroup.
    pub assignment_bytes_max: usize,
    /// `offset.metadata.max.bytes`: the free-form string stored with each
    /// committed offset; Kafka's default is 4096.
    pub offset_metadata_bytes_max: usize,
    /// `offsets.retention.minutes` in milliseconds: offsets of a group that
    /// has been empty this long are deleted (Kafka's default: 7 days).
    pub offsets_retention_ms: i64,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are
    /// looked for; the sweep visits every group, so it must not run per tick.
    pub offsets_retention_check_interval_ms: i64,
    /// `group.consumer.session.timeout.ms` (KIP-848 groups): Kafka's 45 s.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (KIP-848 groups): how often
    /// members heartbeat, and so how fast a rebalance's steps follow each
    /// other. Kafka uses 5000; 1000 makes rebalances quicker at the price
    /// of one small request per member per second.
    pub consumer_heartbeat_interval_ms: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`;
    /// a group lives in partition `abs(java_hash(group_id)) % this`.
    pub offsets_topic_partitions: i32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            initial_rebalance_delay_ms: 100,
            session_timeout_min_ms: 6_000,
            session_timeout_max_ms: 1_800_000,
            group_size_max: 1_000,
            groups_max: 100_000,
            member_metadata_bytes_max: 256 * 1024,
            assignment_bytes_max: 1024 * 1024,
            offset_metadata_bytes_max: 4096,
            offsets_retention_ms: 7 * 24 * 60 * 60 * 1000,
            offsets_retention_check_interval_ms: 60_000,
            consumer_session_timeout_ms: 45_000,
            consumer_heartbeat_interval_ms: 1_000,
            offsets_topic_partitions: 50,
        }
    }
}
