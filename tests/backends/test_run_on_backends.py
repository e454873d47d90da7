"""Acceptance: a container runs with its root filesystem on btrfs and on zfs, from a clean root."""

from __future__ import annotations

import subprocess
from pathlib import Path

import btrfsutil


def test_run_on_btrfs(pallet, btrfs_dir):
    pallet.root = btrfs_dir / "root"
    btrfs = ("--storage-driver", "btrfs")
    pallet(*btrfs, "image", "build-busybox", check=True)
    result = pallet(*btrfs, "run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    subvolumes = pallet.root / "btrfs" / "subvolumes"
    [layer] = list(subvolumes.iterdir())  # the image layer; --rm removed the container's snapshot
    assert btrfsutil.is_subvolume(str(layer))
    # The recorded driver is used from now on without the flag.
    assert pallet("run", "--rm", "--network", "none", "busybox", "cat", "/proc/self/comm", check=True).stdout == "cat\n"


def test_run_on_zfs(pallet, zfs_fsname):
    mountpoint = subprocess.run(["zfs", "get", "-H", "-o", "value", "mountpoint", zfs_fsname],
                                capture_output=True, text=True, check=True).stdout.strip()
    pallet.root = Path(mountpoint) / "root"
    zfs = ("--storage-driver", "zfs")
    pallet(*zfs, "image", "build-busybox", check=True)
    result = pallet(*zfs, "run", "--rm", "--network", "none", "busybox", "echo", "hi")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi\n"
    datasets = subprocess.run(["zfs", "list", "-H", "-o", "name", "-r", zfs_fsname],
                              capture_output=True, text=True, check=True).stdout.split()
    assert len(datasets) == 2, datasets  # the parent and the image layer
    written = pallet(*zfs, "run", "--rm", "--network", "none", "busybox", "sh", "-c",
                     "echo persisted > /tmp/x && cat /tmp/x", check=True)
    assert written.stdout == "persisted\n"
