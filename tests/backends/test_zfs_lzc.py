"""zfs_lzc, pyzfs's libzfs_core API over the zfs commands: each exception comes from a real failing zfs-fuse command."""

from __future__ import annotations

import subprocess

import pytest

from pallet.plugins.storage import zfs_lzc
from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import NotFound
from pallet.plugins.storage.zfs import ZfsDriver, ZfsError, _retry_busy
from pallet.plugins.storage.zfs_lzc import exceptions as lzc_exc
from pallet.plugins.storage.zfs_lzc import extension as ext


UNMOUNTED = {b"canmount": 0}  # fewer of zfs-fuse's passing "dataset is busy" answers


@pytest.fixture
def fs(zfs_fsname) -> bytes:
    return zfs_fsname.encode()


@pytest.fixture
def holder():
    """Start a process whose working directory is a mountpoint, which keeps that filesystem busy."""
    processes = []

    def hold(directory: str) -> subprocess.Popen:
        process = subprocess.Popen(["sleep", "600"], cwd=directory)
        processes.append(process)
        return process

    try:
        yield hold
    finally:
        for process in processes:
            process.kill()
            process.wait()


def test_destroying_a_missing_dataset_raises_filesystem_not_found(fs):
    with pytest.raises(lzc_exc.FilesystemNotFound) as caught:
        zfs_lzc.lzc_destroy(fs + b"/missing")
    assert isinstance(caught.value, lzc_exc.DatasetNotFound)
    assert caught.value.name == fs + b"/missing" and caught.value.errno == 2
    assert "does not exist" in caught.value.output
    assert str(caught.value) == f"[Errno 2] Filesystem not found: '{fs.decode()}/missing'"


def test_creating_an_existing_dataset_raises_filesystem_exists(fs):
    zfs_lzc.lzc_create(fs + b"/a")
    with pytest.raises(lzc_exc.FilesystemExists) as caught:
        zfs_lzc.lzc_create(fs + b"/a")
    assert isinstance(caught.value, lzc_exc.DatasetExists) and caught.value.errno == 17
    with pytest.raises(lzc_exc.ParentNotFound):
        zfs_lzc.lzc_create(fs + b"/nope/a")


def test_destroying_a_dataset_in_use_raises_dataset_busy(fs, holder):
    zfs_lzc.lzc_create(fs + b"/busy")
    holder(ext.get_props(fs + b"/busy", "mountpoint")["mountpoint"])
    with pytest.raises(lzc_exc.DatasetBusy) as caught:
        zfs_lzc.lzc_destroy(fs + b"/busy")
    assert caught.value.errno == 16 and "busy" in caught.value.output
    with pytest.raises(lzc_exc.DatasetBusy):
        ext.unmount(fs + b"/busy")
    assert zfs_lzc.lzc_exists(fs + b"/busy")


def test_a_busy_destroy_is_retried_until_the_dataset_is_free(fs, holder):
    zfs_lzc.lzc_create(fs + b"/busy")
    process = holder(ext.get_props(fs + b"/busy", "mountpoint")["mountpoint"])
    attempts = []

    def destroy_then_free(name):
        attempts.append(name)
        try:
            zfs_lzc.lzc_destroy(name)
        finally:  # the first attempt meets the holder; then it goes away
            process.kill()
            process.wait()

    _retry_busy(destroy_then_free, fs + b"/busy")
    assert len(attempts) >= 2
    assert not zfs_lzc.lzc_exists(fs + b"/busy")


def test_a_snapshot_that_exists_fails_the_whole_snapshot_call(fs):
    zfs_lzc.lzc_create(fs + b"/a")
    zfs_lzc.lzc_snapshot([fs + b"/a@s"])
    assert zfs_lzc.lzc_exists(fs + b"/a@s")
    with pytest.raises(lzc_exc.SnapshotFailure) as caught:
        zfs_lzc.lzc_snap([fs + b"/a@t", fs + b"/a@s"])
    assert [type(each) for each in caught.value.errors] == [lzc_exc.SnapshotExists]
    assert not zfs_lzc.lzc_exists(fs + b"/a@t"), "a failed snapshot call must leave none of its snapshots"
    with pytest.raises(lzc_exc.SnapshotFailure) as caught:
        zfs_lzc.lzc_snapshot([fs + b"/missing@s"])
    assert isinstance(caught.value.errors[0], lzc_exc.FilesystemNotFound)


