"""User namespaces end to end through ``pallet run``: remapped root, ID-shifted image layers, opt-out, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import Pallet, teardown_networks

RANGE = 300000  # first subordinate ID of the test's own subuid/subgid files (never /etc/subuid)


def _config(base: Path, subuid_text: str) -> None:
    (base / "subuid").write_text(subuid_text)
    (base / "subgid").write_text(subuid_text)
    (base / "pallet.toml").write_text(f'[security]\nuserns_remap = "default"\nsubuid_file = "{base / "subuid"}"\n'
                                      f'subgid_file = "{base / "subgid"}"\n')


def _unmount_under(base: Path) -> None:
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    for point in sorted((p for p in points if p.startswith(f"{base}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False)


@pytest.fixture
def remapped():
    """A pallet with its root in a fresh 0711 directory under /tmp (pytest's own tmp dirs are 0700,
    which the remapped root could not cross) and a config remapping onto ``pallet:RANGE:65536``."""
    base = Path(tempfile.mkdtemp(prefix=f"pallet-userns-{os.getpid()}-", dir="/tmp"))
    base.chmod(0o711)
    _config(base, f"pallet:{RANGE}:65536\n")
    pallet = Pallet(base / "root", base / "run")
    try:
        pallet("image", "build-busybox", check=True)
        yield pallet
    finally:
        ids = pallet("ps", "-aq").stdout.split()
        if ids:
            pallet("rm", "-f", *ids)
        teardown_networks(pallet)
        _unmount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def _shared_dir(pallet: Pallet, name: str) -> Path:
    path = pallet.root.parent / name
    path.mkdir(mode=0o777)
    path.chmod(0o777)  # the remapped root is "others" on the host
    return path


@pytest.mark.parametrize("runtime", ["pallet", "runc", "crun"])
def test_root_in_container_is_a_subordinate_uid_on_the_host(remapped, runtime):
    if runtime != "pallet" and shutil.which(runtime) is None:
        pytest.skip(f"{runtime} is not installed")
    data = _shared_dir(remapped, f"data-{runtime}")
    result = remapped("run", "--rm", "--runtime", runtime, "-v", f"{data}:/data", "busybox", "sh", "-c",
                      "id -u; touch /data/f; cat /proc/self/uid_map; stat -c %u:%g /bin/busybox /etc /")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(RANGE), "65536"]
    assert lines[2:5] == ["0:0", "0:0", "0:0"]  # the image's files belong to root inside
    st = (data / "f").stat()
    assert (st.st_uid, st.st_gid) == (RANGE, RANGE)
    assert remapped("ps", "-aq").stdout.strip() == ""


def test_layers_are_kept_id_shifted_in_a_per_remap_home(remapped):
    home = remapped.root / f"{RANGE}.{RANGE}"
    busyboxes = [p for p in home.rglob("busybox") if p.is_file() and not p.is_symlink()]
    assert busyboxes, f"no unpacked layer under {home}"
    assert {(p.stat().st_uid, p.stat().st_gid) for p in busyboxes} == {(RANGE, RANGE)}
    assert remapped.root.stat().st_mode & 0o001  # searchable, not listable, by the remapped root


def test_userns_host_opts_out(remapped):
    data = _shared_dir(remapped, "data-host")
    result = remapped("run", "--rm", "--userns", "host", "-v", f"{data}:/data", "busybox", "sh", "-c",
                      "id -u; touch /data/f; cat /proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == "0"
    assert result.stdout.split("\n")[1].split() == ["0", "0", "4294967295"]
    assert (data / "f").stat().st_uid == 0


def test_missing_subordinate_range_is_one_clear_line(remapped):
    _config(remapped.root.parent, "someone-else:100000:65536\n")
    result = remapped("run", "--rm", "busybox", "true")
    assert result.returncode == 125
    assert len(result.error_lines) == 1, result.stderr
    assert result.error_lines[0].startswith("Error: userns_remap:")
    assert "pallet security userns setup" in result.error_lines[0]
    assert remapped("ps", "-aq").stdout.strip() == ""


def test_closed_bind_source_parent_is_named(remapped):
    closed = remapped.root.parent / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    result = remapped("run", "--rm", "-v", f"{closed / 'inner'}:/data", "busybox", "true")
    assert result.returncode == 125
    assert len(result.error_lines) == 1, result.stderr
    assert str(closed) in result.error_lines[0] and "o+x" in result.error_lines[0]
    assert remapped("ps", "-aq").stdout.strip() == ""


def test_start_failure_prints_one_error_and_rm_removes(remapped):
    result = remapped("run", "--rm", "busybox", "/no/such/command")
    assert result.returncode == 127
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith("Error: "), result.stderr
    assert remapped("ps", "-aq").stdout.strip() == ""


def test_commit_and_export_carry_container_ids(remapped):
    """Layers on disk are shifted; what leaves the remapped home (commit, export) is not."""
    name = f"uns-commit-{os.getpid()}"
    made = remapped("run", "--name", name, "busybox", "sh", "-c", "touch /new; mkdir /d; touch /d/x; chown 5:6 /d/x")
    assert made.returncode == 0, made.stderr
    host_file = remapped.root.parent / "copied"
    host_file.write_text("in\n")
    os.chown(host_file, 1234, 1234)
    assert remapped("cp", str(host_file), f"{name}:/copied").returncode == 0  # becomes the container root's
    tag = f"uns-commit-{os.getpid()}:t"
    assert remapped("commit", name, tag).returncode == 0
    archive = remapped.root.parent / "export.tar"
    assert remapped("export", "-o", str(archive), name).returncode == 0
    with tarfile.open(archive) as tar:
        owners = {m.name: (m.uid, m.gid) for m in tar.getmembers()}
    assert owners["new"] == owners["copied"] == owners["bin/busybox"] == (0, 0) and owners["d/x"] == (5, 6)
    remapped("rm", name)
    result = remapped("run", "--rm", tag, "stat", "-c", "%u:%g", "/new", "/d/x", "/copied")
    assert result.stdout.split() == ["0:0", "5:6", "0:0"], result.stderr


def test_volumes_belong_to_the_remapped_root(remapped):
    name = f"uns-vol-{os.getpid()}"
    try:
        for volume in (f"{name}:/data", "/data", f"{name}-etc:/etc"):
            target = volume.rsplit(":", 1)[-1]
            result = remapped("run", "--rm", "-v", volume, "busybox", "sh", "-c",
                              f"touch {target}/x && stat -c %u:%g {target} {target}/x")
            assert result.returncode == 0, (volume, result.stderr)
            assert result.stdout.split() == ["0:0", "0:0"]
        copied = remapped("run", "--rm", "-v", f"{name}-etc:/etc", "busybox", "stat", "-c", "%u", "/etc/passwd")
        assert copied.stdout.strip() == "0"  # the image's content copied into the volume keeps its owner
    finally:
        remapped("volume", "rm", "-f", name, f"{name}-etc")
