"""devicemapper: option parsing, thin-pool/thin tables and dmsetup command lines; live use where the kernel has dm."""

from __future__ import annotations

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import UsageError
from pallet.plugins.storage import devicemapper as dm
from pallet.plugins.storage.devicemapper import DeviceMapperDriver, DmOptions

GiB = 1 << 30


def test_defaults_match_dockers_loop_lvm():
    opts = DmOptions.parse({})
    assert opts == DmOptions(thinpooldev="", basesize=10 * GiB, fs="ext4", loopdatasize=100 * GiB,
                             loopmetadatasize=2 * GiB, blocksize=64 << 10)


def test_options_are_parsed_and_checked():
    opts = DmOptions.parse({"dm.thinpooldev": "/dev/mapper/vg-thinpool", "dm.basesize": "20G", "dm.fs": "xfs"})
    assert (opts.thinpooldev, opts.basesize, opts.fs) == ("vg-thinpool", 20 * GiB, "xfs")
    assert DmOptions.parse({"dm.loopdatasize": "1.5G", "dm.loopmetadatasize": "100M"}).loopdatasize == 3 * GiB // 2
    with pytest.raises(UsageError, match='dm.fs "btrfs" is not supported'):
        DmOptions.parse({"dm.fs": "btrfs"})
    with pytest.raises(UsageError, match='unknown option "dm.nope"'):
        DmOptions.parse({"dm.nope": "1"})
    with pytest.raises(UsageError, match='invalid dm.basesize "ten"'):
        DmOptions.parse({"dm.basesize": "ten"})
    with pytest.raises(UsageError, match="multiple of 64K"):
        DmOptions.parse({"dm.blocksize": "96K"})
    with pytest.raises(UsageError, match="do not apply with dm.thinpooldev"):
        DmOptions.parse({"dm.thinpooldev": "pool", "dm.loopdatasize": "1G"})


def test_thin_pool_table():
    table = dm.thin_pool_table(100 * GiB, "/dev/loop1", "/dev/loop0", 64 << 10)
    # 100 GiB = 209715200 sectors; 64 KiB blocks = 128 sectors; 1% of 1638400 blocks = 16384.
    assert table == "0 209715200 thin-pool /dev/loop1 /dev/loop0 128 16384 1 skip_block_zeroing"
    assert dm.thin_pool_table(64 << 10, "m", "d", 64 << 10).split()[6] == "1"


def test_thin_table_and_activation():
    table = dm.thin_table(10 * GiB, "/dev/mapper/pallet-8:1-42-pool", 7)
    assert table == "0 20971520 thin /dev/mapper/pallet-8:1-42-pool 7"
    assert dm.activate_command("pallet-8:1-42-abc", table) == [
        "dmsetup", "create", "pallet-8:1-42-abc", "--table", "0 20971520 thin /dev/mapper/pallet-8:1-42-pool 7"]
    assert dm.deactivate_command("pallet-8:1-42-abc") == ["dmsetup", "remove", "--retry", "pallet-8:1-42-abc"]


def test_pool_name_is_unique_per_home_like_dockers():
    assert dm.pool_name(0x801, 42) == "pallet-8:1-42-pool"


def test_messages_for_thin_devices_and_snapshots():
    assert dm.create_thin_commands("p", 1) == [["dmsetup", "message", "p", "0", "create_thin 1"]]
    assert dm.create_snap_commands("p", 5, 3, None) == [["dmsetup", "message", "p", "0", "create_snap 5 3"]]
    assert dm.create_snap_commands("p", 5, 3, "p-origin") == [
        ["dmsetup", "suspend", "p-origin"],
        ["dmsetup", "message", "p", "0", "create_snap 5 3"],
        ["dmsetup", "resume", "p-origin"],
    ]
    assert dm.delete_commands("p", 5) == [["dmsetup", "message", "p", "0", "delete 5"]]


def test_filesystem_commands():
    assert dm.mkfs_command("ext4", "/dev/mapper/x") == [
        "mkfs.ext4", "-q", "-F", "-E", "nodiscard,lazy_itable_init=0,lazy_journal_init=0", "/dev/mapper/x"]
    assert dm.mkfs_command("xfs", "/dev/mapper/x") == ["mkfs.xfs", "-q", "-f", "/dev/mapper/x"]
    assert dm.grow_command("ext4", "/dev/mapper/x", "/m") == ["resize2fs", "/dev/mapper/x"]
    assert dm.grow_command("xfs", "/dev/mapper/x", "/m") == ["xfs_growfs", "/m"]
    assert dm.mount_options("xfs", "") == "nouuid"
    assert dm.mount_options("ext4", "system_u:object_r:container_file_t:s0") == \
        'context="system_u:object_r:container_file_t:s0"'


def test_probe_reports_why_device_mapper_is_unusable():
    availability = DeviceMapperDriver.probe()
    if dm._kernel_has_device_mapper():
        assert availability.available or availability.reason.startswith(("cannot open", "the dmsetup"))
    else:
        assert availability.reason == "device-mapper is not supported by this kernel"


def test_selecting_devicemapper_here_reports_the_reason(pallet):
    availability = DeviceMapperDriver.probe()
    result = pallet("--storage-driver", "devicemapper", "storage", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert str(availability) in result.stdout
    check = pallet("plugins", "ls", "--kind", "storage")
    assert availability.reason in check.stdout


def test_thin_layers_live(tmp_path):
    availability = DeviceMapperDriver.probe()
    if not availability.available:
        pytest.skip(availability.reason)
    driver = DeviceMapperDriver(DriverContext(tmp_path / "dm", {"dm.loopdatasize": "2G", "dm.loopmetadatasize": "64M",
                                                  "dm.basesize": "256M"}))
    try:
        driver.create("base-layer")
        (driver.get("base-layer") / "file").write_text("parent")
        driver.put("base-layer")
        driver.create_rw("ctr", "base-layer")
        child = driver.get("ctr")
        assert (child / "file").read_text() == "parent"
        (child / "file").write_text("child")
        driver.put("ctr")
        assert (driver.get("base-layer") / "file").read_text() == "parent"
        driver.put("base-layer")
    finally:
        for layer in ("ctr", "base-layer"):
            driver.remove(layer)
        driver.cleanup()


def test_conformance_check_reports_why_devicemapper_cannot_run(pallet):
    availability = DeviceMapperDriver.probe(None, {})
    if availability.available:
        pytest.skip("device-mapper works here: the live test covers it")
    result = pallet("plugins", "check", "storage", "devicemapper")
    assert result.returncode == 1
    assert result.error_lines == [
        f'Error: storage driver "devicemapper" is unavailable on this host: {availability.reason}']
