//! Any bytes as the files of a partition directory after a crash: up to two
//! segments (`.log`, `.index`, `.timeindex`) and the partition's
//! checkpoints. Opening the log recovers it; then it is read end to end,
//! scrubbed, appended to and closed. None of that may panic, hang or
//! allocate without bound, whatever the files hold: damage is found by CRC
//! and cut or reported, never trusted.
//!
//! Input: one flags byte (bit 0: the clean-shutdown marker is present, so
//! recovery trusts the files; bit 1: a second segment), a 4-byte base offset
//! for the second segment, then the files' contents, each as a 2-byte
//! big-endian length and that many bytes, in `FILES` order (missing ones are
//! empty). Seeds: fuzz/seeds/log/.

#![no_main]

use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use rill_log::{Log, LogConfig, Offset};

/// The file names each piece of the input becomes, in order; `{1}` is the
/// second segment's 20-digit base offset.
const FILES: &[&str] = &[
    "00000000000000000000.log",
    "00000000000000000000.index",
    "00000000000000000000.timeindex",
    "{1}.log",
    "{1}.index",
    "{1}.timeindex",
    "recovery-point-offset-checkpoint",
    "log-start-offset-checkpoint",
    "leader-epoch-checkpoint",
    "cleaner-offset-checkpoint",
];

fn dir() -> PathBuf {
    std::env::temp_dir().join(format!("rill-fuzz-log-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let dir = dir();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the fuzz directory can be made");
    let (flags, mut rest) = match data.split_first() {
        Some((flags, rest)) => (*flags, rest),
        None => (0, data),
    };
    let second_base = match rest.split_first_chunk::<4>() {
        Some((base, tail)) => {
            rest = tail;
            u32::from_be_bytes(*base)
        }
        None => 0,
    };
    for name in FILES {
        let Some((len, tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(u16::from_be_bytes(*len)).min(tail.len());
        let (contents, tail) = tail.split_at(len);
        rest = tail;
        if name.starts_with("{1}") && flags & 2 == 0 {
            continue;
        }
        let name = name.replace("{1}", &format!("{second_base:020}"));
        std::fs::write(dir.join(name), contents).expect("the fuzz files can be written");
    }
    if flags & 1 != 0 {
        std::fs::write(dir.join(".clean-shutdown"), b"").expect("the marker can be written");
    }
    exercise(&dir);
    let _ = std::fs::remove_dir_all(&dir);
});

fn exercise(dir: &std::path::Path) {
    let config = LogConfig {
        segment_bytes: 1 << 16,
        segment_index_bytes: 4096,
        ..Default::default()
    };
    let Ok(log) = Log::open(dir, config) else {
        return;
    };
    let end = log.log_end_offset();
    let mut next = Offset(0);
    // Each read returns at least one batch or ends; a read that makes no
    // progress ends the walk, and the bound caps the walk's length.
    for _ in 0..10_000 {
        match log.read(next, 1 << 16, end) {
            Ok(info) => match info.next_offset {
                Some(offset) if offset > next => next = offset,
                _ => break,
            },
            Err(_) => break,
        }
    }
    let _ = log.scrub(&mut |_| {});
    let mut batch =
        rill_records::builder::BatchBuilder::new(rill_records::batch::Compression::None);
    if batch.append(0, Some(b"k".to_vec().into()), Some(b"v".to_vec().into()), Vec::new()).is_ok()
        && let Ok(bytes) = batch.build()
    {
        let _ = log.append(&bytes, 0, 0);
    }
    let _ = log.close();
}
