"""Fixtures for the storage backends: a real btrfs filesystem on a loop device, a zfs-fuse pool on a file vdev.

Each fixture creates everything under a unique temporary directory and removes it afterwards,
even when the tests fail; other helpers run tests on this machine at the same time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest


def _run(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr.strip()}")
    return result


@pytest.fixture(scope="session")
def btrfs_mount():
    """A 1 GiB btrfs filesystem mounted at a unique directory; yields the mount point."""
    if shutil.which("mkfs.btrfs") is None:
        pytest.fail("mkfs.btrfs (btrfs-progs) is not installed; scripts/setup.sh installs it")
    base = Path(tempfile.mkdtemp(prefix=f"pallet-btrfs-{os.getpid()}-"))
    image, mountpoint = base / "fs.img", base / "mnt"
    mountpoint.mkdir()
    loop = None
    mounted = False
    try:
        _run("truncate", "-s", "1G", str(image))
        _run("mkfs.btrfs", "-q", str(image))
        loop = _run("losetup", "-f", "--show", str(image)).stdout.strip()
        _run("mount", loop, str(mountpoint))
        mounted = True
        yield mountpoint
    finally:
        if mounted:
            _run("umount", str(mountpoint), check=False)
            if os.path.ismount(mountpoint):
                _run("umount", "-l", str(mountpoint), check=False)
        if loop:
            _run("losetup", "-d", loop, check=False)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def btrfs_dir(btrfs_mount, request):
    """A fresh directory on the btrfs filesystem for one test (its subvolumes are deleted afterwards)."""
    path = btrfs_mount / f"t-{uuid.uuid4().hex[:10]}"
    path.mkdir()
    try:
        yield path
    finally:
        _remove_tree_with_subvolumes(path)


def _remove_tree_with_subvolumes(path: Path) -> None:
    import btrfsutil

    # Nested subvolumes cannot be removed by rmdir; delete the deepest first.
    for dirpath, dirnames, _files in os.walk(path, topdown=False):
        for name in dirnames:
            child = os.path.join(dirpath, name)
            if not os.path.islink(child) and btrfsutil.is_subvolume(child):
                btrfsutil.delete_subvolume(child, recursive=True)
    shutil.rmtree(path, ignore_errors=True)


def _other_sessions_pools() -> list[str]:
    """Pools of other live test sessions (``pallet<pid>-…``). A pool in zfs-fuse's cache from a session
    that was killed (its vdev gone, the pool UNAVAIL) is nobody's to wait for: it used to hold every
    session's teardown for the whole 120 s."""
    names = _run("zpool", "list", "-H", "-o", "name", check=False, timeout=10).stdout.split()
    live = []
    for name in names:
        match = re.fullmatch(r"pallet(\d+)-[0-9a-f]+", name)
        if match and int(match.group(1)) != os.getpid() and os.path.exists(f"/proc/{match.group(1)}"):
            live.append(name)
    return live


class ZfsPool:
    """A zfs-fuse daemon (ours, or one already running) and a pool on a file vdev."""

    def __init__(self, base: Path):
        self.base = base
        self.name = f"pallet{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.daemon: subprocess.Popen | None = None
        self.pidfile = base / "zfs-fuse.pid"

    def start(self) -> None:
        if _run("zpool", "list", "-H", check=False).returncode != 0:
            # No daemon reachable: start our own in the foreground so we can reap it.
            self.daemon = subprocess.Popen(
                ["zfs-fuse", "--no-daemon", "--pidfile", str(self.pidfile), "--no-kstat-mount"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            )
            deadline = time.monotonic() + 20
            while _run("zpool", "list", "-H", check=False).returncode != 0:
                if self.daemon.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("zfs-fuse did not come up")
                time.sleep(0.1)
        vdev = self.base / "vdev"
        _run("truncate", "-s", "512M", str(vdev))
        _run("zpool", "create", "-m", str(self.base / "pool"), self.name, str(vdev))

    def stop(self) -> None:
        failure = None
        try:
            failure = self._destroy_pool()
        except subprocess.TimeoutExpired as exc:
            # A hung zfs-fuse answers nothing; waiting on it per command cascades into every later
            # test. Stop our own daemon, and lazily unmount whatever it left under our directory.
            failure = f"zfs-fuse stopped answering ({' '.join(exc.cmd)}); the pool was torn down by force"
            if self.daemon is not None:
                self.daemon.kill()
                self.daemon.wait()
                self.daemon = None
            self._unmount_leftovers()
        if self.daemon is not None:
            # Another test session may have found our daemon and made its own pool: let it finish.
            deadline = time.monotonic() + 120
            while _other_sessions_pools() and time.monotonic() < deadline:
                time.sleep(0.5)
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
        self._unmount_leftovers()
        if failure:
            raise RuntimeError(failure)

    def _destroy_pool(self) -> str | None:
        if _run("zpool", "list", "-H", self.name, check=False, timeout=20).returncode != 0:
            return None
        # zfs-fuse may still think a dataset is mounted ("pool is busy"); unmount ours first.
        names = _run("zfs", "list", "-H", "-o", "name", "-r", self.name, check=False, timeout=20).stdout.split()
        for name in reversed(names):
            _run("zfs", "unmount", name, check=False, timeout=20)
        for _ in range(50):
            result = _run("zpool", "destroy", "-f", self.name, check=False, timeout=20)
            if result.returncode == 0:
                return None
            time.sleep(0.2)
        return f"zpool destroy {self.name} failed: {result.stderr.strip()}"

    def _unmount_leftovers(self) -> None:
        prefix = str(self.base) + "/"
        with open("/proc/self/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
        for point in sorted(points, key=len, reverse=True):
            _run("umount", "-l", point, check=False)


@pytest.fixture(scope="session")
def zfs_pool():
    """A zfs-fuse pool on a 512 MiB file vdev; yields the ZfsPool (``.name`` is the pool name)."""
    if shutil.which("zfs-fuse") is None:
        pytest.fail("zfs-fuse is not installed; scripts/setup.sh installs it")
    base = Path(tempfile.mkdtemp(prefix=f"pallet-zfs-{os.getpid()}-"))
    pool = ZfsPool(base)
    try:
        pool.start()
        yield pool
    finally:
        pool.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def zfs_fsname(zfs_pool):
    """A fresh parent dataset for one test: ``POOL/t-XXXX`` (destroyed recursively afterwards)."""
    fsname = f"{zfs_pool.name}/t-{uuid.uuid4().hex[:8]}"
    _run("zfs", "create", fsname)
    try:
        yield fsname
    finally:
        for _ in range(50):
            try:
                if _run("zfs", "destroy", "-r", "-R", "-f", fsname, check=False, timeout=20).returncode == 0:
                    break
            except subprocess.TimeoutExpired:
                break  # a hung daemon: the session fixture tears the pool down by force
            time.sleep(0.2)
