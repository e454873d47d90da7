"""Defect 10: read-only binds are recursive, and ``cp`` sees the container's view of its files."""

from __future__ import annotations

import os


def test_readonly_rbind_makes_submounts_readonly(bb):
    # The host's / carries /proc, /sys and /dev/shm as submounts: each must be read-only under /host.
    result = bb("run", "--rm", "-v", "/:/host:ro", "busybox", "sh", "-c",
                "touch /host/dev/shm/pallet-d10 2>&1; echo rc=$?; touch /host/pallet-d10 2>&1; echo rc=$?;"
                " grep -E ' /host(/proc|/sys|/dev/shm) ' /proc/self/mountinfo")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Read-only file system" in lines[0] and lines[1] == "rc=1", result.stdout
    assert "Read-only file system" in lines[2] and lines[3] == "rc=1", result.stdout
    submounts = lines[4:]
    assert len(submounts) >= 3, result.stdout
    for line in submounts:
        assert line.split()[5].split(",")[0] == "ro", line


def _cp(bb, *args: str, data: bytes = b""):
    import subprocess

    from tests.conftest import REPO

    return subprocess.run(bb.command() + ["cp", *args], input=data, capture_output=True, env=bb.env, cwd=str(REPO))


def test_cp_from_container_reads_the_mounted_etc_files_and_volumes(bb, tmp_path):
    import io
    import tarfile

    host_dir = tmp_path / "bound"
    host_dir.mkdir()
    (host_dir / "data.txt").write_text("from the bind\n")
    bb("run", "-d", "--name", "named", "--hostname", "d10-host", "-v", f"{host_dir}:/srv", "busybox",
       "sleep", "60", check=True)
    out = tmp_path / "hostname"
    copied = _cp(bb, "named:/etc/hostname", str(out))
    assert copied.returncode == 0, copied.stderr
    assert out.read_text() == "d10-host\n"
    hosts = tmp_path / "hosts"
    assert _cp(bb, "named:/etc/hosts", str(hosts)).returncode == 0
    assert "localhost" in hosts.read_text()
    into_dir = tmp_path / "dir"
    into_dir.mkdir()
    assert _cp(bb, "named:/srv/data.txt", str(into_dir)).returncode == 0
    assert (into_dir / "data.txt").read_text() == "from the bind\n"
    streamed = _cp(bb, "named:/etc/hostname", "-")
    assert streamed.returncode == 0, streamed.stderr
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        assert tar.getnames() == ["hostname"]
        assert tar.extractfile("hostname").read() == b"d10-host\n"
    bb("stop", "-t", "0", "named", check=True)
    assert _cp(bb, "named:/etc/hostname", str(tmp_path / "after")).returncode == 0
    assert (tmp_path / "after").read_text() == "d10-host\n"


def test_cp_onto_a_symlink_writes_its_target_inside_the_root(bb, tmp_path):
    bb("run", "--name", "links", "busybox", "sh", "-c",
       "echo old > /target && ln -s /target /link && ln -s /etc/pallet-d10-nowhere /out", check=True)
    source = tmp_path / "new.txt"
    source.write_text("new\n")
    done = _cp(bb, str(source), "links:/link")
    assert done.returncode == 0, done.stderr
    back = tmp_path / "back"
    assert _cp(bb, "links:/target", str(back)).returncode == 0
    assert back.read_text() == "new\n"
    link = tmp_path / "link"
    assert _cp(bb, "links:/link", str(link)).returncode == 0
    assert link.is_symlink() and os.readlink(link) == "/target"
    # A dangling absolute link names a path in the container's root, never the host's.
    assert _cp(bb, str(source), "links:/out").returncode == 0
    assert not os.path.exists("/etc/pallet-d10-nowhere")
    made = tmp_path / "made"
    assert _cp(bb, "links:/etc/pallet-d10-nowhere", str(made)).returncode == 0
    assert made.read_text() == "new\n"


def test_cp_dash_streams_a_tar_in_and_out(bb, tmp_path):
    import io
    import tarfile

    bb("create", "--name", "tars", "busybox", "true", check=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("d10/f.txt")
        payload = b"through stdin\n"
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    assert _cp(bb, "-", "tars:/tmp", data=buffer.getvalue()).returncode == 0
    out = _cp(bb, "tars:/tmp/d10", "-")
    assert out.returncode == 0, out.stderr
    with tarfile.open(fileobj=io.BytesIO(out.stdout)) as tar:
        assert set(tar.getnames()) == {"d10", "d10/f.txt"}
        assert tar.extractfile("d10/f.txt").read() == b"through stdin\n"


def test_commit_holds_the_store_lock_only_to_publish(bb, hold):
    # Held after its layer is staged: the store stays usable (tag, prune, rmi), and the staged
    # blob survives the prune that runs meanwhile.
    bb("run", "--name", "changed", "busybox", "sh", "-c", "echo committed > /marker", check=True)
    held = hold(bb, "commit.layer-staged", "commit", "changed", "d10:committed")
    held.wait_paused()
    bb("tag", "busybox", "d10:other", check=True, timeout=60)
    bb("image", "prune", "-f", check=True, timeout=60)
    bb("rmi", "d10:other", check=True, timeout=60)
    code, out, err = held.release()
    assert code == 0, err
    ran = bb("run", "--rm", "d10:committed", "cat", "/marker", check=True)
    assert ran.stdout == "committed\n"
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr



def test_commit_survives_its_base_being_recorded_again_under_another_manifest(bb, hold, tmp_path):
    # Found by the soak test: a load of the image a container was made from (same config, so the
    # same id) records it under the archive's manifest, and the blob sweep drops the old one while
    # a commit of that container has staged its layer and not yet read its base's layers.
    archive = tmp_path / "bb.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    bb("run", "--name", "based", "busybox", "sh", "-c", "echo based > /marker", check=True)
    held = hold(bb, "commit.layer-staged", "commit", "based", "d10:based")
    held.wait_paused()
    bb("load", "-i", str(archive), check=True, timeout=120)
    assert bb("system", "check").returncode == 0   # the old manifest is no orphan: load removed it
    bb("create", "--name", "other", "busybox", "true", check=True)
    bb("commit", "other", "d10:gone", check=True, timeout=60)
    bb("rm", "other", check=True)
    bb("rmi", "d10:gone", check=True, timeout=60)   # a removal sweeps the blobs nothing needs
    code, out, err = held.release()
    assert code == 0, err
    ran = bb("run", "--rm", "d10:based", "cat", "/marker", check=True)
    assert ran.stdout == "based\n"
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr
