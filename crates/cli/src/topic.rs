//! `rill topic create|list|describe|alter|delete`.

use std::process::ExitCode;

use rill_client::{AdminClient, NewTopic};

use crate::tools::{Brokers, Failure, key_value, run};

#[derive(clap::Subcommand)]
pub enum TopicCommand {
    /// Create a topic
    Create {
        /// Topic name
        name: String,
        /// Number of partitions
        #[arg(short = 'p', long, default_value_t = 1)]
        partitions: i32,
        /// Copies of each partition (-1: the broker's default)
        #[arg(short = 'r', long, default_value_t = -1)]
        replication_factor: i16,
        /// A topic config such as retention.ms=86400000 (repeatable)
        #[arg(short = 'c', long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// List topics with their partition and replica counts
    List {
        /// Also list internal topics such as __consumer_offsets
        #[arg(short = 'i', long)]
        internal: bool,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Show a topic's partitions, leaders, replicas and non-default configs
    Describe {
        /// Topic name
        name: String,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Change a topic's configs or grow its partition count
    Alter {
        /// Topic name
        name: String,
        /// Set a config, e.g. retention.ms=3600000 (repeatable)
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Reset a config to the broker's default (repeatable)
        #[arg(short = 'd', long = "delete", value_name = "KEY")]
        delete: Vec<String>,
        /// New total number of partitions (only grows)
        #[arg(short = 'p', long)]
        partitions: Option<i32>,
        #[command(flatten)]
        brokers: Brokers,
    },
    /// Delete topics and all their messages
    Delete {
        /// Topic names
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        brokers: Brokers,
    },
}

pub fn main(command: TopicCommand) -> ExitCode {
    run(async move {
        match command {
            TopicCommand::Create {
                name,
                partitions,
                replication_factor,
                configs,
                brokers,
            } => {
                if partitions < 1 {
                    return Err(Failure::usage("--partitions must be at least 1"));
                }
                let mut topic = NewTopic::new(&name, partitions);
                topic.replication_factor = replication_factor;
                for config in &configs {
                    let (key, value) = key_value(config)?;
                    topic = topic.config(&key, &value);
                }
                let admin = connect(&brokers).await?;
                admin.create_topics(vec![topic]).await.map_err(|error| {
                    if error.code() == Some(rill_client::code::TOPIC_ALREADY_EXISTS) {
                        Failure {
                            message: format!("topic '{name}' already exists"),
                            code: crate::tools::exit::EXISTS,
                        }
                    } else {
                        Failure::from_client(error, &brokers)
                    }
                })?;
                println!("created topic '{name}' with {partitions} partition(s)");
                Ok(())
            }
            TopicCommand::List { internal, brokers } => {
                let admin = connect(&brokers).await?;
                let topics = admin
                    .list_topics()
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                let width = topics
                    .iter()
                    .map(|t| t.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                println!("{:width$}  PARTITIONS  REPLICAS", "NAME");
                for topic in topics.iter().filter(|t| internal || !t.is_internal) {
                    let replicas = topic.partitions.first().map_or(0, |p| p.replicas.len());
                    println!(
                        "{:width$}  {:<10}  {}",
                        topic.name,
                        topic.partitions.len(),
                        replicas
                    );
                }
                Ok(())
            }
            TopicCommand::Describe { name, brokers } => {
                let admin = connect(&brokers).await?;
                let failure = |e| Failure::from_client(e, &brokers);
                let topic = admin.describe_topic(&name).await.map_err(failure)?;
                let configs = admin
                    .describe_configs(Some(&name), None)
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                println!("NAME        {}", topic.name);
                println!("PARTITIONS  {}", topic.partitions.len());
                println!(
                    "REPLICAS    {}",
                    topic.partitions.first().map_or(0, |p| p.replicas.len())
                );
                println!();
                println!("PARTITION  LEADER  EPOCH  REPLICAS  ISR");
                for p in &topic.partitions {
                    println!(
                        "{:<9}  {:<6}  {:<5}  {:<8}  {:?}",
                        p.partition,
                        p.leader,
                        p.leader_epoch,
                        format!("{:?}", p.replicas),
                        p.isr
                    );
                }
                let set: Vec<_> = configs.iter().filter(|c| !c.is_default).collect();
                if !set.is_empty() {
                    println!();
                    println!("CONFIGS");
                    for config in set {
                        let value = if config.is_sensitive {
                            "(sensitive)"
                        } else {
                            config.value.as_deref().unwrap_or("")
                        };
                        println!("{}={value}", config.name);
                    }
                }
                Ok(())
            }
            TopicCommand::Alter {
                name,
                set,
                delete,
                partitions,
                brokers,
            } => {
                if set.is_empty() && delete.is_empty() && partitions.is_none() {
                    return Err(Failure::usage(
                        "nothing to change: give --set KEY=VALUE, --delete KEY or --partitions N",
                    ));
                }
                let mut changes = Vec::new();
                for entry in &set {
                    let (key, value) = key_value(entry)?;
                    changes.push((key, Some(value)));
                }
                changes.extend(delete.into_iter().map(|key| (key, None)));
                let admin = connect(&brokers).await?;
                let failure = |e| Failure::from_client(e, &brokers);
                // Fail on an unknown topic with the usual sentence.
                admin.describe_topic(&name).await.map_err(failure)?;
                if !changes.is_empty() {
                    admin
                        .alter_topic_configs(&name, changes)
                        .await
                        .map_err(|e| Failure::from_client(e, &brokers))?;
                }
                if let Some(partitions) = partitions {
                    admin
                        .create_partitions(&name, partitions)
                        .await
                        .map_err(|e| Failure::from_client(e, &brokers))?;
                }
                println!("altered topic '{name}'");
                Ok(())
            }
            TopicCommand::Delete { names, brokers } => {
                let admin = connect(&brokers).await?;
                admin
                    .delete_topics(&names)
                    .await
                    .map_err(|e| Failure::from_client(e, &brokers))?;
                for name in names {
                    println!("deleted topic '{name}'");
                }
                Ok(())
            }
        }
    })
}

pub async fn connect(brokers: &Brokers) -> Result<AdminClient, Failure> {
    AdminClient::connect(brokers.client_config())
        .await
        .map_err(|e| Failure::from_client(e, brokers))
}
