"""The zfs driver on a real zfs-fuse pool: datasets, clones of snapshots, quotas, status."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import PalletError
from pallet.plugins.storage.zfs import ZfsDriver


def _zfs_names(fsname: str) -> list[str]:
    out = subprocess.run(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", fsname],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line != fsname]


def test_child_is_a_clone_of_a_snapshot_of_its_parent(zfs_fsname, tmp_path):
    driver = ZfsDriver(DriverContext(tmp_path / "zfs", {"zfs.fsname": zfs_fsname}))
    driver.create("base")
    (driver.get("base") / "file").write_text("parent")
    driver.create_rw("ctr", "base")
    child = driver.get("ctr")
    assert child == tmp_path / "zfs" / "graph" / "ctr"
    assert driver.metadata("ctr")["Origin"] == f"{zfs_fsname}/base@ctr"
    assert (child / "file").read_text() == "parent"
    (child / "file").write_text("child")
    assert (driver.get("base") / "file").read_text() == "parent"
    assert driver.layers() == ["base", "ctr"]
    driver.put("ctr")
    driver.put("base")
    assert not os.path.ismount(child), "put() must unmount the dataset"
    driver.remove("ctr")
    assert _zfs_names(zfs_fsname) == [f"{zfs_fsname}/base"]
    assert not child.exists()
    driver.remove("base")
    driver.remove("base")
    assert _zfs_names(zfs_fsname) == []


def test_removing_a_parent_first_keeps_its_children_and_frees_it_later(zfs_fsname, tmp_path):
    driver = ZfsDriver(DriverContext(tmp_path / "zfs", {"zfs.fsname": zfs_fsname}))
    driver.create("base")
    (driver.get("base") / "file").write_text("from base")
    driver.put("base")
    driver.create("mid", "base")
    driver.create("top", "mid")
    driver.remove("base")
    driver.remove("mid")
    assert driver.layers() == ["top"]
    assert not driver.exists("base")
    assert (driver.get("top") / "file").read_text() == "from base"
    driver.put("top")
    assert len(_zfs_names(zfs_fsname)) == 5  # top, two hidden parents and their two snapshots
    driver.remove("top")
    assert _zfs_names(zfs_fsname) == []


def test_the_driver_passes_the_conformance_kit(pallet, zfs_fsname, tmp_path):
    result = pallet("plugins", "check", "storage", "zfs", "--home", str(tmp_path / "kit"),
                    "--storage-opt", f"zfs.fsname={zfs_fsname}", timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'storage driver "zfs" passed the conformance kit' in result.stdout
    assert _zfs_names(zfs_fsname) == []


def test_size_sets_a_quota_on_the_container_dataset(zfs_fsname, tmp_path):
    driver = ZfsDriver(DriverContext(tmp_path / "zfs", {"zfs.fsname": zfs_fsname}))
    driver.create("base")
    driver.create_rw("ctr", "base", {"size": "4M"})
    assert driver.metadata("ctr")["Quota"] == str(4 << 20)
    with pytest.raises(OSError):
        with open(driver.get("ctr") / "big", "wb") as handle:
            for _ in range(16):
                handle.write(b"x" * (1 << 20))
                handle.flush()
    driver.put("ctr")
    driver.remove("ctr")
    driver.remove("base")


def test_options_are_checked(zfs_fsname, tmp_path):
    with pytest.raises(PalletError, match='unknown option "zfs.nope"'):
        ZfsDriver(DriverContext(tmp_path / "zfs", {"zfs.fsname": zfs_fsname, "zfs.nope": "1"}))
    with pytest.raises(PalletError, match="is not on a zfs dataset"):
        ZfsDriver(DriverContext(tmp_path / "zfs"))
    availability = ZfsDriver.probe(tmp_path / "zfs", {"zfs.fsname": zfs_fsname + "/missing"})
    assert not availability.available and "does not exist" in availability.reason


def test_without_fsname_layers_go_under_the_dataset_holding_the_root(pallet, zfs_pool, zfs_fsname):
    mountpoint = subprocess.run(["zfs", "get", "-H", "-o", "value", "mountpoint", zfs_fsname],
                                capture_output=True, text=True, check=True).stdout.strip()
    pallet.root = Path(mountpoint) / "root"
    result = pallet("--storage-driver", "zfs", "storage", "status", "--json")
    assert result.returncode == 0, result.stderr
    block = json.loads(result.stdout)
    rows = dict(block["Status"])
    assert block["Driver"] == "zfs"
    assert rows["Zpool"] == zfs_pool.name
    assert rows["Parent Dataset"] == zfs_fsname
    assert rows["Zpool Health"] == "ONLINE"
    assert rows["Compression"] == "off"
    assert "Space Available" in rows


def test_the_parent_dataset_is_remembered_after_the_first_layer(zfs_fsname, tmp_path):
    home = tmp_path / "zfs"
    driver = ZfsDriver(DriverContext(home, {"zfs.fsname": zfs_fsname}))
    assert ZfsDriver.probe(home, {}).available is False  # nothing recorded before a layer exists
    driver.create("base")
    assert ZfsDriver.probe(home, {}).available
    assert ZfsDriver(DriverContext(home)).fsname == zfs_fsname
    with pytest.raises(PalletError, match=f'holds layers in zfs dataset "{zfs_fsname}"'):
        ZfsDriver(DriverContext(home, {"zfs.fsname": zfs_fsname.split("/")[0]}))
    driver.remove("base")
