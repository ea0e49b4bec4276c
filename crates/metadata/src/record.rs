//! The metadata records. Each is a fact about the cluster; the state is what
//! they add up to. They are stored as JSON (docs/FORMAT.md, "Cluster
//! metadata"), so a record type can gain optional fields without a migration.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic's id: 16 random bytes, Kafka's topic UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TopicId(pub [u8; 16]);

impl TopicId {
    /// A fresh random id, never the all-zero id Kafka reserves for "none".
    pub fn random() -> TopicId {
        loop {
            let mut bytes = [0u8; 16];
            // The OS random source does not fail on Linux once booted; if it
            // ever does there is no safe way to invent topic ids.
            getrandom::fill(&mut bytes).expect("the OS random source failed");
            // Kafka ids are version-4 UUIDs.
            bytes[6] = (bytes[6] & 0x0f) | 0x40;
            bytes[8] = (bytes[8] & 0x3f) | 0x80;
            if bytes != [0u8; 16] {
                return TopicId(bytes);
            }
        }
    }
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl From<TopicId> for String {
    fn from(id: TopicId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for TopicId {
    type Error = String;

    fn try_from(text: String) -> Result<TopicId, String> {
        if text.len() != 32 || !text.is_ascii() {
            return Err(format!("topic id `{text}` is not 32 hex digits"));
        }
        let mut bytes = [0u8; 16];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16)
                .map_err(|_| format!("topic id `{text}` is not 32 hex digits"))?;
        }
        Ok(TopicId(bytes))
    }
}

/// One fact about the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MetadataRecord {
    /// The first record of a cluster's log.
    ClusterCreated {
        cluster_id: String,
    },
    TopicCreated {
        name: String,
        id: TopicId,
        partitions: i32,
        /// Topic-level overrides by Kafka name (`retention.ms`, ...).
        configs: BTreeMap<String, String>,
    },
    /// The topic now has `partitions` partitions (only ever grows).
    PartitionsCreated {
        id: TopicId,
        partitions: i32,
    },
    /// A topic config was set, or removed back to the default (`None`).
    TopicConfigChanged {
        id: TopicId,
        name: String,
        value: Option<String>,
    },
    TopicDeleted {
        id: TopicId,
    },
    /// Producer ids below `next` are handed out; the broker allocates them in
    /// blocks so that one record covers many InitProducerId requests.
    ProducerIdsAllocated {
        next: i64,
    },
}
