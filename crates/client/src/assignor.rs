//! The classic group protocol's client-side assignors: the group's leader
//! runs one over every member's [`Subscription`] to decide who reads which
//! partition. (KIP-848 groups are assigned by the coordinator instead.)

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::topic_partition::TopicPartition;

/// How partitions are spread over a group's members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    /// Kafka's `range`: per topic, contiguous ranges to members in order.
    Range,
    /// Kafka's `cooperative-sticky`: balanced, keeps partitions where they
    /// were, and moves them in two rebalances so no member stops consuming
    /// the partitions it keeps.
    CooperativeSticky,
}

impl Assignor {
    pub fn name(self) -> &'static str {
        match self {
            Assignor::Range => "range",
            Assignor::CooperativeSticky => "cooperative-sticky",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Assignor> {
        match name {
            "range" => Some(Assignor::Range),
            "cooperative-sticky" => Some(Assignor::CooperativeSticky),
            _ => None,
        }
    }

    /// Each member's partitions, by member id.
    pub(crate) fn assign(
        self,
        subscriptions: &BTreeMap<String, Subscription>,
        partition_counts: &BTreeMap<String, i32>,
    ) -> BTreeMap<String, Vec<TopicPartition>> {
        match self {
            Assignor::Range => assign_range(subscriptions, partition_counts),
            Assignor::CooperativeSticky => {
                assign_cooperative_sticky(subscriptions, partition_counts)
            }
        }
    }
}

/// A member's subscription as the leader reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub(crate) topics: Vec<String>,
    pub(crate) owned: Vec<TopicPartition>,
}

/// Kafka's range assignor: for each topic, members subscribed to it in
/// member-id order get contiguous ranges, the first ones one more.
fn assign_range(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut plan: BTreeMap<String, Vec<TopicPartition>> = subscriptions
        .keys()
        .map(|member| (member.clone(), Vec::new()))
        .collect();
    for (topic, &count) in partition_counts {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.topics.contains(topic))
            .map(|(member, _)| member)
            .collect();
        if members.is_empty() {
            continue;
        }
        let per_member = count / members.len() as i32;
        let extra = count % members.len() as i32;
        let mut next = 0;
        for (index, member) in members.iter().enumerate() {
            let take = per_member + i32::from((index as i32) < extra);
            if let Some(partitions) = plan.get_mut(*member) {
                partitions.extend((next..next + take).map(|p| TopicPartition::new(topic, p)));
            }
            next += take;
        }
    }
    plan
}

/// Who owns what before a sticky assignment: each owned partition's member,
/// and the partitions claimed by two members (a stale one), which belong to
/// nobody.
struct Owners<'a> {
    owner: HashMap<TopicPartition, &'a String>,
    claimed_twice: BTreeSet<TopicPartition>,
}

