//! `rill cluster info`.

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
        Ok(())
    })
}
