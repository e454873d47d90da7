"""Switching storage drivers safely: a root holding another driver's layers is never shown as an empty store."""

from __future__ import annotations

import json
import os

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.plugins.storage.btrfs import BtrfsDriver


@pytest.fixture
def btrfs_root(pallet, btrfs_dir):
    """A pallet root on btrfs that already holds a btrfs layer created through the driver."""
    pallet.root = btrfs_dir / "root"
    pallet.root.mkdir()
    # What the engine records the first time a command uses the driver.
    (pallet.root / "storage-driver").write_text("btrfs\n")
    driver = BtrfsDriver(DriverContext(pallet.root / "btrfs"))
    driver.create("layer1")
    (driver.get("layer1") / "data").write_text("precious")
    return pallet


def refusal(root, wanted: str, holder: str) -> str:
    return (f'Error: storage driver "{wanted}" requested, but {root} holds data of "{holder}"; '
            f'run "pallet storage migrate --to {wanted}" or choose --storage-driver {holder}')


def assert_untouched(pallet):
    assert BtrfsDriver(DriverContext(pallet.root / "btrfs")).layers() == ["layer1"]
    assert (pallet.root / "btrfs" / "subvolumes" / "layer1" / "data").read_text() == "precious"
    assert (pallet.root / "storage-driver").read_text() == "btrfs\n"


@pytest.mark.parametrize("how", ["flag", "env", "config"])
def test_switching_driver_with_prior_data_is_refused(btrfs_root, how):
    pallet = btrfs_root
    args, env = [], {}
    if how == "flag":
        args = ["--storage-driver", "vfs"]
    elif how == "env":
        env = {"PALLET_STORAGE_DRIVER": "vfs"}
    else:
        with open(pallet.env["PALLET_CONFIG"], "w") as handle:
            handle.write('[storage]\ndriver = "vfs"\n')
    for command in (["storage", "status"], ["info"]):
        result = pallet(*args, *command, env=env)
        if command == ["info"]:
            # info never fails: it reports the refusal in the storage block instead.
            assert result.returncode == 0, result.stderr
            assert refusal(pallet.root, "vfs", "btrfs")[len("Error: "):] in result.stdout
            continue
        assert result.returncode == 1, (command, result.stdout)
        assert result.error_lines == [refusal(pallet.root, "vfs", "btrfs")], command
        assert result.stdout == ""
    assert_untouched(pallet)
    assert not (pallet.root / "vfs").exists()


def test_recorded_driver_is_used_without_a_flag(btrfs_root):
    data = json.loads(btrfs_root("storage", "status", "--json").stdout)
    assert data["Driver"] == "btrfs"
    assert data["ChosenBy"] == f"recorded in {btrfs_root.root / 'storage-driver'}"
    assert data["DataPresent"] == ["btrfs"]
    assert dict(data["Status"])["Layers"] == "1"
    assert_untouched(btrfs_root)


def test_same_driver_by_flag_is_accepted(btrfs_root):
    result = btrfs_root("--storage-driver", "btrfs", "storage", "status", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["Driver"] == "btrfs"


def test_a_recorded_driver_without_data_does_not_block_a_switch(pallet):
    pallet.root.mkdir(parents=True)
    (pallet.root / "storage-driver").write_text("btrfs\n")
    data = json.loads(pallet("--storage-driver", "vfs", "storage", "status", "--json").stdout)
    assert data["Driver"] == "vfs"
    assert data["DataPresent"] == []


def test_several_drivers_present_are_refused_even_for_one_of_them(btrfs_root):
    pallet = btrfs_root
    (pallet.root / "overlay2" / "l").mkdir(parents=True)
    (pallet.root / "vfs" / "dir").mkdir(parents=True)
    result = pallet("--storage-driver", "btrfs", "storage", "status")
    assert result.returncode == 1
    assert result.error_lines == [
        f'Error: storage driver "btrfs" requested, but {pallet.root} holds data of "overlay2", "vfs"; '
        "migrate or remove all but one first"
    ]
    os.rmdir(pallet.root / "vfs" / "dir")
    result = pallet("--storage-driver", "btrfs", "storage", "status")
    assert result.error_lines == [refusal(pallet.root, "btrfs", "overlay2")]
    assert_untouched(pallet)
