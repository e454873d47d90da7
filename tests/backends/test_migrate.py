"""``pallet storage migrate``: images and stopped containers move between drivers intact, resumably, verifiably."""

from __future__ import annotations

import io
import json
import tarfile

import pytest


def rootfs_tar(path, xattr: bool = False) -> None:
    """A small image rootfs with what layers must carry: owners, modes, symlinks, hard links (and an xattr)."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.REGTYPE, data=b"", **attrs):
            info = tarfile.TarInfo(name)
            info.type, info.size, info.mtime = kind, len(data), 1_700_000_000
            info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
            for key, value in attrs.items():
                setattr(info, key, value)
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("app", tarfile.DIRTYPE)
        add("app/config.txt", data=b"setting=1\n", uid=1000, gid=1000)
        add("app/tool", data=b"#!/bin/sh\necho tool\n", mode=0o4755)
        add("app/link", tarfile.SYMTYPE, linkname="config.txt")
        add("app/hard", tarfile.LNKTYPE, linkname="app/config.txt")
        if xattr:
            info = tarfile.TarInfo("app/tagged")
            info.mtime, info.mode = 1_700_000_000, 0o644
            info.pax_headers = {"SCHILY.xattr.user.origin": "pallet-test"}
            tar.addfile(info)


@pytest.fixture
def filled(pallet, btrfs_dir, tmp_path):
    """A root on btrfs whose images and stopped container live on overlay2."""
    pallet.root = btrfs_dir / "root"
    ov = ("--storage-driver", "overlay2")
    pallet(*ov, "image", "build-busybox", check=True)
    rootfs_tar(tmp_path / "app.tar")
    pallet(*ov, "import", str(tmp_path / "app.tar"), "appimage:1", check=True)
    pallet(*ov, "run", "--network", "none", "--name", "maker", "busybox", "sh", "-c", "echo made > /made.txt",
           check=True)
    pallet(*ov, "commit", "maker", "committed:1", check=True)
    pallet(*ov, "rm", "maker", check=True)
    pallet(*ov, "run", "--network", "none", "--name", "keep", "busybox", "sh", "-c",
           "echo kept > /changed.txt && rm /bin/ls && mkdir -m 700 /private", check=True)
    try:
        yield pallet
    finally:
        pallet("rm", "-f", "keep")
        pallet("rm", "-f", "runner")


def assert_everything_intact(pallet, driver: str) -> None:
    status = json.loads(pallet("storage", "status", "--json", check=True).stdout)
    assert status["Driver"] == driver and status["DataPresent"] == [driver], status
    assert "Migration" not in status
    assert sorted(p.name for p in pallet.root.iterdir() if p.name in ("overlay2", "btrfs", "vfs")) == [driver]
    assert pallet("run", "--rm", "--network", "none", "busybox", "echo", "hi", check=True).stdout == "hi\n"
    made = pallet("run", "--rm", "--network", "none", "committed:1", "cat", "/made.txt", check=True)
    assert made.stdout == "made\n"
    changes = pallet("diff", "keep", check=True).stdout.splitlines()
    for line in ("A /changed.txt", "D /bin/ls", "A /private"):
        assert line in changes, changes


def image_files(pallet, tmp_path, image: str = "appimage:1") -> dict[str, tuple]:
    """What the imported image holds, read back through the current driver (``pallet export`` of a container)."""
    pallet("create", "--network", "none", "--name", "runner", image, "/app/tool", check=True)
    out = tmp_path / "runner.tar"
    proc = pallet("export", "-o", str(out), "runner")
    assert proc.returncode == 0, proc.stderr
    pallet("rm", "runner", check=True)
    found = {}
    with tarfile.open(out) as tar:
        for member in tar.getmembers():
            if member.name.startswith("app/"):
                data = tar.extractfile(member).read() if member.isreg() else b""
                found[member.name] = (member.type, member.mode, member.uid, member.gid, member.linkname, data)
    return found


def test_migrate_overlay2_to_btrfs_then_vfs_keeps_images_and_containers(filled, tmp_path):
    pallet = filled
    before = image_files(pallet, tmp_path)
    assert before["app/tool"][1] == 0o4755 and before["app/config.txt"][2:4] == (1000, 1000)
    moved = pallet("storage", "migrate", "--to", "btrfs", timeout=240)
    assert moved.returncode == 0, moved.stderr
    assert "Finished migrating" in moved.stdout and "from overlay2 to btrfs: 4 layers (1 containers" in moved.stdout
    assert moved.stdout.count("moved and verified") == 4
    assert_everything_intact(pallet, "btrfs")
    assert image_files(pallet, tmp_path) == before
    again = pallet("storage", "migrate", "--to", "vfs", timeout=240)
    assert again.returncode == 0, again.stderr
    assert_everything_intact(pallet, "vfs")
    assert image_files(pallet, tmp_path) == before
    assert pallet("storage", "migrate", "--to", "vfs").error_lines == [
        f'Error: {pallet.root} already uses storage driver "vfs"']


def test_a_killed_migration_is_refused_then_resumed(filled):
    pallet = filled
    killed = pallet("storage", "migrate", "--to", "btrfs", env={"PALLET_TEST_MIGRATE_KILL_AFTER": "2"}, timeout=240)
    assert killed.returncode == -9, killed.stderr
    status = json.loads(pallet("storage", "status", "--json", check=True).stdout)
    assert status["Driver"] == "overlay2"
    assert status["Migration"] == {"From": "overlay2", "To": "btrfs", "Phase": "copy", "LayersDone": 2}
    refused = pallet("run", "--rm", "--network", "none", "busybox", "true")
    assert refused.returncode == 125  # run's own failure, as Docker's
    assert refused.error_lines == [
        'Error: a storage migration from "overlay2" to "btrfs" is in progress or was interrupted; '
        'run "pallet storage migrate --to btrfs" to finish it (or "pallet storage migrate --abort")']
    other = pallet("storage", "migrate", "--to", "vfs")
    assert other.returncode == 1 and "finish it with \"pallet storage migrate --to btrfs\"" in other.stderr
    resumed = pallet("storage", "migrate", "--to", "btrfs", timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed and finished migrating" in resumed.stdout
    assert resumed.stdout.count("moved and verified") == 2
    assert_everything_intact(pallet, "btrfs")


def test_migration_refuses_while_a_container_runs(filled):
    pallet = filled
    pallet("--storage-driver", "overlay2", "run", "-d", "--network", "none", "--name", "runner", "busybox",
           "sleep", "60", check=True)
    result = pallet("storage", "migrate", "--to", "vfs")
    assert result.returncode == 1
    assert result.error_lines == ["Error: cannot migrate while containers are running (runner); stop them first"]
    assert not (pallet.root / "vfs").exists()
    assert not (pallet.root / "storage-migration.json").exists()


def test_keep_old_leaves_a_backup_that_selection_ignores(filled):
    pallet = filled
    result = pallet("storage", "migrate", "--to", "vfs", "--keep-old", timeout=240)
    assert result.returncode == 0, result.stderr
    assert "The data of overlay2 was kept as a backup" in result.stdout
    assert (pallet.root / "overlay2").is_dir()
    status = json.loads(pallet("--storage-driver", "vfs", "storage", "status", "--json", check=True).stdout)
    assert status["DataPresent"] == ["vfs"] and status["KeptOld"] == ["overlay2"]
    assert pallet("run", "--rm", "--network", "none", "busybox", "echo", "on vfs", check=True).stdout == "on vfs\n"
    back = pallet("storage", "migrate", "--to", "overlay2", timeout=240)
    assert back.returncode == 0, back.stderr
    assert_everything_intact(pallet, "overlay2")
    assert json.loads(pallet("storage", "status", "--json").stdout)["KeptOld"] == []


def test_a_layer_zfs_cannot_hold_stops_the_migration_and_abort_restores(pallet, btrfs_dir, zfs_fsname, tmp_path):
    pallet.root = btrfs_dir / "root"
    rootfs_tar(tmp_path / "x.tar", xattr=True)
    pallet("--storage-driver", "btrfs", "import", str(tmp_path / "x.tar"), "tagged:1", check=True)
    before = image_files(pallet, tmp_path, "tagged:1")
    assert "app/tagged" in before
    result = pallet("--storage-opt", f"zfs.fsname={zfs_fsname}", "storage", "migrate", "--to", "zfs", timeout=240)
    # zfs-fuse has no xattrs: the moved layer lacks user.origin, and the tree check notices.
    assert result.returncode == 1
    assert "differs after the move" in result.stderr and "nothing was switched or deleted" in result.stderr
    assert json.loads(pallet("storage", "status", "--json").stdout)["Migration"]["To"] == "zfs"
    aborted = pallet("storage", "migrate", "--abort", check=True)
    assert aborted.stdout.endswith(f"Migration aborted; {pallet.root} keeps using btrfs\n")
    assert not (pallet.root / "zfs").exists()
    assert image_files(pallet, tmp_path, "tagged:1") == before
    status = json.loads(pallet("storage", "status", "--json", check=True).stdout)
    assert status["Driver"] == "btrfs" and "Migration" not in status
    # Without the xattr the same move succeeds, and the root then runs on zfs with no option.
    pallet("rmi", "tagged:1", check=True)
    pallet("image", "build-busybox", check=True)
    moved = pallet("--storage-opt", f"zfs.fsname={zfs_fsname}", "storage", "migrate", "--to", "zfs", timeout=240)
    assert moved.returncode == 0, moved.stderr
    assert pallet("run", "--rm", "--network", "none", "busybox", "echo", "on zfs", check=True).stdout == "on zfs\n"
    assert json.loads(pallet("storage", "status", "--json", check=True).stdout)["Driver"] == "zfs"


def test_migrate_usage_errors(pallet):
    assert pallet("storage", "migrate").error_lines == ['Error: missing option "--to DRIVER"']
    unknown = pallet("storage", "migrate", "--to", "nosuchfs")
    assert unknown.returncode == 2 and unknown.error_lines[0].startswith('Error: unknown storage driver "nosuchfs"')
    nothing = pallet("storage", "migrate", "--abort")
    assert nothing.returncode == 1 and nothing.error_lines == ["Error: no storage migration is in progress"]
    empty = pallet("storage", "migrate", "--to", "vfs")
    assert empty.returncode == 1
    assert empty.error_lines == [f"Error: {pallet.root} holds no storage driver data: there is nothing to migrate"]
