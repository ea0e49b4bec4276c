//! `rill cluster info`: the cluster's id, its brokers, and its controller
//! quorum (who leads, how far each voter has replicated, which voters'
//! brokers are fenced).

use std::process::ExitCode;

use crate::tools::{Brokers, Failure, run};
use crate::topic::connect;

#[derive(clap::Subcommand)]
pub enum ClusterCommand {
    /// Show the cluster id, the controller, the brokers and the topic count
    Info {
        #[command(flatten)]
        brokers: Brokers,
    },
}

pub fn main(command: ClusterCommand) -> ExitCode {
    let ClusterCommand::Info { brokers } = command;
    run(async move {
        let admin = connect(&brokers).await?;
        let metadata = admin
            .client()
            .refresh_metadata(None)
            .await
            .map_err(|e| Failure::from_client(e, &brokers))?;
        println!(
            "CLUSTER     {}",
            metadata.cluster_id.as_deref().unwrap_or("-")
        );
        println!("CONTROLLER  {}", metadata.controller_id);
        println!("TOPICS      {}", metadata.topics.len());
        println!();
        println!("ID  ADDRESS  RACK");
        for broker in metadata.brokers.values() {
            let controller = if broker.node_id == metadata.controller_id {
                " (controller)"
            } else {
                ""
            };
            println!(
                "{}  {}  {}{controller}",
                broker.node_id,
                broker.addr(),
                broker.rack.as_deref().unwrap_or("-")
            );
        }
        // A quorum of one has nothing more to say than its controller.
        let quorum = match admin.describe_quorum().await {
            Ok(quorum) => quorum,
            Err(error) => {
                eprintln!("rill: cannot describe the controller quorum: {error}");
                return Ok(());
            }
        };
        if quorum.voters.len() < 2 {
            return Ok(());
        }
        println!();
        println!(
            "QUORUM      leader {}, epoch {}, committed up to {}",
            quorum.leader_id,
            quorum.leader_epoch,
            quorum.high_watermark - 1
        );
        println!("VOTER  LAG  LAST CONTACT  BROKER");
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for voter in &quorum.voters {
            let lag = match voter.log_end_offset {
                -1 => "-".to_string(),
                end => (quorum.high_watermark - end).max(0).to_string(),
            };
            let contact = match voter.last_fetch_timestamp {
                -1 => "-".to_string(),
                at => format!("{} ms ago", (now_ms - at).max(0)),
            };
            let broker = if metadata.brokers.contains_key(&voter.id) {
                "unfenced"
            } else {
                "fenced"
            };
            println!("{:<5}  {lag:<3}  {contact:<12}  {broker}", voter.id);
        }
        Ok(())
    })
}
