//! Where a new partition's replicas go: striped across racks, round-robin
//! over the brokers within each rack, the first replica (the preferred
//! leader) on an unfenced broker.
//!
//! The brokers are grouped by rack (brokers with no rack form one rack of
//! their own), racks sorted by name and brokers by id, so the answer depends
//! on the set of brokers and not on the order they are given in. Partition
//! `t` of the stripe starts at rack `t % racks` and takes one broker from each
//! rack in turn, wrapping around, until it has its replicas; within a rack it
//! starts at broker `t / racks` (one further for the racks before the
//! starting one) and takes the next on every later visit. With racks of equal
//! size this is a window sliding one step per partition over the brokers
//! dealt out rack by rack, so over any `brokers` consecutive partitions every
//! broker leads exactly once and holds exactly `replication_factor` replicas,
//! and a partition spans `min(replication_factor, racks)` racks whatever the
//! rack sizes.
//!
//! Fenced brokers are taken only as followers, and from a rack only once its
//! unfenced brokers are all in the partition; the leader comes from the first
//! rack in turn that has an unfenced broker. The striping's start comes from
//! the caller (a seeded offset); the result goes into the metadata record,
//! so replaying the log never places again.
//!
//! Unlike a placer that reshuffles as it goes, the layout repeats every
//! `brokers` partitions: the same offset always gives the same layout, and
//! a broker's followers are its neighbours in the dealt order.

use std::collections::BTreeMap;

use rill_metadata::Broker;

/// A broker that may be given replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsableBroker<'a> {
    pub id: i32,
    /// `None` is a rack of its own, shared by every broker without one.
    pub rack: Option<&'a str>,
    /// A fenced broker is never a leader and is a follower only when its
    /// rack has no unfenced broker left for the partition.
    pub fenced: bool,
}

impl<'a> From<&'a Broker> for UsableBroker<'a> {
    fn from(broker: &'a Broker) -> Self {
        Self {
            id: broker.id,
            rack: broker.rack.as_deref(),
            fenced: broker.fenced,
        }
    }
}

/// Why no placement exists. Every variant is Kafka's
/// `INVALID_REPLICATION_FACTOR` to a client (CreateTopics, CreatePartitions),
/// as in Kafka's striped placer, which also reports no brokers at all as all
/// of them fenced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("invalid replication factor {0}: the replication factor must be positive")]
    NonPositiveReplicationFactor(i16),
    #[error("all brokers are currently fenced")]
    AllFenced,
    #[error(
        "the target replication factor of {replication_factor} cannot be reached because \
         only {brokers} broker(s) are usable"
    )]
    TooFewBrokers {
        replication_factor: i16,
        brokers: usize,
    },
}

