"""overlay2 specifics the conformance kit does not see: on-disk layout, cross-process refcounts, markers."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

import pytest

from pallet.kernel.drivers import DriverContext
from pallet.kernel.errors import PalletError
from pallet.kernel.conformance.storage import D, F, mounts_under, tar_of
from pallet.plugins.storage.overlay2 import Overlay2Driver
from pallet.plugins.storage.vfs import VfsDriver

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def overlay(scratch):
    driver = Overlay2Driver(DriverContext(scratch / "overlay2"))
    try:
        yield driver
    finally:
        for layer in reversed(driver.layers()):
            driver.remove(layer)
        for point in reversed(mounts_under(str(scratch))):
            subprocess.run(["umount", "-l", point], check=False)


def test_layout_uses_short_links_and_lower_files(overlay):
    overlay.create("base")
    overlay.create("mid", "base")
    overlay.create("top", "mid")
    home = overlay.home
    links = {name: (home / name / "link").read_text() for name in ("base", "mid", "top")}
    assert all(len(link) == 26 for link in links.values())
    assert os.readlink(home / "l" / links["base"]) == "../base/diff"
    assert (home / "top/lower").read_text() == f"l/{links['mid']}:l/{links['base']}"
    assert not (home / "base/lower").exists()
    meta = overlay.metadata("top")
    assert meta["LowerDir"] == f"{home}/mid/diff:{home}/base/diff"
    assert set(meta) == {"UpperDir", "LowerDir", "MergedDir", "WorkDir"}


def test_apply_diff_writes_overlay_whiteouts_into_diff(overlay):
    overlay.apply_diff("base", None, tar_of(D("a"), F("a/x", b"x"), D("o"), F("o/y", b"y")))
    overlay.apply_diff("top", "base", tar_of(D("a"), F("a/.wh.x"), D("o"), F("o/.wh..wh..opq")))
    diff = overlay.home / "top/diff"
    st = os.lstat(diff / "a/x")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(diff / "o", "trusted.overlay.opaque") == b"y"
    names = [line for line in _tar_names(b"".join(overlay.diff("top", "base")))]
    assert names == ["a", "a/.wh.x", "o", "o/.wh..wh..opq"]


def _tar_names(data: bytes) -> list[str]:
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return [member.name.rstrip("/") for member in tar.getmembers()]


def test_reference_count_is_shared_between_processes(overlay):
    overlay.create("base")
    overlay.create("rw", "base")
    merged = str(overlay.get("rw"))
    code = ("from pallet.kernel.drivers import DriverContext; from pallet.plugins.storage.overlay2 import Overlay2Driver; "
            f"d = Overlay2Driver(DriverContext({str(overlay.home)!r})); "
            "print(d.get('rw')); d.put('rw')")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
    assert os.path.ismount(merged), "another process's put() unmounted a layer this process still holds"
    overlay.put("rw")
    assert not os.path.ismount(merged)


def test_stale_count_after_reboot_is_reset(overlay):
    overlay.create("base")
    overlay.create("rw", "base")
    (overlay.home / "rw/mount-count").write_text("3")  # as left by processes that died with the host
    merged = str(overlay.get("rw"))
    assert os.path.ismount(merged)
    assert (overlay.home / "rw/mount-count").read_text() == "1"
    overlay.put("rw")
    assert not os.path.ismount(merged)


def test_remove_unmounts_a_mounted_layer(overlay, scratch):
    overlay.create("base")
    overlay.create("rw", "base")
    overlay.get("rw")
    overlay.remove("rw")
    assert not mounts_under(str(scratch))
    assert os.listdir(overlay.home / "l") == [(overlay.home / "base/link").read_text()]
    assert overlay.layers() == ["base"]


def test_changes_read_from_the_upper_dir(overlay):
    overlay.apply_diff("base", None, tar_of(D("etc"), F("etc/a", b"a"), F("etc/b", b"b")))
    overlay.create_rw("rw", "base")
    root = str(overlay.get("rw"))
    try:
        with open(os.path.join(root, "etc/a"), "w") as handle:
            handle.write("changed")
        os.unlink(os.path.join(root, "etc/b"))
        os.mkdir(os.path.join(root, "new"))
    finally:
        overlay.put("rw")
    assert [(c.kind, c.path) for c in overlay.changes("rw", "base")] == [
        ("C", "/etc"), ("C", "/etc/a"), ("D", "/etc/b"), ("A", "/new")]


@pytest.mark.parametrize("driver_cls", [Overlay2Driver, VfsDriver])
def test_bad_ids_and_options_are_refused(scratch, driver_cls):
    driver = driver_cls(DriverContext(scratch / "home"))
    with pytest.raises(PalletError, match="invalid layer id"):
        driver.create("../escape")
    with pytest.raises(PalletError, match='storage option "size" is not supported'):
        driver.create_rw("rw", None, {"size": "10G"})
    with pytest.raises(PalletError, match="does not exist"):
        driver.create("child", "missing-parent")


def test_changes_list_what_an_opaque_dir_hides(overlay):
    overlay.apply_diff("base", None, tar_of(D("o"), F("o/old1"), F("o/old2"), F("o/kept")))
    overlay.apply_diff("top", "base", tar_of(D("o"), F("o/.wh..wh..opq"), F("o/kept", b"new")))
    assert [(c.kind, c.path) for c in overlay.changes("top", "base")] == [
        ("C", "/o"), ("C", "/o/kept"), ("D", "/o/old1"), ("D", "/o/old2")]


def test_legacy_mount_api_with_short_relative_links(scratch):
    driver = Overlay2Driver(DriverContext(scratch / "overlay2", {"overlay2.mount_api": "legacy"}))
    try:
        parent = None
        for index in range(60):
            driver.apply_diff(f"l{index}", parent, tar_of(D("stack"), F(f"stack/{index}", b"x")))
            parent = f"l{index}"
        root = str(driver.get(parent))
        try:
            assert len(os.listdir(os.path.join(root, "stack"))) == 60
            assert os.path.ismount(root)
        finally:
            driver.put(parent)
        assert not os.path.ismount(root)
    finally:
        for layer in reversed(driver.layers()):
            driver.remove(layer)


@pytest.mark.parametrize("driver_cls", [Overlay2Driver, VfsDriver])
def test_layers_sweeps_what_killed_operations_left(scratch, driver_cls):
    driver = driver_cls(DriverContext(scratch / "home"))
    driver.create("base")
    store = driver.home if driver_cls is Overlay2Driver else driver.home / "dir"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (store / f".tmp-half-{dead.pid}-0000").mkdir()
    (store / f".rm-gone-{dead.pid}-0000").mkdir()
    (store / f".tmp-busy-{os.getpid()}-0000").mkdir()  # a live process is still working on it
    if driver_cls is Overlay2Driver:
        os.symlink("../gone/diff", store / "l" / "DANGLING")
    assert driver.layers() == ["base"]
    assert sorted(name for name in os.listdir(store) if name.startswith(".")) == [f".tmp-busy-{os.getpid()}-0000"]
    if driver_cls is Overlay2Driver:
        assert os.listdir(store / "l") == [(store / "base/link").read_text()]


def test_a_missing_short_link_is_recreated_for_children(overlay):
    overlay.apply_diff("base", None, tar_of(F("file", b"x")))
    os.unlink(overlay.home / "l" / (overlay.home / "base/link").read_text())  # killed before linking
    overlay.create("child", "base")
    root = str(overlay.get("child"))
    try:
        assert os.listdir(root) == ["file"]
    finally:
        overlay.put("child")
