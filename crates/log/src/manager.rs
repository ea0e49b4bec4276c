//! All partition logs of one data directory, and the background threads
//! that flush, checkpoint, apply retention, clean (compact) and scrub them.
//!
//! Thread-safety: `LogManager` is `Send + Sync` and cheap to clone (an
//! `Arc` inside). The map of open logs sits behind a mutex held only to look
//! up, insert or remove an entry; opening a log happens under it so two
//! callers never open the same directory twice.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cleaner::{CleanStats, CleanerConfig, OffsetMap};
use crate::dir_health::{DirHealth, DirState};
use crate::error::LogError;
use crate::log::Log;
use crate::segment::io_failure;
use crate::segments::active_segments_max;
use crate::types::LogConfig;

/// Kafka's limit on topic name length (a directory name must also hold
/// `-<partition>` and the `.<id>-delete` suffix within 255 bytes).
const TOPIC_NAME_BYTES_MAX: usize = 249;
const DELETE_SUFFIX: &str = "-delete";

/// How often the background threads wake, and how fast the scrub reads.
#[derive(Debug, Clone)]
pub struct BackgroundConfig {
    /// Granularity of `flush.ms`.
    pub flush_check_interval: Duration,
    /// How often retention runs (Kafka's `log.retention.check.interval.ms`
    /// is 5 minutes; a minute keeps disk use closer to the setting).
    pub retention_check_interval: Duration,
    /// How often checkpoints are written (Kafka's 60 s).
    pub checkpoint_interval: Duration,
    /// The scrub's read rate, low so it never competes with consumers.
    pub scrub_bytes_per_second: u64,
    /// Pause between two full scrub passes.
    pub scrub_pass_interval: Duration,
    /// The log cleaner (compaction of `cleanup.policy=compact` logs).
    pub cleaner: CleanerConfig,
}

impl Default for BackgroundConfig {
    fn default() -> BackgroundConfig {
        BackgroundConfig {
            flush_check_interval: Duration::from_millis(100),
            retention_check_interval: Duration::from_secs(60),
            checkpoint_interval: Duration::from_secs(60),
            scrub_bytes_per_second: 16 << 20,
            scrub_pass_interval: Duration::from_secs(3600),
            cleaner: CleanerConfig::default(),
        }
    }
}

struct Inner {
    data_dir: PathBuf,
    default_config: LogConfig,
    logs: Mutex<HashMap<(String, i32), Arc<Log>>>,
    health: Arc<DirHealth>,
    cleaner: CleanerTotals,
}

/// What the cleaner threads did since the process started, for metrics.
#[derive(Debug, Default)]
struct CleanerTotals {
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    cleans: AtomicU64,
    /// Wall-clock ms when the last clean finished, 0 before the first.
    last_clean_ms: AtomicI64,
    /// Logs a cleaner thread is working on, so threads pick different ones.
    busy: Mutex<HashSet<PathBuf>>,
}

impl CleanerTotals {
    fn busy_set(&self) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
        self.busy.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A snapshot of the cleaner's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanerMetrics {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub cleans: u64,
    /// Wall-clock ms of the last finished clean; `None` before the first.
    pub last_clean_ms: Option<i64>,
}

/// The logs of one data directory (`<data_dir>/<topic>-<partition>/`).
#[derive(Clone)]
pub struct LogManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for LogManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogManager")
            .field("data_dir", &self.inner.data_dir)
            .finish()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn check_name(topic: &str, partition: i32) -> Result<(), LogError> {
    let reason = if topic.is_empty() {
        Some("the topic name is empty")
    } else if topic.len() > TOPIC_NAME_BYTES_MAX {
        Some("the topic name is longer than 249 bytes")
    } else if topic == "." || topic == ".." {
        Some("the topic name is `.` or `..`")
    } else if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        Some("the topic name has characters other than ASCII letters, digits, `.`, `_` and `-`")
    } else if partition < 0 {
        Some("the partition is negative")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LogError::InvalidPartition {
            topic: topic.to_string(),
            partition,
            reason,
        }),
        None => Ok(()),
    }
}

/// Splits `<topic>-<partition>` at the last dash.
fn parse_dir_name(name: &str) -> Option<(String, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition: i32 = partition.parse().ok()?;
    check_name(topic, partition).ok()?;
    Some((topic.to_string(), partition))
}

