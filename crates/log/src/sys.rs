//! The few system calls the log makes itself, beyond `std::fs`.

use std::fs::File;
use std::io::{IoSlice, Write};
use std::path::Path;

/// Writes all of `slices` at the file's end, continuing after partial
/// writes. The active segment's file is opened with `O_APPEND`, so the
/// kernel itself places every write after the bytes already there: a write
/// can never land on bytes a fetch was sent from (see `create_segment`).
pub(crate) fn write_all_vectored(
    mut file: &File,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reserves the file's blocks in `[start, start + len)` without changing
/// its length (`fallocate(2)` with `FALLOC_FL_KEEP_SIZE`).
pub(crate) fn reserve_blocks(file: &File, start: u64, len: u64) -> rustix::io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, start, len)
}

/// Whether a failed [`reserve_blocks`] says the file system cannot reserve
/// at all (rather than failing this once).
pub(crate) fn cannot_reserve(errno: rustix::io::Errno) -> bool {
    errno == rustix::io::Errno::OPNOTSUPP || errno == rustix::io::Errno::NOSYS
}

/// The process's soft limit on open files; `None` if unlimited.
pub(crate) fn open_files_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Nofile).current
}

/// Bytes an unprivileged writer may still use on `dir`'s file system.
pub(crate) fn available_bytes(dir: &Path) -> rustix::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Writes back every dirty page of the file system holding `file`.
pub(crate) fn sync_file_system(file: &File) -> rustix::io::Result<()> {
    rustix::fs::syncfs(file)
}
