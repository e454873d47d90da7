"""``cp`` through bind mounts and volumes, both ways: a path under a bind is its source on the host,
symlinks resolve as the container sees them, and nothing a container controls leads a copy out."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from pallet.kernel.rootpath import ContainerView
from tests.conftest import REPO


def _cp(bb, *args: str):
    return subprocess.run(bb.command() + ["cp", *args], capture_output=True, text=True, env=bb.env, cwd=str(REPO))


@pytest.fixture
def bound(bb, tmp_path):
    """A running container with a host directory bound at /srv; (name, host dir)."""
    host_dir = tmp_path / "bound"
    (host_dir / "sub").mkdir(parents=True)
    (host_dir / "sub" / "inside.txt").write_text("from the host\n")
    bb("run", "-d", "--name", "binder", "-v", f"{host_dir}:/srv", "busybox", "sleep", "300", check=True)
    return "binder", host_dir


def test_cp_into_a_bind_mounted_directory_writes_the_bind_source(bb, bound, tmp_path):
    name, host_dir = bound
    source = tmp_path / "new.txt"
    source.write_text("copied in\n")
    done = _cp(bb, str(source), f"{name}:/srv/sub/")
    assert done.returncode == 0, done.stderr
    assert (host_dir / "sub" / "new.txt").read_text() == "copied in\n"
    seen = bb("exec", name, "cat", "/srv/sub/new.txt", check=True).stdout
    assert seen == "copied in\n"
    tree = tmp_path / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "c.txt").write_text("deep\n")
    os.symlink("b/c.txt", tree / "a" / "rel")
    assert _cp(bb, str(tree), f"{name}:/srv").returncode == 0
    assert (host_dir / "tree" / "a" / "b" / "c.txt").read_text() == "deep\n"
    assert os.readlink(host_dir / "tree" / "a" / "rel") == "b/c.txt"
    assert bb("exec", name, "cat", "/srv/tree/a/rel", check=True).stdout == "deep\n"


def test_cp_out_of_a_bind_mounted_directory_reads_the_bind_source(bb, bound, tmp_path):
    name, host_dir = bound
    out = tmp_path / "out"
    out.mkdir()
    assert _cp(bb, f"{name}:/srv/sub/inside.txt", str(out)).returncode == 0
    assert (out / "inside.txt").read_text() == "from the host\n"
    assert _cp(bb, f"{name}:/srv/sub", str(out / "subcopy")).returncode == 0
    assert (out / "subcopy" / "inside.txt").read_text() == "from the host\n"


def test_symlinks_in_a_bind_resolve_in_the_containers_view_both_ways(bb, bound, tmp_path):
    name, host_dir = bound
    marker = f"pallet-cp-{uuid.uuid4().hex[:8]}"
    bb("exec", name, "sh", "-c", f"echo container-side > /etc/{marker}", check=True)
    os.symlink(f"/etc/{marker}", host_dir / "abs")              # absolute: the container's /etc
    os.symlink("../../../../../../../../etc", host_dir / "up")  # climbs to the container's /, never the host's
    os.symlink("/", host_dir / "root")
    try:
        out = tmp_path / "read"
        assert _cp(bb, "-L", f"{name}:/srv/abs", str(out)).returncode == 0
        assert out.read_text() == "container-side\n"
        ctr_passwd = bb("exec", name, "cat", "/etc/passwd", check=True).stdout
        assert _cp(bb, f"{name}:/srv/up/passwd", str(tmp_path / "passwd")).returncode == 0
        assert (tmp_path / "passwd").read_text() == ctr_passwd
        source = tmp_path / "payload"
        source.write_text("payload\n")
        for dest in (f"/srv/up/{marker}.w", f"/srv/root/etc/{marker}.w"):
            done = _cp(bb, str(source), f"{name}:{dest}")
            assert done.returncode == 0, done.stderr
            assert bb("exec", name, "cat", f"/etc/{marker}.w", check=True).stdout == "payload\n"
            bb("exec", name, "rm", f"/etc/{marker}.w", check=True)
        assert not os.path.exists(f"/etc/{marker}.w") and not os.path.exists(f"/etc/{marker}")
        done = _cp(bb, str(source), f"{name}:/srv/abs")           # a link at the destination is followed
        assert done.returncode == 0, done.stderr
        assert bb("exec", name, "cat", f"/etc/{marker}", check=True).stdout == "payload\n"
        assert os.path.islink(host_dir / "abs") and not os.path.exists(f"/etc/{marker}")
    finally:
        for leftover in (f"/etc/{marker}", f"/etc/{marker}.w"):
            if os.path.lexists(leftover):
                os.unlink(leftover)


def test_a_read_only_bind_refuses_a_copy(bb, tmp_path):
    host_dir = tmp_path / "ro"
    host_dir.mkdir()
    bb("run", "-d", "--name", "ro", "-v", f"{host_dir}:/ro:ro", "busybox", "sleep", "300", check=True)
    source = tmp_path / "f"
    source.write_text("x\n")
    done = _cp(bb, str(source), "ro:/ro/")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == ["Error: mounted volume is marked read-only: /ro"]
    assert list(host_dir.iterdir()) == []


def test_cp_into_and_out_of_a_named_volume_and_a_never_started_container(bb, tmp_path):
    volume = f"cpv-{uuid.uuid4().hex[:8]}"
    bb("volume", "create", volume, check=True)
    try:
        bb("run", "-d", "--name", "vol", "-v", f"{volume}:/data", "busybox", "sleep", "300", check=True)
        mountpoint = json.loads(bb("volume", "inspect", volume, check=True).stdout)[0]["Mountpoint"]
        source = tmp_path / "v.txt"
        source.write_text("into the volume\n")
        assert _cp(bb, str(source), "vol:/data/").returncode == 0
        assert open(os.path.join(mountpoint, "v.txt")).read() == "into the volume\n"
        assert _cp(bb, "vol:/data/v.txt", str(tmp_path / "back.txt")).returncode == 0
        assert (tmp_path / "back.txt").read_text() == "into the volume\n"
        bb("rm", "-f", "vol", check=True)
    finally:
        bb("volume", "rm", "-f", volume)
    host_dir = tmp_path / "later"
    host_dir.mkdir()
    bb("create", "--name", "fresh", "-v", f"{host_dir}:/later", "busybox", "sleep", "300", check=True)
    assert _cp(bb, str(source), "fresh:/later/").returncode == 0
    assert (host_dir / "v.txt").read_text() == "into the volume\n"


def test_a_symlink_swapped_in_after_resolving_still_cannot_lead_out_of_the_mount(tmp_path):
    """The race of CVE-2018-15664: the path is resolved, then the container replaces a directory on it
    with a symlink to /. The open below the mount (openat2 RESOLVE_IN_ROOT) stays inside it."""
    rootfs, source = tmp_path / "rootfs", tmp_path / "source"
    (rootfs / "etc").mkdir(parents=True)
    (source / "dir").mkdir(parents=True)
    view = ContainerView(rootfs, [("/srv", str(source), False)])
    parts = view.resolve("/srv/dir")
    assert view.host(parts) == source / "dir"
    (source / "dir").rmdir()
    os.symlink("/etc", source / "dir")                 # the swap: the host's /etc
    with pytest.raises(FileNotFoundError):
        os.close(view.open([*parts, "passwd"], os.O_RDONLY))   # source/etc/passwd: not there
    (source / "etc").mkdir()
    fd = view.open(parts, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert os.stat(fd).st_ino == os.stat(source / "etc").st_ino   # inside the mount, not the host's /etc
    finally:
        os.close(fd)
