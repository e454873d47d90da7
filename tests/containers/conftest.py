"""Fixtures for the container tests: a private root with ``busybox:latest`` and a leak check on teardown."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import Pallet, teardown_networks


def mounts_under(path: Path) -> list[str]:
    prefix = str(path)
    with open("/proc/self/mounts") as handle:
        return [line.split()[1] for line in handle if line.split()[1].startswith(prefix)]


def container_ids(root: Path) -> list[str]:
    try:
        return [p.name for p in (root / "containers").iterdir() if len(p.name) == 64]
    except FileNotFoundError:
        return []


def cgroup_dirs(cid: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    found = []
    for controller in base.iterdir():
        candidate = controller / "pallet" / cid
        if candidate.exists():
            found.append(str(candidate))
    return found


def cleanup_root(pallet: Pallet) -> list[str]:
    """Remove every container of this root; return what had leaked (and remove that too)."""
    leaks = []
    ids = container_ids(pallet.root)
    for cid in ids:
        pallet("rm", "-f", cid, timeout=60)
    for cid in ids:
        for path in cgroup_dirs(cid):
            leaks.append(path)
            with contextlib.suppress(OSError):
                os.rmdir(path)
    for mount in reversed(mounts_under(pallet.root.parent)):
        leaks.append(mount)
        subprocess.run(["umount", "-l", mount], capture_output=True)
    return leaks


@pytest.fixture
def bb(tmp_path) -> Pallet:
    """``pallet`` on a private root that holds ``busybox:latest``; everything is removed afterwards."""
    pallet = Pallet(tmp_path / "root", tmp_path / "run")
    pallet.bridge = "pc" + uuid.uuid4().hex[:8]
    # Most tests are not about networking: "none" unless they ask. A test that uses the default
    # bridge gets its own device name, and the networks are torn down afterwards.
    pallet.network_config = f'[network]\nbridge_name = "{pallet.bridge}"\n'
    (tmp_path / "pallet.toml").write_text(pallet.network_config + '[containers]\ndefault_network = "none"\n')
    pallet("image", "build-busybox", check=True)
    try:
        yield pallet
    finally:
        leaks = cleanup_root(pallet)
        teardown_networks(pallet)
        assert not leaks, f"left behind: {leaks}"


def record(pallet: Pallet, name: str) -> dict:
    result = pallet("inspect", name, check=True)
    return json.loads(result.stdout)[0]