impl<'a> Owners<'a> {
    fn new(subscriptions: &'a BTreeMap<String, Subscription>) -> Owners<'a> {
        let mut owners = Owners {
            owner: HashMap::new(),
            claimed_twice: BTreeSet::new(),
        };
        for (member, subscription) in subscriptions {
            for tp in &subscription.owned {
                if owners.owner.insert(tp.clone(), member).is_some() {
                    owners.claimed_twice.insert(tp.clone());
                }
            }
        }
        owners
    }

    /// Whether `member` may take `tp` this round: nobody else still owns it.
    fn free_for(&self, tp: &TopicPartition, member: &String) -> bool {
        match self.owner.get(tp) {
            Some(current) => *current == member || self.claimed_twice.contains(tp),
            None => true,
        }
    }
}

/// Kafka's cooperative-sticky assignor: a balanced assignment that keeps
/// each member's owned partitions where it can; a partition that moves is
/// left out this round (its owner revokes it and rejoins, KIP-429) and handed
/// to its new owner in the next.
fn assign_cooperative_sticky(
    subscriptions: &BTreeMap<String, Subscription>,
    partition_counts: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<TopicPartition>> {
    let mut all: Vec<TopicPartition> = Vec::new();
    for (topic, &count) in partition_counts {
        if subscriptions.values().any(|s| s.topics.contains(topic)) {
            all.extend((0..count).map(|p| TopicPartition::new(topic, p)));
        }
    }
    if subscriptions.is_empty() {
        return BTreeMap::new();
    }
    let owners = Owners::new(subscriptions);
    let mut target = keep_owned(subscriptions, &all, &owners);
    hand_out_rest(subscriptions, &all, &mut target);
    // Cooperative step: a partition still owned by someone else waits a round.
    target
        .into_iter()
        .map(|(member, partitions)| {
            let mut partitions: Vec<TopicPartition> = partitions
                .into_iter()
                .filter(|tp| owners.free_for(tp, member))
                .collect();
            partitions.sort();
            (member.clone(), partitions)
        })
        .collect()
}

/// Each member keeps the partitions it owns up to its quota (the first
/// members with more than the minimum may keep one more).
fn keep_owned<'a>(
    subscriptions: &'a BTreeMap<String, Subscription>,
    all: &[TopicPartition],
    owners: &Owners,
) -> BTreeMap<&'a String, Vec<TopicPartition>> {
    let quota_min = all.len() / subscriptions.len();
    let with_extra = all.len() % subscriptions.len();
    let mut extras_given = 0;
    let mut target = BTreeMap::new();
    for (member, subscription) in subscriptions {
        let mut kept: Vec<TopicPartition> = subscription
            .owned
            .iter()
            .filter(|tp| all.contains(tp) && !owners.claimed_twice.contains(*tp))
            .filter(|tp| subscription.topics.contains(&tp.topic))
            .cloned()
            .collect();
        kept.sort();
        let quota = if kept.len() > quota_min && extras_given < with_extra {
            extras_given += 1;
            quota_min + 1
        } else {
            quota_min
        };
        kept.truncate(quota);
        target.insert(member, kept);
    }
    target
}

/// Hands the partitions nobody kept to the least loaded members subscribed
/// to their topic.
fn hand_out_rest(
    subscriptions: &BTreeMap<String, Subscription>,
    all: &[TopicPartition],
    target: &mut BTreeMap<&String, Vec<TopicPartition>>,
) {
    let taken: BTreeSet<TopicPartition> = target.values().flatten().cloned().collect();
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let chosen = target
            .iter()
            .filter(|(member, _)| subscriptions[**member].topics.contains(&tp.topic))
            .min_by_key(|(member, partitions)| (partitions.len(), **member))
            .map(|(member, _)| *member);
        if let Some(member) = chosen
            && let Some(slot) = target.get_mut(member)
        {
            slot.push(tp.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(topics: &[&str], owned: &[TopicPartition]) -> Subscription {
        Subscription {
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.to_vec(),
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_first_members_one_more() {
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &[])),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let plan = Assignor::Range.assign(&subscriptions, &BTreeMap::from([("t".to_string(), 5)]));
        let partitions = |m: &str| plan[m].iter().map(|tp| tp.partition).collect::<Vec<_>>();
        assert_eq!(partitions("a"), vec![0, 1, 2]);
        assert_eq!(partitions("b"), vec![3, 4]);
    }

    #[test]
    fn cooperative_sticky_keeps_owned_and_defers_moves() {
        // "a" owned all six; "b" joins. "a" keeps three, "b" gets nothing
        // this round (the other three are still owned by "a").
        let owned: Vec<TopicPartition> = (0..6).map(|p| TopicPartition::new("t", p)).collect();
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &owned)),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let counts = BTreeMap::from([("t".to_string(), 6)]);
        let sticky = Assignor::CooperativeSticky;
        let first = sticky.assign(&subscriptions, &counts);
        assert_eq!(first["a"].len(), 3);
        assert!(first["b"].is_empty());
        // Next round "a" owns only its three: "b" gets the rest.
        let subscriptions = BTreeMap::from([
            ("a".to_string(), subscription(&["t"], &first["a"])),
            ("b".to_string(), subscription(&["t"], &[])),
        ]);
        let second = sticky.assign(&subscriptions, &counts);
        assert_eq!(second["a"], first["a"]);
        assert_eq!(second["b"].len(), 3);
        assert!(second["b"].iter().all(|tp| !second["a"].contains(tp)));
    }
}