impl LogManager {
    /// Opens a data directory without opening any log: logs open on first
    /// use, so startup stays fast however many partitions there are.
    /// Directories left `*-delete` by an interrupted delete are removed in
    /// the background.
    pub fn open(data_dir: &Path, default_config: LogConfig) -> Result<LogManager, LogError> {
        fs::create_dir_all(data_dir).map_err(io_failure("create directory", data_dir))?;
        let mut leftovers = Vec::new();
        for entry in fs::read_dir(data_dir).map_err(io_failure("list", data_dir))? {
            let entry = entry.map_err(io_failure("list", data_dir))?;
            if entry.file_name().to_string_lossy().ends_with(DELETE_SUFFIX) {
                leftovers.push(entry.path());
            }
        }
        if !leftovers.is_empty() {
            std::thread::spawn(move || leftovers.iter().for_each(|p| remove_dir(p)));
        }
        let manager = LogManager {
            inner: Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
                let weak = weak.clone();
                // A log that reopens its active segment's file calls this
                // (`Log::with_loaded`), so reads and appends to idle
                // partitions stay within the bound between ticks too.
                let release = move || {
                    if let Some(inner) = weak.upgrade() {
                        // The caller holds a log's lock, and `delete` holds
                        // the map's lock while it waits for a log's: only
                        // take the map's lock if it is free.
                        let logs = match inner.logs.try_lock() {
                            Ok(logs) => logs,
                            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                            Err(std::sync::TryLockError::WouldBlock) => return,
                        };
                        // At most the bound's worth of logs: nothing to
                        // close, and nothing worth copying the map for.
                        if logs.len() <= active_segments_max() {
                            return;
                        }
                        let copied = logs.values().cloned().collect();
                        drop(logs);
                        release_idle(copied);
                    }
                };
                Inner {
                    data_dir: data_dir.to_path_buf(),
                    default_config,
                    logs: Mutex::new(HashMap::new()),
                    health: DirHealth::with_release(data_dir, Box::new(release)),
                    cleaner: CleanerTotals::default(),
                }
            }),
        };
        // The group commit's syncer starts before any append, so its syncfs
        // descriptor sees every writeback error of the appends (`sync.rs`).
        manager.inner.health.syncer();
        Ok(manager)
    }

    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The group commit's (sync rounds, appends that waited for one) since
    /// the directory was opened: the ratio is how many appends a round served.
    pub fn sync_counts(&self) -> (u64, u64) {
        self.inner.health.sync_counts()
    }

    pub fn default_config(&self) -> &LogConfig {
        &self.inner.default_config
    }

    /// Whether the data directory takes appends, is full (appends refused
    /// until it has space again; reads, retention and DeleteRecords go on)
    /// or offline after a disk error. Asks the file system when full.
    pub fn dir_state(&self) -> DirState {
        self.inner.health.dir_state()
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, HashMap<(String, i32), Arc<Log>>> {
        self.inner.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `<data_dir>/<topic>-<partition>`, the directory of a partition's log.
    pub fn partition_dir(&self, topic: &str, partition: i32) -> PathBuf {
        self.inner.data_dir.join(format!("{topic}-{partition}"))
    }

    /// The partitions that have a directory, opened or not.
    pub fn list_partitions(&self) -> Result<Vec<(String, i32)>, LogError> {
        let dir = &self.inner.data_dir;
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_failure("list", dir))? {
            let entry = entry.map_err(io_failure("list", dir))?;
            if entry.path().is_dir()
                && let Some(tp) = entry.file_name().to_str().and_then(parse_dir_name)
            {
                found.push(tp);
            }
        }
        found.sort();
        Ok(found)
    }

    /// The open log of a partition, opening (recovering) or creating it.
    pub fn get_or_create(
        &self,
        topic: &str,
        partition: i32,
        config: LogConfig,
    ) -> Result<Arc<Log>, LogError> {
        check_name(topic, partition)?;
        let mut logs = self.logs();
        if let Some(log) = logs.get(&(topic.to_string(), partition)) {
            return Ok(log.clone());
        }
        let dir = self.partition_dir(topic, partition);
        let log = Arc::new(Log::open_with(&dir, config, self.inner.health.clone())?);
        logs.insert((topic.to_string(), partition), log.clone());
        drop(logs);
        // Opening a log opens its active segment: counted with the reopens,
        // since a start, or a client naming hundreds of new topics, opens
        // logs faster than the flusher's tick comes.
        self.inner.health.active_reopened();
        Ok(log)
    }

    /// Keeps the active segments with an open file within
    /// `active_segments_max`, closing the least recently used idle ones. Each holds a descriptor; a broker holding more
    /// partitions than the bound would otherwise run out of them, and could
    /// not restart, since a start opens every partition.
    pub fn release_idle_active_segments(&self) {
        release_idle(self.open_logs());
    }

    /// The log of a partition if it is open.
    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Log>> {
        self.logs().get(&(topic.to_string(), partition)).cloned()
    }

    /// Deletes a partition: its directory is renamed `*.<id>-delete` at once
    /// (so a restart does not bring it back) and removed in the background.
    pub fn delete(&self, topic: &str, partition: i32) -> Result<(), LogError> {
        check_name(topic, partition)?;
        if let Some(log) = self.logs().remove(&(topic.to_string(), partition)) {
            log.abandon();
        }
        let dir = self.partition_dir(topic, partition);
        if !dir.exists() {
            return Ok(());
        }
        let unique = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        // The topic is cut short, as Kafka does, so the name fits in 255 bytes.
        let suffix = format!("-{partition}.{unique:x}{DELETE_SUFFIX}");
        let topic_kept = topic
            .get(..topic.len().min(255 - suffix.len()))
            .unwrap_or(topic);
        let doomed = self.inner.data_dir.join(format!("{topic_kept}{suffix}"));
        fs::rename(&dir, &doomed).map_err(io_failure("rename", &dir))?;
        crate::checkpoint::sync_dir(&self.inner.data_dir)?;
        std::thread::spawn(move || remove_dir(&doomed));
        Ok(())
    }

    fn open_logs(&self) -> Vec<Arc<Log>> {
        self.logs().values().cloned().collect()
    }

    /// The cleaner's counters since the process started.
    pub fn cleaner_metrics(&self) -> CleanerMetrics {
        let totals = &self.inner.cleaner;
        CleanerMetrics {
            bytes_read: totals.bytes_read.load(Ordering::Relaxed),
            bytes_written: totals.bytes_written.load(Ordering::Relaxed),
            cleans: totals.cleans.load(Ordering::Relaxed),
            last_clean_ms: match totals.last_clean_ms.load(Ordering::Relaxed) {
                0 => None,
                ms => Some(ms),
            },
        }
    }

    /// Cleans the dirtiest log that is due, if any; returns what it did.
    /// One pass of a cleaner thread; `throttle` as in [`Log::clean`].
    pub fn clean_dirtiest(
        &self,
        map: &mut OffsetMap,
        throttle: &mut dyn FnMut(u64) -> bool,
    ) -> Option<CleanStats> {
        let now = now_ms();
        let totals = &self.inner.cleaner;
        let mut dirtiest: Option<(f64, Arc<Log>)> = None;
        for log in self.open_logs() {
            if totals.busy_set().contains(log.dir()) {
                continue;
            }
            match log.cleanable(now) {
                Ok(Some(c))
                    if c.due && dirtiest.as_ref().is_none_or(|(r, _)| c.dirty_ratio > *r) =>
                {
                    dirtiest = Some((c.dirty_ratio, log));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(dir = %log.dir().display(), error = %e, "cannot rate log for cleaning")
                }
            }
        }
        let (_, log) = dirtiest?;
        if !totals.busy_set().insert(log.dir().to_path_buf()) {
            return None;
        }
        let started = Instant::now();
        let result = log.clean(now, map, throttle);
        totals.busy_set().remove(log.dir());
        match result {
            Ok(Some(stats)) => {
                totals
                    .bytes_read
                    .fetch_add(stats.bytes_read, Ordering::Relaxed);
                totals
                    .bytes_written
                    .fetch_add(stats.bytes_written, Ordering::Relaxed);
                totals.cleans.fetch_add(1, Ordering::Relaxed);
                totals.last_clean_ms.store(now_ms(), Ordering::Relaxed);
                tracing::info!(
                    dir = %log.dir().display(),
                    dirty_bytes = stats.dirty_bytes,
                    read = stats.bytes_read,
                    written = stats.bytes_written,
                    removed = stats.records_removed,
                    segments_before = stats.segments_before,
                    segments_after = stats.segments_after,
                    ms = started.elapsed().as_millis() as u64,
                    "cleaned log"
                );
                Some(stats)
            }
            Ok(None) | Err(LogError::Closed { .. }) => None,
            Err(e) => {
                tracing::error!(dir = %log.dir().display(), error = %e, "cleaning failed");
                None
            }
        }
    }

    /// Flushes every open log and writes its clean-shutdown marker. Keeps
    /// going after a failure and returns the first one.
    pub fn shutdown(&self) -> Result<(), LogError> {
        let mut first_error = None;
        for log in self.open_logs() {
            if let Err(e) = log.close() {
                tracing::error!(dir = %log.dir().display(), error = %e, "closing log failed");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Starts the flusher, retention/checkpoint and scrub threads with
    /// default intervals.
    pub fn start_background(&self) -> BackgroundHandle {
        self.start_background_with(BackgroundConfig::default())
    }

    pub fn start_background_with(&self, config: BackgroundConfig) -> BackgroundHandle {
        let stop = Arc::new(Stop::default());
        let mut spawned = vec![
            spawn_worker(&stop, "rill-log-flush", self.flush_work(&config)),
            spawn_worker(&stop, "rill-log-retention", self.retention_work(&config)),
            spawn_worker(&stop, "rill-log-scrub", self.scrub_work(&config, &stop)),
        ];
        let cleaner = config.cleaner;
        if cleaner.enabled {
            let threads = cleaner.threads.max(1);
            for i in 0..threads {
                let work = self.cleaner_work(&cleaner, threads, &stop);
                spawned.push(spawn_worker(&stop, &format!("rill-log-cleaner-{i}"), work));
            }
        }
        let mut threads = Vec::new();
        for thread in spawned {
            match thread {
                Ok(handle) => threads.push(handle),
                Err(e) => tracing::error!(error = %e, "could not start a log background thread"),
            }
        }
        BackgroundHandle { stop, threads }
    }

    /// One round of the flusher: flushes the logs whose `flush.ms` is due.
    fn flush_work(&self, config: &BackgroundConfig) -> Work {
        let manager = self.clone();
        let interval = config.flush_check_interval;
        Box::new(move || {
            let now = now_ms();
            for log in manager.open_logs() {
                if let Err(e) = log.flush_if_due(now) {
                    tracing::error!(dir = %log.dir().display(), error = %e, "scheduled flush failed");
                }
            }
            // Active segments reopened by appends and reads since.
            manager.release_idle_active_segments();
            interval
        })
    }

    /// One round of the retention thread: applies retention and writes
    /// checkpoints, each when its own interval has passed.
    fn retention_work(&self, config: &BackgroundConfig) -> Work {
        let manager = self.clone();
        let retention_every = config.retention_check_interval;
        let checkpoint_every = config.checkpoint_interval;
        let mut last_retention: Option<Instant> = None;
        let mut last_checkpoint = Instant::now();
        Box::new(move || {
            if last_retention.is_none_or(|t| t.elapsed() >= retention_every) {
                last_retention = Some(Instant::now());
                for log in manager.open_logs() {
                    if let Err(e) = log.apply_retention(now_ms()) {
                        tracing::error!(dir = %log.dir().display(), error = %e, "retention failed");
                    }
                }
            }
            if last_checkpoint.elapsed() >= checkpoint_every {
                last_checkpoint = Instant::now();
                for log in manager.open_logs() {
                    if let Err(e) = log.checkpoint() {
                        tracing::error!(dir = %log.dir().display(), error = %e, "checkpoint failed");
                    }
                }
            }
            retention_every
                .min(checkpoint_every)
                .min(Duration::from_secs(1))
        })
    }

    /// One pass of the scrub over every open log, read at the configured rate.
    fn scrub_work(&self, config: &BackgroundConfig, stop: &Arc<Stop>) -> Work {
        let manager = self.clone();
        let scrub_stop = stop.clone();
        let rate = config.scrub_bytes_per_second.max(1);
        let pass_interval = config.scrub_pass_interval;
        Box::new(move || {
            for log in manager.open_logs() {
                let started = Instant::now();
                let mut read = 0u64;
                let mut throttle = |bytes: u64| {
                    read += bytes;
                    let due = Duration::from_secs_f64(read as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        scrub_stop.wait(wait);
                    }
                };
                if scrub_stop.is_stopped() {
                    break;
                }
                if let Err(e) = log.scrub(&mut throttle) {
                    tracing::error!(dir = %log.dir().display(), error = %e, "scrub failed");
                }
            }
            pass_interval
        })
    }

    /// One round of a cleaner thread (one of `threads`): cleans the
    /// dirtiest log, if any is due.
    fn cleaner_work(&self, cleaner: &CleanerConfig, threads: usize, stop: &Arc<Stop>) -> Work {
        let manager = self.clone();
        let cleaner_stop = stop.clone();
        let backoff = cleaner.backoff;
        let rate = cleaner.io_bytes_per_second;
        // The buffer is shared out between the threads, as in Kafka;
        // each thread allocates its map on its first clean.
        let memory = cleaner.dedupe_buffer_bytes / threads;
        let mut map: Option<OffsetMap> = None;
        Box::new(move || {
            let started = Instant::now();
            let mut moved = 0u64;
            let mut throttle = |bytes: u64| {
                if let Some(rate) = rate {
                    moved += bytes;
                    let due = Duration::from_secs_f64(moved as f64 / rate.max(1) as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        cleaner_stop.wait(wait);
                    }
                }
                !cleaner_stop.is_stopped()
            };
            let map = map.get_or_insert_with(|| OffsetMap::with_memory(memory));
            match manager.clean_dirtiest(map, &mut throttle) {
                // Another log may be due right away.
                Some(_) => Duration::ZERO,
                None => backoff,
            }
        })
    }
}

/// One round of a background thread's work; returns the pause before the next.
type Work = Box<dyn FnMut() -> Duration + Send>;

/// Starts a thread that runs `work` in rounds until `stop` is set.
fn spawn_worker(stop: &Arc<Stop>, name: &str, mut work: Work) -> std::io::Result<JoinHandle<()>> {
    let stop = stop.clone();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            while !stop.is_stopped() {
                let pause = work();
                stop.wait(pause);
            }
        })
}

/// See [`LogManager::release_idle_active_segments`].
fn release_idle(logs: Vec<Arc<Log>>) {
    let max = active_segments_max();
    // Each log has one active segment: at most `max` logs, nothing to do.
    if logs.len() <= max {
        return;
    }
    let mut open: Vec<(u64, Arc<Log>)> = logs
        .into_iter()
        .filter_map(|log| log.active_last_used().map(|used| (used, log)))
        .collect();
    // Up to an eighth of the bound may be opened before the next call
    // (`DirHealth::active_reopened`); above 7/8 of it, close the least
    // recently used down to 3/4, so calls that close nothing are cheap.
    if open.len() <= max - max / 8 {
        return;
    }
    open.sort_unstable_by_key(|(used, _)| *used);
    let excess = open.len() - (max - max / 4);
    for (_, log) in open.into_iter().take(excess) {
        log.release_active();
    }
}

fn remove_dir(path: &Path) {
    if let Err(e) = fs::remove_dir_all(path) {
        tracing::warn!(dir = %path.display(), error = %e, "could not remove a deleted partition");
    }
}

#[derive(Default)]
struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sleeps up to `pause`, returning early when stopped.
    fn wait(&self, pause: Duration) {
        let guard = self.stopped.lock().unwrap_or_else(|p| p.into_inner());
        let _unused = self
            .wake
            .wait_timeout_while(guard, pause, |stopped| !*stopped);
    }

    fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.wake.notify_all();
    }
}

/// The running background threads; `stop` ends and joins them.
pub struct BackgroundHandle {
    stop: Arc<Stop>,
    threads: Vec<JoinHandle<()>>,
}

impl BackgroundHandle {
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.stop();
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a log background thread panicked");
            }
        }
    }
}

impl Drop for BackgroundHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_names_round_trip_and_bad_names_are_refused() {
        assert_eq!(parse_dir_name("orders-3"), Some(("orders".to_string(), 3)));
        assert_eq!(parse_dir_name("a-b-12"), Some(("a-b".to_string(), 12)));
        assert_eq!(parse_dir_name("orders"), None);
        assert_eq!(parse_dir_name("x-3.1f-delete"), None);
        assert!(check_name("../etc", 0).is_err());
        assert!(check_name("ok", -1).is_err());
        assert!(check_name(&"a".repeat(250), 0).is_err());
    }
}
