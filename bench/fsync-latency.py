#!/usr/bin/env python3
"""How long one fsync takes on this machine's disk: the floor under the
latency of any server that is durable before it answers one request at a time.

Appends N records of 200 bytes to a file and times fdatasync/fsync after
each, then the same into a preallocated file. Prints p50 and p99.

Usage: bench/fsync-latency.py [DIR (default /var/tmp)] [N (default 2000)]
"""
import os
import sys
import tempfile
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000


def report(label, times):
    times.sort()
    print("%-28s p50 %.3f ms  p99 %.3f ms" % (label, times[len(times) // 2] * 1e3,
                                              times[int(len(times) * 0.99)] * 1e3))


with tempfile.TemporaryDirectory(dir=directory) as tmp:
    for label, sync in (("append + fdatasync", os.fdatasync), ("append + fsync", os.fsync)):
        fd = os.open(os.path.join(tmp, "append-" + sync.__name__), os.O_CREAT | os.O_WRONLY | os.O_APPEND)
        times = []
        for _ in range(n):
            os.write(fd, b"x" * 200)
            t = time.perf_counter()
            sync(fd)
            times.append(time.perf_counter() - t)
        os.close(fd)
        report(label, times)
    fd = os.open(os.path.join(tmp, "prealloc"), os.O_CREAT | os.O_RDWR)
    os.posix_fallocate(fd, 0, 200 * n)
    os.fsync(fd)
    times = []
    for i in range(n):
        os.pwrite(fd, b"x" * 200, i * 200)
        t = time.perf_counter()
        os.fdatasync(fd)
        times.append(time.perf_counter() - t)
    os.close(fd)
    report("preallocated + fdatasync", times)
