//! The settings that make a node part of a cluster: its roles, its
//! controller listener and the controller quorum (KRaft's
//! `process.roles`, `controller.listener.names` and
//! `controller.quorum.voters`).

use std::collections::BTreeMap;

use super::{BrokerConfig, ConfigError};

/// What a node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub broker: bool,
    pub controller: bool,
}

impl BrokerConfig {
    /// `roles` read: `broker,controller` (either order), `broker` or
    /// `controller`.
    pub fn roles(&self) -> Result<Roles, ConfigError> {
        let mut roles = Roles {
            broker: false,
            controller: false,
        };
        for role in self.roles.split(',').map(str::trim) {
            let seen = match role {
                "broker" => std::mem::replace(&mut roles.broker, true),
                "controller" => std::mem::replace(&mut roles.controller, true),
                other => {
                    return Err(setting(
                        "roles",
                        format!("`{other}` is not a role: use broker, controller or both"),
                    ));
                }
            };
            if seen {
                return Err(setting("roles", format!("`{role}` is named twice")));
            }
        }
        Ok(roles)
    }

    /// The controller quorum's voters by id with their controller
    /// addresses; a quorum of this node alone (no address) when
    /// `controller_quorum` is empty.
    pub fn voters(&self) -> Result<BTreeMap<u64, String>, ConfigError> {
        let quorum = self.controller_quorum.trim();
        if quorum.is_empty() {
            return Ok(BTreeMap::from([(self.node_id as u64, String::new())]));
        }
        let mut voters = BTreeMap::new();
        for entry in quorum.split(',').map(str::trim) {
            let bad = |why: &str| {
                setting(
                    "controller_quorum",
                    format!("`{entry}` {why}; write each voter as ID@HOST:PORT, comma-separated"),
                )
            };
            let (id, address) = entry.split_once('@').ok_or_else(|| bad("has no `@`"))?;
            let id: u64 = id
                .parse()
                .ok()
                .filter(|id| *id <= i32::MAX as u64)
                .ok_or_else(|| bad("does not start with a node id"))?;
            let port = address
                .rsplit_once(':')
                .map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(port)) if port > 0) {
                return Err(bad("has no HOST:PORT"));
            }
            if voters.insert(id, address.to_string()).is_some() {
                return Err(bad("repeats a node id"));
            }
        }
        if ![1, 3, 5].contains(&voters.len()) {
            return Err(setting(
                "controller_quorum",
                format!(
                    "has {} voters; a quorum has 1, 3 or 5 (an even count survives no more \
                     failures than one fewer, and more than 5 slows every change)",
                    voters.len()
                ),
            ));
        }
        Ok(voters)
    }

    /// Each voter's controller listener as id, host and port (none for a
    /// quorum of this node alone, which has no listener).
    pub fn voter_endpoints(&self) -> Vec<(i32, String, u16)> {
        let voters = self.voters().unwrap_or_default();
        voters
            .into_iter()
            .filter_map(|(id, address)| {
                let (host, port) = address.rsplit_once(':')?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                Some((id as i32, host.to_string(), port.parse().ok()?))
            })
            .collect()
    }

    /// The address the controller listener binds, if this node has one: the
    /// setting, or else this node's entry in the quorum.
    pub fn controller_address(&self) -> Result<Option<String>, ConfigError> {
        if let Some(address) = &self.controller_listen {
            return Ok(Some(address.clone()));
        }
        let voters = self.voters()?;
        Ok(voters
            .get(&(self.node_id as u64))
            .filter(|address| !address.is_empty())
            .cloned())
    }

    pub(super) fn validate_quorum(&self) -> Result<(), ConfigError> {
        let roles = self.roles()?;
        let voters = self.voters()?;
        let me = self.node_id as u64;
        if !roles.broker || !roles.controller {
            return Err(setting(
                "roles",
                "only `broker,controller` (both in one process) is supported yet".to_string(),
            ));
        }
        if roles.controller && !voters.contains_key(&me) {
            return Err(setting(
                "controller_quorum",
                format!("does not name this node ({me}), which has the controller role"),
            ));
        }
        if voters.len() > 1 && self.controller_address()?.is_none() {
            return Err(setting(
                "controller_listen",
                "is needed: the quorum's other voters must reach this one".to_string(),
            ));
        }
        Ok(())
    }
}

fn setting(key: &str, message: String) -> ConfigError {
    ConfigError::Setting {
        key: key.to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(node_id: i32, quorum: &str) -> BrokerConfig {
        BrokerConfig {
            node_id,
            controller_quorum: quorum.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn a_quorum_of_three_reads_and_names_this_nodes_listener() {
        let config = config(2, "1@127.0.0.1:9093, 2@127.0.0.1:9193,3@[::1]:9293");
        config.validate_quorum().unwrap();
        let voters = config.voters().unwrap();
        assert_eq!(voters.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(voters[&3], "[::1]:9293");
        assert_eq!(
            config.controller_address().unwrap().as_deref(),
            Some("127.0.0.1:9193")
        );
    }

    #[test]
    fn no_quorum_is_this_node_alone() {
        let config = config(4, "");
        config.validate_quorum().unwrap();
        assert_eq!(
            config.voters().unwrap(),
            BTreeMap::from([(4, String::new())])
        );
        assert_eq!(config.controller_address().unwrap(), None);
    }

    #[test]
    fn bad_quorums_are_refused_with_the_key() {
        for (node, quorum, says) in [
            (1, "1@a:1,2@b:2", "1, 3 or 5"),
            (1, "1@a:1,1@b:2,3@c:3", "repeats"),
            (1, "1:a:1", "no `@`"),
            (1, "x@a:1", "node id"),
            (1, "1@a", "HOST:PORT"),
            (4, "1@a:1,2@b:2,3@c:3", "does not name this node"),
        ] {
            let error = config(node, quorum)
                .validate_quorum()
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("controller_quorum") && error.contains(says),
                "{error}"
            );
        }
        let mut roles = config(1, "");
        roles.roles = "broker,broker".to_string();
        assert!(
            roles
                .validate_quorum()
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        roles.roles = "leader".to_string();
        assert!(
            roles
                .validate_quorum()
                .unwrap_err()
                .to_string()
                .contains("not a role")
        );
    }
}
