//! The machine's limits, measured with plain system calls in 1 MiB units:
//! sequential file writes (into the page cache, or to the device with one
//! fdatasync at the end, as `dd conv=fdatasync`), loopback TCP, and reads of
//! a file already in the page cache.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};

const CHUNK: usize = 1 << 20;

fn figure(what: &str, bytes: u64, seconds: f64) -> serde_json::Value {
    serde_json::json!({
        "what": what,
        "bytes": bytes,
        "seconds": seconds,
        "mb_per_sec": bytes as f64 / 1e6 / seconds.max(1e-9),
    })
}

fn chunk() -> Vec<u8> {
    // Not all zeros, in case a layer below compresses or dedupes.
    (0..CHUNK).map(|index| (index * 31 % 251) as u8).collect()
}

/// Writes `mib` MiB to a new file; `sync` is `none` (write(2) only) or
/// `end` (one fdatasync after the last write, inside the timing).
pub fn disk_write(dir: &str, mib: u64, sync: &str) -> Result<serde_json::Value> {
    if !matches!(sync, "none" | "end") {
        bail!("--sync is none or end, not `{sync}`");
    }
    let path = Path::new(dir).join("paperload-disk-write");
    let data = chunk();
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let start = Instant::now();
    for _ in 0..mib {
        file.write_all(&data)?;
    }
    if sync == "end" {
        file.sync_data()?;
    }
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(figure(
        &format!("disk-write sync={sync}"),
        mib * CHUNK as u64,
        seconds,
    ))
}

/// Sends `mib` MiB over loopback TCP to a thread that reads and discards.
pub fn tcp_loopback(mib: u64) -> Result<serde_json::Value> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = listener.local_addr()?;
    let reader = std::thread::spawn(move || -> Result<u64> {
        let (mut socket, _) = listener.accept()?;
        let mut buffer = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            let read = socket.read(&mut buffer)?;
            if read == 0 {
                return Ok(total);
            }
            total += read as u64;
        }
    });
    let data = chunk();
    let mut socket = TcpStream::connect(address)?;
    let start = Instant::now();
    for _ in 0..mib {
        socket.write_all(&data)?;
    }
    socket.shutdown(std::net::Shutdown::Write)?;
    let received = reader.join().expect("the reader thread does not panic")?;
    let seconds = start.elapsed().as_secs_f64();
    if received != mib * CHUNK as u64 {
        bail!(
            "loopback: sent {} bytes, received {received}",
            mib * CHUNK as u64
        );
    }
    Ok(figure("tcp-loopback", received, seconds))
}

/// Writes a `mib` MiB file, reads it once to be sure it is cached, then
/// times a second read.
pub fn cache_read(dir: &str, mib: u64) -> Result<serde_json::Value> {
    let path = Path::new(dir).join("paperload-cache-read");
    let data = chunk();
    let mut file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    for _ in 0..mib {
        file.write_all(&data)?;
    }
    drop(file);
    let mut buffer = vec![0u8; CHUNK];
    let mut read_all = || -> Result<(u64, f64)> {
        let mut file = File::open(&path)?;
        let start = Instant::now();
        let mut total = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                return Ok((total, start.elapsed().as_secs_f64()));
            }
            total += read as u64;
        }
    };
    read_all()?;
    let (bytes, seconds) = read_all()?;
    std::fs::remove_file(&path)?;
    Ok(figure("cache-read", bytes, seconds))
}

/// The longest a spinning thread is kept off its core: one thread per core
/// reads the clock in a tight loop for `seconds`, and every gap between two
/// reads longer than 0.1 ms is time the thread did not run (an interrupt,
/// another thread, or, on a VM, the host running something else on that
/// core, which the guest does not see as steal time on every hypervisor).
/// A latency target cannot be met below what the machine itself adds:
/// a 9 ms gap lands in every message in flight at the time.
pub fn cpu_stalls(seconds: f64) -> Result<serde_json::Value> {
    const BOUNDS_US: [u64; 4] = [1_000, 5_000, 20_000, 100_000];
    if !(seconds.is_finite() && seconds > 0.0) {
        bail!("--seconds must be a positive number, not {seconds}");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let length = std::time::Duration::from_secs_f64(seconds);
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut last = start;
                let mut over = [0u64; BOUNDS_US.len()];
                let mut worst = std::time::Duration::ZERO;
                let mut lost = std::time::Duration::ZERO;
                while last - start < length {
                    let now = Instant::now();
                    let gap = now - last;
                    last = now;
                    if gap.as_micros() > 100 {
                        lost += gap;
                        for (count, bound) in over.iter_mut().zip(BOUNDS_US) {
                            *count += u64::from(gap.as_micros() > u128::from(bound));
                        }
                        worst = worst.max(gap);
                    }
                }
                (over, worst, lost)
            })
        })
        .collect();
    let mut over = [0u64; BOUNDS_US.len()];
    let mut worst = std::time::Duration::ZERO;
    let mut lost = std::time::Duration::ZERO;
    for thread in threads {
        let (o, w, l) = thread.join().expect("a spinning thread does not panic");
        for (sum, count) in over.iter_mut().zip(o) {
            *sum += count;
        }
        worst = worst.max(w);
        lost += l;
    }
    Ok(serde_json::json!({
        "what": "cpu-stalls",
        "cores": cores,
        "seconds": seconds,
        "gaps_over_1ms": over[0],
        "gaps_over_5ms": over[1],
        "gaps_over_20ms": over[2],
        "gaps_over_100ms": over[3],
        "worst_ms": worst.as_secs_f64() * 1e3,
        "lost_fraction": lost.as_secs_f64() / (seconds * cores as f64),
    }))
}
