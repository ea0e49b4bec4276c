#!/usr/bin/env python3
"""How fast one group-commit round can make 16 partitions durable, by the
system calls it could use: one fdatasync of each of 16 files, or one
syncfs(2) of their file system (what crates/log/src/sync.rs does). Each round
appends 1,600 bytes to each file first, as 16 producers' appends would.

    bench/sync-calls.py [DIR]     (default: target/sync-calls, on the repo's disk)
"""

import ctypes
import os
import shutil
import sys
import time

FILES = 16
SECONDS = 3.0

libc = ctypes.CDLL("libc.so.6", use_errno=True)
directory = sys.argv[1] if len(sys.argv) > 1 else "target/sync-calls"
os.makedirs(directory, exist_ok=True)
fds = [os.open(f"{directory}/f{i}", os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644) for i in range(FILES)]
dir_fd = os.open(directory, os.O_RDONLY)
data = b"x" * 1600


def rounds_per_second(mode: str) -> float:
    rounds, start = 0, time.monotonic()
    while time.monotonic() - start < SECONDS:
        for fd in fds:
            os.write(fd, data)
        if mode == "syncfs":
            if libc.syncfs(dir_fd) != 0:
                raise OSError(ctypes.get_errno(), "syncfs")
        else:
            for fd in fds:
                os.fdatasync(fd)
        rounds += 1
    return rounds / (time.monotonic() - start)


# Interleaved, twice each: the disk's speed drifts from second to second.
for mode in ["fdatasync", "syncfs", "fdatasync", "syncfs"]:
    print(f"{mode:9} x{1 if mode == 'syncfs' else FILES}: {rounds_per_second(mode):6.0f} rounds/s")
shutil.rmtree(directory)
