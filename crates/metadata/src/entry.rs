//! How a group of metadata records is framed on disk (docs/FORMAT.md,
//! "Cluster metadata"): a 4-byte big-endian payload length, a 4-byte CRC32C
//! of the payload, and the payload, a JSON array. And how a bad entry is
//! told apart: a torn tail that a crash left, or damage to entries that were
//! acknowledged.

/// An entry's payload limit. Metadata groups are small (a CreateTopics of a
/// few topics); the limit keeps a damaged length field from asking for
/// gigabytes at replay.
pub const ENTRY_PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;

const ENTRY_HEADER_BYTES: usize = 8;

/// Bytes the search for a valid entry after a bad one may checksum in all.
/// A real log's entries each cost one CRC; bytes crafted to look like many
/// large entries could otherwise cost a CRC of up to 4 MiB per byte.
const SCAN_CRC_BYTES_MAX: usize = 1 << 30;

/// One whole, CRC-valid entry.
pub struct Entry<'a> {
    pub payload: &'a [u8],
    /// Header plus payload.
    pub len: usize,
}

/// What the bytes at a position of a log hold.
pub enum Read<'a> {
    Entry(Entry<'a>),
    /// A bad entry with nothing valid after it: a group whose write did not
    /// finish, never acknowledged. Says why it is bad.
    TornTail(String),
    /// A bad entry before valid ones (or before bytes too costly to check):
    /// acknowledged metadata is damaged. Says why.
    Damaged(String),
}

/// Frames a payload (which the caller keeps within
/// [`ENTRY_PAYLOAD_BYTES_MAX`]).
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(ENTRY_HEADER_BYTES + payload.len());
    entry.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    entry.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    entry.extend_from_slice(payload);
    entry
}

/// Reads the entry at `position` of a log's bytes.
pub fn read_at(bytes: &[u8], position: usize) -> Read<'_> {
    let reason = match parse(&bytes[position..]) {
        Ok(entry) => return Read::Entry(entry),
        Err(reason) => reason,
    };
    match next_valid_entry(bytes, position + 1) {
        After::Entry(next) => Read::Damaged(format!(
            "{reason}, and a valid entry follows at byte {next}"
        )),
        After::Unchecked(at) => Read::Damaged(format!(
            "{reason}, and the bytes from {at} on could not all be checked for valid entries"
        )),
        After::Nothing => Read::TornTail(reason),
    }
}

fn parse(bytes: &[u8]) -> Result<Entry<'_>, String> {
    let Some(header) = bytes.get(..ENTRY_HEADER_BYTES) else {
        return Err(format!(
            "{} bytes left, less than an entry header",
            bytes.len()
        ));
    };
    let payload_len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if payload_len > ENTRY_PAYLOAD_BYTES_MAX {
        return Err(format!("entry claims {payload_len} bytes"));
    }
    // The shortest payload is `[]`. This also keeps a run of zero bytes (a
    // file extended by a crash before its data landed) from reading as
    // empty entries whose CRC, of nothing, is zero.
    if payload_len < 2 {
        return Err(format!("entry claims {payload_len} bytes, less than `[]`"));
    }
    let Some(payload) = bytes.get(ENTRY_HEADER_BYTES..ENTRY_HEADER_BYTES + payload_len) else {
        return Err(format!(
            "entry claims {payload_len} bytes but only {} follow",
            bytes.len() - ENTRY_HEADER_BYTES
        ));
    };
    if crc32c::crc32c(payload) != crc {
        return Err("entry fails its CRC".to_string());
    }
    Ok(Entry {
        payload,
        len: ENTRY_HEADER_BYTES + payload_len,
    })
}

/// What follows a bad entry.
enum After {
    /// A whole, CRC-valid entry starts at this byte: the bad one is damage.
    Entry(usize),
    /// Nothing valid: the bad entry is a torn tail.
    Nothing,
    /// The scan gave up at this byte (see [`SCAN_CRC_BYTES_MAX`]).
    Unchecked(usize),
}

/// Looks for a whole, CRC-valid entry at or after `from`. Only positions
/// whose payload would start with `[` are tried, so the scan costs a CRC per
/// JSON array, not per byte.
fn next_valid_entry(bytes: &[u8], from: usize) -> After {
    let mut budget = SCAN_CRC_BYTES_MAX;
    for position in from..bytes.len() {
        if bytes.get(position + ENTRY_HEADER_BYTES) != Some(&b'[') {
            continue;
        }
        let claimed = bytes
            .get(position..position + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
        // Lengths `parse` refuses before its CRC cost nothing.
        let fits = position + ENTRY_HEADER_BYTES + claimed <= bytes.len();
        if claimed > ENTRY_PAYLOAD_BYTES_MAX || !fits {
            continue;
        }
        if claimed > budget {
            return After::Unchecked(position);
        }
        budget -= claimed;
        if parse(&bytes[position..]).is_ok() {
            return After::Entry(position);
        }
    }
    After::Nothing
}
