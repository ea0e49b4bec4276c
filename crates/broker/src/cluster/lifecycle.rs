//! The broker half of a node, as the controller sees it (KIP-631): it
//! registers with the active controller, heartbeats with how far it has
//! applied the metadata, and learns whether it is fenced. At a clean stop
//! it asks to shut down and waits, within a bound, until the controller has
//! moved the leadership of its partitions and lets it go (KIP-841).

use std::time::{Duration, Instant};

use rill_controller::logic::sessions::{Heartbeat, Registration, Wants};
use rill_controller::wire::{BrokerError, BrokerStatus};
use rill_metadata::{Listener, Uuid};
use rill_protocol::error_code;
use tokio::sync::watch;

use super::Cluster;

/// Pause before asking again when the controller did not answer, or is
/// moving to another node.
const RETRY: Duration = Duration::from_millis(200);
/// Longest wait at a clean stop for the controller to release the broker,
/// and how often it is asked meanwhile.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

impl Cluster {
    /// Registers and heartbeats until `stop`, then shuts down cleanly.
    /// `host` and `port` are what clients are told.
    pub async fn run_broker(&self, host: String, port: u16, mut stop: watch::Receiver<bool>) {
        let registration = Registration {
            id: self.config.node_id,
            cluster_id: self.cluster_id.clone(),
            incarnation: Uuid::random(),
            listeners: vec![Listener {
                name: "PLAINTEXT".to_string(),
                host,
                port,
                security_protocol: 0,
            }],
            rack: None,
        };
        let interval = Duration::from_millis(self.config.broker_heartbeat_interval_ms);
        'register: loop {
            let epoch = tokio::select! {
                epoch = self.register_until_accepted(&registration) => epoch,
                _ = stop.wait_for(|stop| *stop) => return,
            };
            loop {
                let stopping = *stop.borrow();
                match self.heartbeat(epoch, stopping).await {
                    Ok(status) => {
                        self.fenced.send_replace(status.is_fenced);
                        if stopping {
                            return self.shut_down(epoch, status).await;
                        }
                        // While fenced, ask again soon: unfencing waits only
                        // for this broker to catch up.
                        let wait = if status.is_fenced { RETRY } else { interval };
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = stop.wait_for(|stop| *stop) => {}
                        }
                    }
                    Err(error) if error.code == error_code::STALE_BROKER_EPOCH => {
                        tracing::warn!(%error, "the controller forgot this broker: registering again");
                        self.fenced.send_replace(true);
                        continue 'register;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "broker heartbeat not answered");
                        if stopping {
                            return;
                        }
                        tokio::time::sleep(RETRY).await;
                    }
                }
            }
        }
    }

    /// Waits until the controller has unfenced this broker.
    pub async fn wait_unfenced(&self) {
        let mut fenced = self.fenced.subscribe();
        let _ = fenced.wait_for(|fenced| !*fenced).await;
    }

    async fn register_until_accepted(&self, registration: &Registration) -> i64 {
        loop {
            match self.quorum.register(registration.clone()).await {
                Ok(epoch) => return epoch,
                Err(error) => {
                    tracing::debug!(%error, "broker registration not accepted yet");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    async fn heartbeat(&self, epoch: i64, stopping: bool) -> Result<BrokerStatus, BrokerError> {
        // The offset heartbeated is what this node has applied: the
        // controller unfences it once that reaches its registration.
        let applied = self.quorum.node.applied_index();
        let heartbeat = Heartbeat {
            broker_id: self.config.node_id,
            broker_epoch: epoch,
            current_metadata_offset: i64::try_from(applied).unwrap_or(i64::MAX),
            wants: Wants {
                fence: false,
                shutdown: stopping,
            },
        };
        self.quorum.heartbeat(heartbeat).await
    }

    /// Heartbeats asking to stop until the controller says the broker may
    /// (it leads nothing any more), or the wait runs out.
    async fn shut_down(&self, epoch: i64, mut status: BrokerStatus) {
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        while !status.should_shut_down && Instant::now() < deadline {
            tokio::time::sleep(SHUTDOWN_POLL).await;
            match self.heartbeat(epoch, true).await {
                Ok(next) => status = next,
                Err(_) => break,
            }
        }
        self.fenced.send_replace(true);
        tracing::info!(
            released = status.should_shut_down,
            "broker stopped heartbeating"
        );
    }
}
