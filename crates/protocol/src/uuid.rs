//! Kafka's 16-byte UUID (topic ids, directory ids).

use std::fmt;

/// A UUID as Kafka sends it: 16 bytes, all zero meaning "none".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub [u8; 16]);

impl Uuid {
    pub const ZERO: Uuid = Uuid([0; 16]);

    pub const fn from_bytes(bytes: [u8; 16]) -> Uuid {
        Uuid(bytes)
    }

    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

const BASE64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka prints UUIDs in URL-safe base64 without padding (22 characters).
impl fmt::Display for Uuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bits: u32 = 0;
        let mut bit_count = 0;
        for byte in self.0 {
            bits = (bits << 8) | u32::from(byte);
            bit_count += 8;
            while bit_count >= 6 {
                bit_count -= 6;
                let index = (bits >> bit_count) & 0x3f;
                write!(f, "{}", BASE64URL[index as usize] as char)?;
            }
        }
        if bit_count > 0 {
            let index = (bits << (6 - bit_count)) & 0x3f;
            write!(f, "{}", BASE64URL[index as usize] as char)?;
        }
        Ok(())
    }
}
