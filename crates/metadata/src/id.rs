//! The 16-byte ids of the metadata: Kafka's UUIDs, written as 32 hex digits
//! in the records (docs/FORMAT.md, "Cluster metadata").

use std::fmt;

use serde::{Deserialize, Serialize};

/// A topic's id: Kafka's topic UUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct TopicId(pub [u8; 16]);

/// Any other id of the metadata: a broker process's incarnation, a
/// controller's metadata directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Uuid(pub [u8; 16]);

impl TopicId {
    /// A fresh random id, never the all-zero id Kafka reserves for "none".
    pub fn random() -> TopicId {
        TopicId(random_v4())
    }
}

impl Uuid {
    /// A fresh random id, never the all-zero id Kafka reserves for "none".
    pub fn random() -> Uuid {
        Uuid(random_v4())
    }
}

fn random_v4() -> [u8; 16] {
    loop {
        let mut bytes = [0u8; 16];
        // The OS random source does not fail on Linux once booted; if it
        // ever does there is no safe way to invent ids.
        getrandom::fill(&mut bytes).expect("the OS random source failed");
        // Kafka ids are version-4 UUIDs.
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        if bytes != [0u8; 16] {
            return bytes;
        }
    }
}

fn write_hex(bytes: &[u8; 16], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for byte in bytes {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

fn parse_hex(text: &str, what: &str) -> Result<[u8; 16], String> {
    let refuse = || format!("{what} `{text}` is not 32 hex digits");
    if text.len() != 32 || !text.is_ascii() {
        return Err(refuse());
    }
    let mut bytes = [0u8; 16];
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[index * 2..index * 2 + 2], 16).map_err(|_| refuse())?;
    }
    Ok(bytes)
}

impl fmt::Display for TopicId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(&self.0, f)
    }
}

impl From<TopicId> for String {
    fn from(id: TopicId) -> String {
        id.to_string()
    }
}

impl From<Uuid> for String {
    fn from(id: Uuid) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for TopicId {
    type Error = String;

    fn try_from(text: String) -> Result<TopicId, String> {
        parse_hex(&text, "topic id").map(TopicId)
    }
}

impl TryFrom<String> for Uuid {
    type Error = String;

    fn try_from(text: String) -> Result<Uuid, String> {
        parse_hex(&text, "id").map(Uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_as_text() {
        let id = TopicId::random();
        let text: String = id.into();
        assert_eq!(TopicId::try_from(text).unwrap(), id);
        assert!(TopicId::try_from("xyz".to_string()).is_err());
        assert!(TopicId::try_from("é".repeat(16)).is_err());
        let uuid = Uuid::random();
        assert_eq!(Uuid::try_from(String::from(uuid)).unwrap(), uuid);
        assert_ne!(uuid.0, [0; 16]);
        assert!(Uuid::try_from("0".repeat(31)).is_err());
    }
}
