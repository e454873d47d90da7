"""``pallet system reset -f`` leaves nothing of a root on the host: not in the root, not outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.containers.conftest import cgroup_dirs, mounts_under


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def test_reset_removes_containers_images_volumes_networks_and_what_the_root_made_outside(bb):
    from pallet.plugins.network.nft import table_exists, table_name

    bb("volume", "create", "keep", check=True)
    bb("network", "create", "--subnet", "10.231.7.0/24", "hrdn" + bb.bridge[2:8], check=True)
    cid = bb("run", "-d", "--network", "bridge", "-p", "127.0.0.1::80", "-v", "keep:/data", "busybox",
             "sleep", "300", check=True).stdout.strip()
    bb("create", "--network", "hrdn" + bb.bridge[2:8], "busybox", "true", check=True)
    table = table_name(bb.root)
    registry_record = Path("/run/pallet-network") / f"{table}.json"
    assert _link_exists(bb.bridge) and table_exists(table) and registry_record.exists()
    assert cgroup_dirs(cid) and mounts_under(bb.root)

    refused = bb("system", "reset", input="n\n")
    assert refused.returncode == 0 and "Are you sure" in refused.stdout
    assert bb("ps", "-q", "--no-trunc", check=True).stdout.strip() == cid

    result = bb("system", "reset", "-f")
    assert result.returncode == 0, result.stderr
    assert f"removed container {cid}" in result.stdout
    assert list(bb.root.iterdir()) == []
    assert not bb.run_root.exists() or list(bb.run_root.iterdir()) == []
    assert not _link_exists(bb.bridge)
    assert not table_exists(table)
    assert not registry_record.exists()
    assert cgroup_dirs(cid) == [] and mounts_under(bb.root) == [] and mounts_under(bb.run_root) == []
    # The root is usable again from nothing.
    bb("image", "build-busybox", check=True)
    assert bb("run", "--rm", "busybox", "true").returncode == 0
