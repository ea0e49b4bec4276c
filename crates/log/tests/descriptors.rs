//! Open descriptors stay bounded however many partitions a data directory
//! holds: idle active segments close their files and reopen on use. Its
//! own test binary, because the bound is read once per
//! process from the open-file limit, which this test lowers first.

mod common;

use common::{batch, read_all};
use rill_log::{LogConfig, LogManager, Offset};

/// The limit; the log store may keep a quarter of it for idle
/// active segments and a quarter for closed ones.
const NOFILE: u64 = 256;
/// Far more partitions than descriptors.
const PARTITIONS: i32 = 400;

fn open_log_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter(|target| target.extension().is_some_and(|e| e == "log"))
        .count()
}

#[test]
fn more_partitions_than_descriptors_open_use_and_reopen() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(NOFILE),
            maximum: Some(NOFILE),
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    for partition in 0..PARTITIONS {
        let log = manager
            .get_or_create("many", partition, LogConfig::default())
            .unwrap();
        log.append(&batch(2, 10, i64::from(partition)), 0, 0)
            .unwrap();
    }
    // At most a quarter of the limit stays open (the check runs after every
    // eighth of it opened), and every log still takes appends and reads.
    assert!(
        open_log_files() <= (NOFILE / 4) as usize,
        "{}",
        open_log_files()
    );
    for partition in 0..PARTITIONS {
        let log = manager.get("many", partition).unwrap();
        log.append(&batch(1, 10, 1), 0, 0).unwrap();
        assert_eq!(log.log_end_offset(), Offset(3));
        assert_eq!(read_all(&log, Offset(0)).len(), 2);
    }
    assert!(
        open_log_files() <= (NOFILE / 4) as usize,
        "{}",
        open_log_files()
    );
    manager.shutdown().unwrap();
    drop(manager);

    // A restart opens every partition again, within the same bound, and
    // reads reopen the files they need, closing others as they go.
    let manager = LogManager::open(dir.path(), LogConfig::default()).unwrap();
    for partition in 0..PARTITIONS {
        let log = manager
            .get_or_create("many", partition, LogConfig::default())
            .unwrap();
        assert_eq!(log.log_end_offset(), Offset(3));
    }
    assert!(
        open_log_files() <= (NOFILE / 4) as usize,
        "{}",
        open_log_files()
    );
    for partition in 0..PARTITIONS {
        let log = manager.get("many", partition).unwrap();
        assert_eq!(read_all(&log, Offset(0)).len(), 2, "partition {partition}");
    }
}
