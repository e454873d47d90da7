"""Bytes a container's cgroup read from and wrote to block devices, as ``stats``' BLOCK I/O column shows.

cgroup v1 counts them in ``blkio.throttle.io_service_bytes`` (every device, whatever the I/O
scheduler; the ``bfq`` file only where bfq runs); cgroup v2 in ``io.stat``'s ``rbytes`` and
``wbytes``. Like Docker, the sum is over every device, and buffered writes count where the
kernel charges them (v1 charges background writeback to the root cgroup; v2 to the writer).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

V1_FILES = ("blkio.throttle.io_service_bytes", "blkio.bfq.io_service_bytes")


def parse_v1(text: str) -> tuple[int, int]:
    """``MAJ:MIN Read N`` / ``MAJ:MIN Write N`` lines -> (read, written); the ``Total`` line is skipped."""
    read = written = 0
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2].isdigit():
            if parts[1] == "Read":
                read += int(parts[2])
            elif parts[1] == "Write":
                written += int(parts[2])
    return read, written


def parse_v2(text: str) -> tuple[int, int]:
    """``MAJ:MIN rbytes=N wbytes=N rios=N …`` lines -> (read, written)."""
    read = written = 0
    for line in text.splitlines():
        for field in line.split()[1:]:
            key, _sep, value = field.partition("=")
            if (value.isascii() and value.isdigit()) and key in ("rbytes", "wbytes"):
                if key == "rbytes":
                    read += int(value)
                else:
                    written += int(value)
    return read, written


def block_io(cgroup) -> tuple[int, int]:
    """(read, written) bytes of a :class:`pallet.kernel.cgroups.Cgroup`; (0, 0) when the counters are missing."""
    dirs = cgroup.dirs()
    if "unified" in dirs:
        with contextlib.suppress(OSError):
            return parse_v2((Path(dirs["unified"]) / "io.stat").read_text())
        return 0, 0
    blkio = dirs.get("blkio")
    if not blkio:
        return 0, 0
    for name in V1_FILES:
        with contextlib.suppress(OSError):
            counts = parse_v1((Path(blkio) / name).read_text())
            if counts != (0, 0) or name == V1_FILES[-1]:
                return counts
    return 0, 0
