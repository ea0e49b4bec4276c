//! `/metrics` of the controller quorum as this node sees it: whether it is
//! the active controller, the leader and term, how far the metadata log is
//! committed and applied here, and (on the leader) each voter's lag.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use rill_controller::describe::QuorumInfo;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VoterLabels {
    pub voter: i64,
}

#[derive(Default)]
pub struct QuorumGauges {
    active: Gauge,
    leader: Gauge,
    term: Gauge,
    committed: Gauge,
    applied: Gauge,
    voter_lag: Family<VoterLabels, Gauge>,
}

impl QuorumGauges {
    pub fn register(registry: &mut Registry) -> QuorumGauges {
        let gauges = QuorumGauges::default();
        let entries: [(&str, &str, &Gauge); 5] = [
            (
                "controller_active",
                "1 while this node is the active controller",
                &gauges.active,
            ),
            (
                "controller_leader",
                "The node leading the controller quorum; -1 while none does",
                &gauges.leader,
            ),
            (
                "controller_term",
                "The controller quorum's term (KRaft's leader epoch)",
                &gauges.term,
            ),
            (
                "controller_committed_index",
                "The last metadata log entry known committed",
                &gauges.committed,
            ),
            (
                "controller_applied_index",
                "The last metadata log entry this node applied",
                &gauges.applied,
            ),
        ];
        for (name, help, gauge) in entries {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "controller_voter_lag",
            "Entries a voter is behind the leader's log (reported by the active controller only)",
            gauges.voter_lag.clone(),
        );
        gauges
    }

    /// Sets the gauges from the quorum as this node sees it.
    pub fn update(&self, info: &QuorumInfo) {
        let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let leading = info.leader == Some(info.node);
        self.active.set(i64::from(leading));
        self.leader.set(info.leader.map_or(-1, signed));
        self.term.set(signed(info.term));
        self.committed.set(info.committed.map_or(-1, signed));
        self.applied.set(info.applied.map_or(-1, signed));
        self.voter_lag.clear();
        if !leading {
            return;
        }
        let last = info.last_log.unwrap_or(0);
        for voter in &info.voters {
            if let Some(matched) = voter.matched {
                let labels = VoterLabels {
                    voter: signed(voter.id),
                };
                self.voter_lag
                    .get_or_create(&labels)
                    .set(signed(last.saturating_sub(matched)));
            }
        }
    }
}
