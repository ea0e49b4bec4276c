//! `rill group list|describe|reset-offsets|delete`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use rill_client::{Offset, TopicPartition};

use crate::consume::parse_offset;
use crate::tools::{Brokers, Failure, exit, run};
use crate::topic::connect;

#[derive(clap::Subcommand)]
pub enum GroupCommand {
    /// List consumer groups and their states
    List {
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Show a group's members and, per partition, committed offset, end
    /// offset and lag
    Describe {
        /// Group id
        group: String,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Move a group's committed offsets for a topic (the group must have
    /// no running members)
    ResetOffsets {
        /// Group id
        group: String,
        /// Topic whose offsets to move
        #[arg(short = 't', long)]
        topic: String,
        /// beginning, end, an OFFSET, or @TIMESTAMP_MS
        #[arg(long, value_parser = parse_offset)]
        to: Offset,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Delete groups and their committed offsets
    Delete {
        /// Group ids
        #[arg(required = true)]
        groups: Vec<String>,
        #[command(flatten)]
        brokers: Brokers,
    },
}

pub fn main(command: GroupCommand) -> ExitCode {
    run(async move {
        match command {
            GroupCommand::List { brokers } => {
                let admin = connect(&brokers).await?;
                let groups = admin
                    .list_groups()
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                let width = groups
                    .iter()
                    .map(|g| g.group_id.len())
                    .max()
                    .unwrap_or(5)
                    .max(5);
                println!("{:width$}  STATE", "GROUP");
                for group in groups {
                    println!("{:width$}  {}", group.group_id, group.state);
                }
                Ok(())
            }
            GroupCommand::Describe { group, brokers } => {
                let admin = connect(&brokers).await?;
                let failure = |e| Failure::from_client(e, &brokers);
                let description = admin.describe_group(&group).await.map_err(failure)?;
                let committed = admin
                    .group_offsets(&group)
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                if description.members.is_empty()
                    && committed.is_empty()
                    && matches!(description.state.as_str(), "Dead" | "")
                {
                    return Err(Failure {
                        message: format!("group '{group}' does not exist"),
                        code: exit::NOT_FOUND,
                    });
                }
                println!("GROUP     {group}");
                println!("STATE     {}", description.state);
                println!("ASSIGNOR  {}", description.protocol);
                println!("MEMBERS   {}", description.members.len());
                let mut owner: BTreeMap<TopicPartition, String> = BTreeMap::new();
                for member in &description.members {
                    for tp in &member.assignment {
                        owner.insert(
                            tp.clone(),
                            format!("{} ({})", member.member_id, member.client_host),
                        );
                    }
                }
                let mut rows: BTreeMap<TopicPartition, Option<i64>> =
                    owner.keys().map(|tp| (tp.clone(), None)).collect();
                for (tp, offset) in committed {
                    rows.insert(tp, Some(offset));
                }
                let mut ends: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
                for tp in rows.keys() {
                    if !ends.contains_key(&tp.topic) {
                        let topic_ends = admin
                            .list_offsets(&tp.topic, Offset::End)
                            .await
                            .unwrap_or_default();
                        ends.insert(tp.topic.clone(), topic_ends);
                    }
                }
                println!();
                println!("TOPIC  PARTITION  COMMITTED  END  LAG  MEMBER");
                for (tp, offset) in rows {
                    let end = ends
                        .get(&tp.topic)
                        .and_then(|e| e.get(&tp.partition))
                        .copied();
                    let show =
                        |value: Option<i64>| value.map_or("-".to_string(), |v| v.to_string());
                    let lag = match (offset, end) {
                        (Some(offset), Some(end)) => Some((end - offset).max(0)),
                        (None, Some(end)) => Some(end),
                        _ => None,
                    };
                    println!(
                        "{}  {}  {}  {}  {}  {}",
                        tp.topic,
                        tp.partition,
                        show(offset),
                        show(end),
                        show(lag),
                        owner.get(&tp).map_or("-", String::as_str)
                    );
                }
                Ok(())
            }
            GroupCommand::ResetOffsets {
                group,
                topic,
                to,
                brokers,
            } => {
                let admin = connect(&brokers).await?;
                let offsets = admin
                    .reset_group_offsets(&group, &topic, to)
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                println!("TOPIC  PARTITION  NEW-OFFSET");
                for (partition, offset) in offsets {
                    println!("{topic}  {partition}  {offset}");
                }
                Ok(())
            }
            GroupCommand::Delete { groups, brokers } => {
                let admin = connect(&brokers).await?;
                admin
                    .delete_groups(&groups)
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                for group in groups {
                    println!("deleted group '{group}'");
                }
                Ok(())
            }
        }
    })
}