/// Replica lists for a new topic's `partitions` partitions, the leader
/// first in each.
///
/// The replication factor is checked against the brokers given: the
/// controller gives the live (unfenced) ones, so a topic never has more
/// replicas than live brokers. Given fenced brokers too, it counts them, as
/// Kafka counts every registered broker, and uses them as followers only when
/// a rack runs out of unfenced ones. A broker id given twice counts once.
pub fn place_topic(
    brokers: &[UsableBroker<'_>],
    partitions: u32,
    replication_factor: i16,
    offset: u64,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    place_partitions(brokers, 0, partitions, replication_factor, offset)
}

/// Replica lists for partitions `first..first + count` of a topic
/// (CreatePartitions, with the topic's replication factor and the offset it
/// was created with): the stripe continues where the first `first`
/// partitions left it, so with the same brokers the layout is the one the
/// topic would have had if created with all its partitions.
pub fn place_partitions(
    brokers: &[UsableBroker<'_>],
    first: u32,
    count: u32,
    replication_factor: i16,
    offset: u64,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    let racks = Racks::new(brokers);
    let replicas = racks.check(replication_factor)?;
    Ok((0..count)
        .map(|p| {
            let t = offset
                .wrapping_add(u64::from(first))
                .wrapping_add(u64::from(p));
            racks.place(t, replicas)
        })
        .collect())
}

/// One rack's brokers, each list sorted by id.
#[derive(Default)]
struct Rack {
    unfenced: Vec<i32>,
    fenced: Vec<i32>,
}

impl Rack {
    /// The `k`-th broker this rack gives a partition that starts at `base`
    /// in it: the unfenced brokers round-robin from `base`, then the fenced
    /// ones likewise; `None` once all are taken.
    fn pick(&self, base: u64, k: usize) -> Option<i32> {
        let rotate = |list: &[i32], k: usize| {
            let len = list.len() as u64;
            let start = (base % len) as usize;
            list[(start + k) % list.len()]
        };
        if k < self.unfenced.len() {
            return Some(rotate(&self.unfenced, k));
        }
        let k = k - self.unfenced.len();
        (k < self.fenced.len()).then(|| rotate(&self.fenced, k))
    }
}

/// The racks in name order, no rack first.
struct Racks {
    racks: Vec<Rack>,
    brokers: usize,
    unfenced: usize,
}

impl Racks {
    fn new(brokers: &[UsableBroker<'_>]) -> Self {
        let mut sorted = brokers.to_vec();
        sorted.sort_by_key(|b| b.id);
        sorted.dedup_by_key(|b| b.id);
        let mut by_name: BTreeMap<Option<&str>, Rack> = BTreeMap::new();
        for broker in &sorted {
            let rack = by_name.entry(broker.rack).or_default();
            match broker.fenced {
                true => rack.fenced.push(broker.id),
                false => rack.unfenced.push(broker.id),
            }
        }
        Self {
            racks: by_name.into_values().collect(),
            brokers: sorted.len(),
            unfenced: sorted.iter().filter(|b| !b.fenced).count(),
        }
    }

    /// The replication factor as a count, if these brokers can hold it
    /// (checked in the order Kafka checks).
    fn check(&self, replication_factor: i16) -> Result<usize, PlacementError> {
        let replicas = usize::try_from(replication_factor)
            .ok()
            .filter(|&r| r > 0)
            .ok_or(PlacementError::NonPositiveReplicationFactor(
                replication_factor,
            ))?;
        if self.unfenced == 0 {
            return Err(PlacementError::AllFenced);
        }
        if replicas > self.brokers {
            return Err(PlacementError::TooFewBrokers {
                replication_factor,
                brokers: self.brokers,
            });
        }
        Ok(replicas)
    }

    /// Partition `t` of the stripe. Needs an unfenced broker and at least
    /// `replicas` brokers (`check`), so both loops end.
    fn place(&self, t: u64, replicas: usize) -> Vec<i32> {
        let n = self.racks.len();
        let start = (t % n as u64) as usize;
        let round = t / n as u64;
        let (leader_rack, skipped) = (0..n)
            .map(|s| ((start + s) % n, s as u64))
            .find(|&(j, _)| !self.racks[j].unfenced.is_empty())
            .unwrap_or((start, 0));
        // A rack leading in the turn of racks before it with no unfenced
        // broker starts one further per rack skipped, so that it does not
        // give the same leader for each of those turns. Wrapping is harmless:
        // only `u64::MAX` partitions later would the stripe repeat early.
        let base = |j: usize| {
            let shift = if j == leader_rack { skipped } else { 0 };
            round.wrapping_add(u64::from(j < start)).wrapping_add(shift)
        };
        let mut taken = vec![0usize; n];
        let mut placed = Vec::with_capacity(replicas);
        placed.extend(self.racks[leader_rack].pick(base(leader_rack), 0));
        taken[leader_rack] = 1;
        let mut leader_visit_pending = true;
        let mut j = start;
        while placed.len() < replicas {
            if j == leader_rack && leader_visit_pending {
                leader_visit_pending = false;
            } else if let Some(broker) = self.racks[j].pick(base(j), taken[j]) {
                placed.push(broker);
                taken[j] += 1;
            }
            j = (j + 1) % n;
        }
        placed
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use proptest::prelude::*;

    use super::*;

    fn up(id: i32, rack: Option<&str>) -> UsableBroker<'_> {
        UsableBroker {
            id,
            rack,
            fenced: false,
        }
    }

    fn down(id: i32, rack: Option<&str>) -> UsableBroker<'_> {
        UsableBroker {
            id,
            rack,
            fenced: true,
        }
    }

    fn three_racks_of_two() -> Vec<UsableBroker<'static>> {
        let racks = [Some("a"), Some("b"), Some("c")];
        (1..=6)
            .map(|id| up(id, racks[(id as usize - 1) / 2]))
            .collect()
    }

    fn rack_of(brokers: &[UsableBroker<'_>], id: i32) -> Option<String> {
        let broker = brokers.iter().find(|b| b.id == id).unwrap();
        broker.rack.map(str::to_owned)
    }

    #[test]
    fn three_brokers_without_racks_rotate_the_leader() {
        let brokers = [up(3, None), up(1, None), up(2, None)];
        let placed = place_topic(&brokers, 4, 3, 0).unwrap();
        assert_eq!(placed, [[1, 2, 3], [2, 3, 1], [3, 1, 2], [1, 2, 3]]);
        let shifted = place_topic(&brokers, 2, 2, 1).unwrap();
        assert_eq!(shifted, [[2, 3], [3, 1]]);
    }

    #[test]
    fn three_racks_of_two_put_each_replica_on_its_own_rack() {
        let brokers = three_racks_of_two();
        let placed = place_topic(&brokers, 6, 3, 0).unwrap();
        assert_eq!(
            placed,
            [
                [1, 3, 5],
                [3, 5, 2],
                [5, 2, 4],
                [2, 4, 6],
                [4, 6, 1],
                [6, 1, 3]
            ]
        );
        for replicas in &placed {
            let racks: BTreeSet<_> = replicas.iter().map(|&id| rack_of(&brokers, id)).collect();
            assert_eq!(racks.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn create_partitions_continues_the_stripe() {
        let brokers = three_racks_of_two();
        let whole = place_topic(&brokers, 9, 2, 7).unwrap();
        let more = place_partitions(&brokers, 4, 5, 2, 7).unwrap();
        assert_eq!(more, whole[4..]);
    }

    #[test]
    fn fenced_brokers_follow_only_when_a_rack_runs_out() {
        let brokers = [up(1, None), down(2, None), up(3, None)];
        for replicas in place_topic(&brokers, 6, 2, 0).unwrap() {
            assert!(!replicas.contains(&2), "{replicas:?}");
        }
        for replicas in place_topic(&brokers, 6, 3, 0).unwrap() {
            assert_eq!(replicas[2], 2, "{replicas:?}");
        }
        // Rack "a" has only a fenced broker: it never leads, but still
        // holds a replica so that the partition spans both racks.
        let brokers = [down(1, Some("a")), up(2, Some("b")), up(3, Some("b"))];
        let placed = place_topic(&brokers, 2, 2, 0).unwrap();
        assert_eq!(placed, [[3, 1], [2, 1]]);
    }

    #[test]
    fn brokers_without_a_rack_share_one() {
        let brokers = [up(1, None), up(2, None), up(3, Some("a"))];
        let placed = place_topic(&brokers, 4, 2, 0).unwrap();
        assert_eq!(placed, [[1, 3], [3, 2], [2, 3], [3, 1]]);
    }

    #[test]
    fn a_broker_given_twice_counts_once() {
        let brokers = [up(1, None), up(1, None)];
        assert_eq!(place_topic(&brokers, 1, 1, 0).unwrap(), [[1]]);
        assert_eq!(
            place_topic(&brokers, 1, 2, 0),
            Err(PlacementError::TooFewBrokers {
                replication_factor: 2,
                brokers: 1
            })
        );
    }

    #[test]
    fn impossible_replication_factors_are_refused() {
        let brokers = [up(1, None), up(2, None), up(3, None)];
        for rf in [0, -1] {
            let refused = place_topic(&brokers, 1, rf, 0);
            assert_eq!(
                refused,
                Err(PlacementError::NonPositiveReplicationFactor(rf))
            );
        }
        let refused = place_topic(&brokers, 1, 4, 0);
        let too_few = PlacementError::TooFewBrokers {
            replication_factor: 4,
            brokers: 3,
        };
        assert_eq!(refused, Err(too_few));
        assert_eq!(place_topic(&[], 1, 1, 0), Err(PlacementError::AllFenced));
        let fenced = [down(1, None), down(2, None)];
        assert_eq!(
            place_topic(&fenced, 1, 1, 0),
            Err(PlacementError::AllFenced)
        );
        assert_eq!(place_topic(&brokers, 0, 3, 0), Ok(vec![]));
    }

    #[test]
    fn the_largest_offset_does_not_overflow() {
        let brokers = three_racks_of_two();
        let placed = place_topic(&brokers, 3, 3, u64::MAX).unwrap();
        assert_eq!(placed.len(), 3);
        let single = place_topic(&[up(1, None), up(2, None)], 3, 2, u64::MAX).unwrap();
        assert_eq!(single.len(), 3);
    }

    /// Up to 12 brokers on up to 4 racks (rack 4 = no rack), some fenced,
    /// at least one not.
    fn any_cluster() -> impl Strategy<Value = Vec<(i32, Option<String>, bool)>> {
        let broker = (0..12i32, 0..5u8, any::<bool>()).prop_map(|(id, rack, fenced)| {
            let rack = (rack < 4).then(|| format!("r{rack}"));
            (id, rack, fenced)
        });
        prop::collection::vec(broker, 1..16).prop_map(|mut brokers| {
            brokers[0].2 = false;
            brokers.sort_by_key(|b| b.0);
            brokers.dedup_by_key(|b| b.0);
            brokers
        })
    }

    fn usable(brokers: &[(i32, Option<String>, bool)]) -> Vec<UsableBroker<'_>> {
        let usable = brokers.iter().map(|(id, rack, fenced)| UsableBroker {
            id: *id,
            rack: rack.as_deref(),
            fenced: *fenced,
        });
        usable.collect()
    }

    proptest! {
        #[test]
        fn every_partition_is_valid_and_spread_over_racks(
            cluster in any_cluster(),
            rf_pick in 1usize..16,
            partitions in 0u32..40,
            offset in any::<u64>(),
        ) {
            let brokers = usable(&cluster);
            let rf = 1 + rf_pick % brokers.len();
            let placed = place_topic(&brokers, partitions, rf as i16, offset).unwrap();
            let racks: BTreeSet<_> = brokers.iter().map(|b| b.rack).collect();
            prop_assert_eq!(placed.len(), partitions as usize);
            for replicas in &placed {
                prop_assert_eq!(replicas.len(), rf);
                let distinct: BTreeSet<_> = replicas.iter().collect();
                prop_assert_eq!(distinct.len(), rf, "duplicate in {:?}", replicas);
                let leader = brokers.iter().find(|b| b.id == replicas[0]).unwrap();
                prop_assert!(!leader.fenced);
                let spanned: BTreeSet<_> =
                    replicas.iter().map(|&id| rack_of(&brokers, id)).collect();
                prop_assert_eq!(spanned.len(), rf.min(racks.len()));
            }
        }

        #[test]
        fn placement_is_deterministic_and_ignores_input_order(
            cluster in any_cluster(),
            partitions in 0u32..20,
            offset in any::<u64>(),
        ) {
            let brokers = usable(&cluster);
            let mut reversed = brokers.clone();
            reversed.reverse();
            let once = place_topic(&brokers, partitions, 1, offset);
            prop_assert_eq!(&once, &place_topic(&brokers, partitions, 1, offset));
            prop_assert_eq!(&once, &place_topic(&reversed, partitions, 1, offset));
        }

        #[test]
        fn balanced_racks_give_balanced_brokers(
            racks in 1usize..5,
            per_rack in 1usize..5,
            rf_pick in 0usize..20,
            rounds in 1u32..5,
            extra in 0u32..20,
            offset in any::<u64>(),
        ) {
            let names: Vec<String> = (0..racks).map(|r| format!("r{r}")).collect();
            let n = racks * per_rack;
            let brokers: Vec<_> = (0..n)
                .map(|i| up(i as i32 * 7 + 1, Some(names[i % racks].as_str())))
                .collect();
            let rf = 1 + rf_pick % n;
            // Whole rounds of `n` partitions: every broker exactly alike.
            let placed = place_topic(&brokers, rounds * n as u32, rf as i16, offset).unwrap();
            let (leaders, replicas) = counts(&placed);
            for broker in &brokers {
                prop_assert_eq!(leaders.get(&broker.id), Some(&(rounds as usize)));
                prop_assert_eq!(replicas.get(&broker.id), Some(&(rounds as usize * rf)));
            }
            // Any count: leaders within one of the mean.
            let partitions = rounds * n as u32 + extra;
            let placed = place_topic(&brokers, partitions, rf as i16, offset).unwrap();
            let (leaders, _) = counts(&placed);
            let mean = partitions as f64 / n as f64;
            for broker in &brokers {
                let led = leaders.get(&broker.id).copied().unwrap_or(0) as f64;
                prop_assert!((led - mean).abs() <= 1.0, "{} led {}, mean {}", broker.id, led, mean);
            }
        }
    }

    fn counts(placed: &[Vec<i32>]) -> (HashMap<i32, usize>, HashMap<i32, usize>) {
        let mut leaders = HashMap::new();
        let mut replicas = HashMap::new();
        for partition in placed {
            *leaders.entry(partition[0]).or_default() += 1;
            for &id in partition {
                *replicas.entry(id).or_default() += 1;
            }
        }
        (leaders, replicas)
    }
}
