"""What the zfs driver needs and pyzfs's ``libzfs_core`` does not offer: pools, property reads, snapshots, mounts.

libzfs_core is the committed interface for changing datasets; listing pools and datasets, reading
properties and mounting belong to libzfs, which pyzfs does not wrap. These functions run the
commands on every host, also where the real libzfs_core drives everything else. Names are bytes
as in pyzfs; failures raise the classes of ``zfs_lzc.exceptions``.
"""

from __future__ import annotations

from . import exceptions
from ._commands import Failed, check_name, error, run


def pools() -> list[bytes]:
    """The imported pools."""
    try:
        return [name.encode() for name in run("zpool", "list", "-H", "-o", "name").split()]
    except Failed as failure:
        raise error(failure, None, what="Failed to list pools") from None


def pool_health(pool: bytes) -> str:
    """``ONLINE``, ``DEGRADED``, … (zfs-fuse's ``zpool get`` has no ``-H``/``-o``; ``zpool list`` has)."""
    text = check_name(pool)
    try:
        return run("zpool", "list", "-H", "-o", "health", text).strip()
    except Failed as failure:
        raise error(failure, pool, missing=exceptions.PoolNotFound, what="Failed to read pool health") from None


def get_props(name: bytes, *props: str, exact: bool = True) -> dict[str, str]:
    """Properties of ``name``: exact numbers, or zfs's human-readable ones (``1.2M``); ``DatasetNotFound``."""
    text = check_name(name, snapshot=b"@" in name)
    try:
        out = run("zfs", "get", "-H", *(["-p"] if exact else []), "-o", "property,value", ",".join(props), text)
    except Failed as failure:
        raise error(failure, name, missing=exceptions.DatasetNotFound, what="Failed to read properties") from None
    return dict(line.split("\t", 1) for line in out.splitlines() if "\t" in line)


def snapshots(name: bytes) -> list[bytes]:
    """The snapshots of filesystem ``name`` itself (not of its descendants)."""
    text = check_name(name)
    try:
        out = run("zfs", "list", "-H", "-o", "name", "-t", "snapshot", "-r", text)
    except Failed as failure:
        raise error(failure, name, what="Failed to list snapshots") from None
    return [line.encode() for line in out.splitlines() if line.startswith(text + "@")]


def mounted_at(mountpoint: str) -> bytes | None:
    """The filesystem mounted at ``mountpoint``, if any."""
    try:
        out = run("zfs", "list", "-H", "-o", "name,mountpoint", "-t", "filesystem")
    except Failed as failure:
        raise error(failure, None, what="Failed to list filesystems") from None
    for line in out.splitlines():
        name, _, where = line.partition("\t")
        if where == mountpoint:
            return name.encode()
    return None


def mount(name: bytes) -> None:
    """Mount ``name`` at its ``mountpoint`` property: ``FilesystemNotFound``, ``DatasetBusy``."""
    text = check_name(name)
    try:
        run("zfs", "mount", text)
    except Failed as failure:
        raise error(failure, name, what="Failed to mount") from None


def unmount(name: bytes) -> None:
    """Unmount ``name``: ``DatasetBusy`` while a process uses it."""
    text = check_name(name)
    try:
        run("zfs", "unmount", text)
    except Failed as failure:
        raise error(failure, name, what="Failed to unmount") from None
