//! One partition's replicas and leadership as the metadata records them
//! (Kafka's `PartitionRegistration`), and the checks a change must pass.

use serde::{Deserialize, Serialize};

/// Where a partition lives and who leads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partition {
    /// Broker ids holding a copy, the preferred leader first.
    pub replicas: Vec<i32>,
    /// The replicas caught up with the leader; the leader is one of them.
    pub isr: Vec<i32>,
    /// `None` while no replica may lead (Kafka's leader -1).
    pub leader: Option<i32>,
    /// Raised when the leader changes; clients fence stale leaders with it.
    pub leader_epoch: i32,
    /// Raised by every change to the partition.
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment (KIP-455), a subset of `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding: Vec<i32>,
    /// Replicas being removed by a reassignment, a subset of `replicas`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing: Vec<i32>,
}

impl Partition {
    /// A new partition on `replicas`: the first one leads, and it alone is
    /// in sync, as nothing has been replicated yet.
    pub fn created(replicas: Vec<i32>) -> Partition {
        let leader = replicas.first().copied();
        Partition {
            isr: leader.into_iter().collect(),
            replicas,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// Why this partition state cannot be, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        check_replicas(&self.replicas)?;
        check_subset("in-sync replicas", &self.isr, &self.replicas)?;
        check_subset("adding replicas", &self.adding, &self.replicas)?;
        check_subset("removing replicas", &self.removing, &self.replicas)?;
        if let Some(leader) = self.leader.filter(|leader| !self.isr.contains(leader)) {
            return Err(format!("leader {leader} is not in sync"));
        }
        if self.leader_epoch < 0 || self.partition_epoch < 0 {
            return Err("epochs are never negative".to_string());
        }
        Ok(())
    }

    /// The state after a `PartitionChanged`, or why it does not follow
    /// from this one.
    pub fn changed(&self, change: PartitionChange<'_>) -> Result<Partition, String> {
        let leader_moved = change.leader != self.leader;
        if change.leader_epoch < self.leader_epoch
            || (leader_moved && change.leader_epoch == self.leader_epoch)
        {
            return Err(format!(
                "leader epoch {} does not follow {}{}",
                change.leader_epoch,
                self.leader_epoch,
                if leader_moved {
                    " for a new leader"
                } else {
                    ""
                }
            ));
        }
        let next = Partition {
            replicas: change.replicas.unwrap_or(&self.replicas).to_vec(),
            isr: change.isr.to_vec(),
            leader: change.leader,
            leader_epoch: change.leader_epoch,
            partition_epoch: self.partition_epoch.saturating_add(1),
            adding: change.adding.unwrap_or(&self.adding).to_vec(),
            removing: change.removing.unwrap_or(&self.removing).to_vec(),
        };
        next.check()?;
        Ok(next)
    }
}

/// The fields of a `PartitionChanged` record; `None` leaves a list as it is.
#[derive(Debug, Clone, Copy)]
pub struct PartitionChange<'a> {
    pub leader: Option<i32>,
    pub leader_epoch: i32,
    pub isr: &'a [i32],
    pub replicas: Option<&'a [i32]>,
    pub adding: Option<&'a [i32]>,
    pub removing: Option<&'a [i32]>,
}

/// A replica list names at least one broker, each once, by a valid id.
pub fn check_replicas(replicas: &[i32]) -> Result<(), String> {
    if replicas.is_empty() {
        return Err("a partition needs at least one replica".to_string());
    }
    check_ids("replicas", replicas)
}

fn check_subset(what: &str, ids: &[i32], replicas: &[i32]) -> Result<(), String> {
    check_ids(what, ids)?;
    match ids.iter().find(|id| !replicas.contains(id)) {
        Some(id) => Err(format!("{what} name {id}, which is not a replica")),
        None => Ok(()),
    }
}

fn check_ids(what: &str, ids: &[i32]) -> Result<(), String> {
    for (index, id) in ids.iter().enumerate() {
        if *id < 0 {
            return Err(format!(
                "{what} name broker {id}; broker ids are never negative"
            ));
        }
        if ids[..index].contains(id) {
            return Err(format!("{what} name broker {id} twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(leader: Option<i32>, leader_epoch: i32, isr: &[i32]) -> PartitionChange<'_> {
        PartitionChange {
            leader,
            leader_epoch,
            isr,
            replicas: None,
            adding: None,
            removing: None,
        }
    }

    #[test]
    fn a_new_partition_is_led_by_its_first_replica() {
        let partition = Partition::created(vec![2, 1, 3]);
        assert_eq!(partition.leader, Some(2));
        assert_eq!(partition.isr, vec![2]);
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 0));
        assert!(partition.check().is_ok());
        assert!(Partition::created(vec![]).check().is_err());
        assert!(Partition::created(vec![1, 1]).check().is_err());
        assert!(Partition::created(vec![-1]).check().is_err());
    }

    #[test]
    fn changes_keep_leaders_in_sync_and_epochs_rising() {
        let partition = Partition::created(vec![1, 2, 3]);
        let grown = partition.changed(change(Some(1), 0, &[1, 2])).unwrap();
        assert_eq!((grown.leader_epoch, grown.partition_epoch), (0, 1));
        let moved = grown.changed(change(Some(2), 1, &[2])).unwrap();
        assert_eq!(moved.leader, Some(2));
        // A new leader needs a new epoch; epochs never go back.
        assert!(grown.changed(change(Some(2), 0, &[2])).is_err());
        assert!(moved.changed(change(Some(2), 0, &[2])).is_err());
        // The leader must be in sync, and the in-sync replicas replicas.
        assert!(grown.changed(change(Some(3), 1, &[1, 2])).is_err());
        assert!(grown.changed(change(Some(1), 1, &[1, 4])).is_err());
        let leaderless = moved.changed(change(None, 2, &[])).unwrap();
        assert_eq!(leaderless.leader, None);
        // New replicas: the in-sync ones must be among them.
        let reassign = PartitionChange {
            replicas: Some(&[2, 4]),
            adding: Some(&[4]),
            ..change(Some(2), 1, &[2])
        };
        let reassigned = moved.changed(reassign).unwrap();
        assert_eq!(reassigned.replicas, vec![2, 4]);
        assert_eq!(reassigned.adding, vec![4]);
        let bad = PartitionChange {
            replicas: Some(&[3, 4]),
            ..change(Some(2), 1, &[2])
        };
        assert!(moved.changed(bad).is_err());
    }
}