def test_clones_keep_their_snapshot_and_missing_snapshots_are_ignored(fs):
    zfs_lzc.lzc_create(fs + b"/a", props=UNMOUNTED)
    zfs_lzc.lzc_snapshot([fs + b"/a@s"])
    zfs_lzc.lzc_clone(fs + b"/b", fs + b"/a@s", {b"canmount": 2})
    assert ext.get_props(fs + b"/b", "origin", "canmount") == {"origin": f"{fs.decode()}/a@s", "canmount": "noauto"}
    assert ext.snapshots(fs + b"/a") == [fs + b"/a@s"]
    with pytest.raises(lzc_exc.SnapshotDestructionFailure) as caught:
        zfs_lzc.lzc_destroy_snaps([fs + b"/a@s", fs + b"/a@missing"], False)
    assert [type(each) for each in caught.value.errors] == [lzc_exc.SnapshotIsCloned]
    with pytest.raises(lzc_exc.DatasetBusy):  # ZFS answers EBUSY for a filesystem that has snapshots
        zfs_lzc.lzc_destroy(fs + b"/a")
    with pytest.raises(lzc_exc.DatasetNotFound):
        zfs_lzc.lzc_clone(fs + b"/c", fs + b"/a@missing")
    with pytest.raises(lzc_exc.FilesystemExists):
        zfs_lzc.lzc_clone(fs + b"/b", fs + b"/a@s")
    _retry_busy(zfs_lzc.lzc_destroy, fs + b"/b")  # zfs-fuse may call a fresh clone busy for a moment
    zfs_lzc.lzc_destroy_snaps([fs + b"/a@s", fs + b"/a@missing"], False)
    assert ext.snapshots(fs + b"/a") == []


def test_rename_names_the_dataset_in_the_way(fs):
    zfs_lzc.lzc_create(fs + b"/a", props=UNMOUNTED)
    zfs_lzc.lzc_create(fs + b"/b", props=UNMOUNTED)
    with pytest.raises(lzc_exc.FilesystemExists) as caught:
        zfs_lzc.lzc_rename(fs + b"/a", fs + b"/b")
    assert caught.value.name == fs + b"/b"
    with pytest.raises(lzc_exc.FilesystemNotFound) as caught:
        zfs_lzc.lzc_rename(fs + b"/missing", fs + b"/c")
    assert caught.value.name == fs + b"/missing"
    _retry_busy(zfs_lzc.lzc_rename, fs + b"/a", fs + b"/c")
    assert zfs_lzc.lzc_exists(fs + b"/c") and not zfs_lzc.lzc_exists(fs + b"/a")


def test_properties_are_checked_by_zfs_and_names_before_it(fs):
    with pytest.raises(lzc_exc.PropertyInvalid):
        zfs_lzc.lzc_create(fs + b"/a", props={b"quota": b"lots"})
    with pytest.raises(lzc_exc.PropertyInvalid):
        zfs_lzc.lzc_create(fs + b"/a", props={b"nosuchproperty": 1})
    with pytest.raises(lzc_exc.PropertyInvalid):
        zfs_lzc.lzc_create(fs + b"/a", props={b"canmount": 7})
    with pytest.raises(lzc_exc.FilesystemNameInvalid):
        zfs_lzc.lzc_create(fs + b"/a\tb")
    with pytest.raises(lzc_exc.SnapshotNameInvalid):
        zfs_lzc.lzc_snapshot([fs + b"/a"])
    with pytest.raises(TypeError):
        zfs_lzc.lzc_create(fs.decode() + "/a")
    assert not zfs_lzc.lzc_exists(fs + b"/a")
    zfs_lzc.lzc_create(fs + b"/a", props={b"quota": 4 << 20, b"canmount": 0})
    assert ext.get_props(fs + b"/a", "quota", "canmount") == {"quota": str(4 << 20), "canmount": "off"}


def test_a_zfs_failure_reaches_the_user_as_one_line(zfs_fsname, tmp_path):
    driver = ZfsDriver(DriverContext(tmp_path / "zfs", {"zfs.fsname": zfs_fsname}))
    driver.create("base")
    zfs_lzc.lzc_rename(f"{zfs_fsname}/base".encode(), f"{zfs_fsname}/elsewhere".encode())
    try:
        with pytest.raises(NotFound, match="layer base does not exist"):
            driver.get("base")
        with pytest.raises(ZfsError) as caught:
            driver.metadata("base")
        assert str(caught.value).startswith(f"zfs: [Errno 2] Dataset not found: '{zfs_fsname}/base' (cannot open")
    finally:
        zfs_lzc.lzc_rename(f"{zfs_fsname}/elsewhere".encode(), f"{zfs_fsname}/base".encode())
    driver.remove("base")
