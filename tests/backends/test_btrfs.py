"""The btrfs driver on a real loop-mounted btrfs filesystem: subvolumes, snapshots, quotas, status."""

from __future__ import annotations

import errno
import json
import os
import subprocess

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import PalletError
from pallet.plugins.storage.btrfs import BtrfsDriver


def test_probe_refuses_a_home_that_is_not_on_btrfs(tmp_path):
    availability = BtrfsDriver.probe(tmp_path / "btrfs")
    assert not availability.available
    assert "is not on btrfs" in availability.reason


def test_child_is_a_snapshot_isolated_from_its_parent(btrfs_dir):
    import btrfsutil

    driver = BtrfsDriver(DriverContext(btrfs_dir / "home"))
    driver.create("base")
    (driver.get("base") / "file").write_text("parent")
    driver.create_rw("ctr", "base")
    child = driver.get("ctr")
    assert (child / "file").read_text() == "parent"
    assert btrfsutil.is_subvolume(str(child))
    assert btrfsutil.subvolume_info(str(child)).parent_uuid == btrfsutil.subvolume_info(str(driver.get("base"))).uuid
    (child / "file").write_text("child")
    (child / "new").write_text("only in child")
    assert (driver.get("base") / "file").read_text() == "parent"
    assert not (driver.get("base") / "new").exists()
    assert driver.layers() == ["base", "ctr"]
    assert driver.metadata("ctr")["Path"] == str(child)


def test_remove_deletes_nested_subvolumes_and_is_idempotent(btrfs_dir):
    import btrfsutil

    driver = BtrfsDriver(DriverContext(btrfs_dir / "home"))
    driver.create("layer")
    btrfsutil.create_subvolume(str(driver.get("layer") / "inner"))
    driver.remove("layer")
    assert not driver.exists("layer")
    assert not (btrfs_dir / "home" / "subvolumes" / "layer").exists()
    driver.remove("layer")


def test_create_refuses_duplicates_and_missing_parents(btrfs_dir):
    driver = BtrfsDriver(DriverContext(btrfs_dir / "home"))
    driver.create("a")
    with pytest.raises(PalletError, match="already exists"):
        driver.create("a")
    with pytest.raises(PalletError, match="parent layer nope does not exist"):
        driver.create("b", "nope")
    assert driver.layers() == ["a"]


def test_size_without_quotas_is_refused_and_creates_nothing(btrfs_dir):
    driver = BtrfsDriver(DriverContext(btrfs_dir / "home"))
    driver.create("base")
    with pytest.raises(PalletError, match="btrfs quota enable"):
        driver.create_rw("ctr", "base", {"size": "10M"})
    assert not driver.exists("ctr")


def test_size_limits_a_container_layer_through_qgroups(btrfs_mount, btrfs_dir):
    subprocess.run(["btrfs", "quota", "enable", str(btrfs_mount)], check=True)
    try:
        driver = BtrfsDriver(DriverContext(btrfs_dir / "home"))
        driver.create("base")
        driver.create_rw("ctr", "base", {"size": "8M"})
        with pytest.raises(OSError) as caught:
            with open(driver.get("ctr") / "big", "wb") as handle:
                for _ in range(32):
                    handle.write(b"x" * (1 << 20))
                    handle.flush()
                    os.fsync(handle.fileno())
        assert caught.value.errno == errno.EDQUOT
        driver.remove("ctr")
    finally:
        subprocess.run(["btrfs", "quota", "disable", str(btrfs_mount)], check=True)


def test_unknown_driver_option_is_a_usage_error(btrfs_dir):
    with pytest.raises(PalletError, match='unknown option "btrfs.nope"'):
        BtrfsDriver(DriverContext(btrfs_dir / "home", {"btrfs.nope": "1"}))


def test_storage_status_shows_backing_filesystem_and_versions(pallet, btrfs_dir):
    pallet.root = btrfs_dir / "root"
    result = pallet("--storage-driver", "btrfs", "storage", "status", "--json")
    assert result.returncode == 0, result.stderr
    block = json.loads(result.stdout)
    rows = dict(block["Status"])
    assert block["Driver"] == "btrfs"
    assert rows["Backing Filesystem"] == "btrfs"
    assert rows["Build Version"].startswith("btrfs-progs v")
    assert rows["Library Version"] == "btrfsutil 6.12"


def test_the_driver_passes_the_conformance_kit(pallet, btrfs_dir):
    result = pallet("plugins", "check", "storage", "btrfs", "--home", str(btrfs_dir / "kit"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'storage driver "btrfs" passed the conformance kit' in result.stdout
