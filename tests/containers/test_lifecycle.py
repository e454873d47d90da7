"""Detached containers: logs, exec, stop/kill/restart, pause, wait, and what is left after rm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time

from tests.conftest import REPO
from tests.containers.conftest import cgroup_dirs, container_ids, mounts_under, record

TICKER = "trap 'echo got-term; exit 3' TERM; i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"


def test_detached_logs_exec_stop_rm_leave_nothing_behind(bb):
    # On the (per-test) bridge, so that there is a network sandbox to clean up.
    cid = bb("run", "-d", "--name", "tick", "--network", "bridge", "busybox", "sh", "-c", TICKER,
             check=True).stdout.strip()
    assert len(cid) == 64
    assert os.listdir(bb.run_root / "netns") == [cid]
    assert any(m.endswith(f"/netns/{cid}") for m in mounts_under(bb.run_root))
    follow = subprocess.Popen(bb.command("logs", "-f", "tick"), stdout=subprocess.PIPE, text=True,
                              cwd=str(REPO), env=bb.env)
    exec_result = bb("exec", "-e", "X=1", "-w", "/tmp", "tick", "sh", "-c", "echo $X $(pwd) $(hostname)")
    assert exec_result.stdout == f"1 /tmp {cid[:12]}\n"
    assert bb("exec", "tick", "sh", "-c", "exit 9").returncode == 9
    assert bb("exec", "tick", "nosuchcmd").returncode == 127
    time.sleep(0.3)
    stop = bb("stop", "tick")
    assert (stop.returncode, stop.stdout) == (0, "tick\n")
    out, _ = follow.communicate(timeout=30)
    assert follow.returncode == 0
    lines = out.splitlines()
    assert lines[0] == "tick 0" and lines[-1] == "got-term" and len(lines) > 3
    info = record(bb, "tick")
    assert info["State"]["Status"] == "exited" and info["State"]["ExitCode"] == 3
    log_path = info["LogPath"]
    entry = json.loads(open(log_path).readline())
    assert entry["log"] == "tick 0\n" and entry["stream"] == "stdout" and entry["time"].endswith("Z")
    assert bb("logs", "--tail", "1", "tick").stdout == "got-term\n"
    stamped = bb("logs", "-t", "--tail", "1", "tick").stdout
    assert stamped.endswith(" got-term\n") and stamped[:4].isdigit()
    assert bb("rm", "tick").returncode == 0
    assert mounts_under(bb.root.parent) == []
    assert cgroup_dirs(cid) == []
    netns = bb.run_root / "netns"
    assert not netns.exists() or os.listdir(netns) == []
    assert not (bb.root / "containers" / cid).exists()


def test_kill_sends_the_signal_and_wait_prints_the_exit_code(bb):
    bb("run", "-d", "--name", "k", "busybox", "sh", "-c", "trap 'exit 7' USR1; while true; do sleep 0.1; done",
       check=True)
    assert bb("kill", "-s", "USR1", "k").returncode == 0
    assert bb("wait", "k").stdout == "7\n"
    assert bb("kill", "k").returncode == 1  # not running any more
    bb("start", "k", check=True)
    assert bb("kill", "k").returncode == 0
    assert bb("wait", "k").stdout == "137\n"
    assert record(bb, "k")["State"]["ExitCode"] == 137


def test_pause_unpause_uses_the_freezer(bb):
    bb("run", "-d", "--name", "p", "busybox", "sleep", "100", check=True)
    cid = record(bb, "p")["Id"]
    assert bb("pause", "p").returncode == 0
    assert record(bb, "p")["State"]["Paused"] is True
    assert open(f"/sys/fs/cgroup/freezer/pallet/{cid}/freezer.state").read().strip() == "FROZEN"
    assert "(Paused)" in bb("ps", "--format", "{{.Status}}").stdout
    assert bb("unpause", "p").returncode == 0
    assert open(f"/sys/fs/cgroup/freezer/pallet/{cid}/freezer.state").read().strip() == "THAWED"
    assert bb("rm", "-f", "p").returncode == 0


def test_restart_start_and_rename(bb):
    bb("run", "-d", "--name", "r", "busybox", "sh", "-c", "echo started; sleep 100", check=True)
    first = record(bb, "r")["State"]["Pid"]
    assert bb("restart", "-t", "0", "r").returncode == 0
    second = record(bb, "r")["State"]
    assert second["Running"] and second["Pid"] != first
    assert bb("rename", "r", "r2").returncode == 0
    assert record(bb, "r2")["Name"] == "/r2"
    bb("stop", "-t", "0", "r2", check=True)
    assert bb("start", "r2").returncode == 0
    assert record(bb, "r2")["State"]["Running"]
    # `start` returns once the process runs; its first line reaches the log a moment later (the monitor
    # hands the output to the log pump), as with Docker.
    deadline = time.monotonic() + 30
    while (logs := bb("logs", "r2").stdout).count("started") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logs == "started\nstarted\nstarted\n"
    bb("rm", "-f", "r2", check=True)


def test_foreground_run_without_rm_keeps_logs(bb):
    result = bb("run", "--name", "fg", "busybox", "sh", "-c", "echo out; echo err >&2")
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert bb("logs", "fg").stdout == "out\n"
    assert bb("logs", "fg").stderr == "err\n"
    assert bb("start", "-a", "fg").stdout == "out\n"


def test_ps_shows_running_by_default_and_all_with_a(bb):
    bb("run", "-d", "--name", "up", "busybox", "sleep", "100", check=True)
    bb("run", "--name", "down", "busybox", "true", check=True)
    table = bb("ps").stdout.splitlines()
    assert table[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert len(table) == 2 and table[1].endswith("up") and "Up " in table[1]
    names = bb("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert sorted(names) == ["down", "up"]
    assert bb("ps", "-a", "--filter", "status=exited", "-q").stdout.strip() == record(bb, "down")["Id"][:12]
    assert len(bb("ps", "-q", "--no-trunc").stdout.strip()) == 64
    top = bb("top", "up").stdout.splitlines()
    assert "PID" in top[0] and any("sleep 100" in line for line in top[1:])
    stats = bb("stats", "--no-stream", "up").stdout.splitlines()
    assert stats[0].startswith("CONTAINER ID") and stats[1].split()[1] == "up"


def test_cp_both_ways_and_symlink_escape_stays_inside(bb, tmp_path):
    bb("run", "--name", "fs", "busybox", "sh", "-c",
       "mkdir -p /d && echo inside > /d/f && ln -s /etc/passwd /d/abs && ln -s ../../../../../../etc/shadow /d/rel",
       check=True)
    out = tmp_path / "out"
    out.mkdir()
    assert bb("cp", "fs:/d/f", str(out)).returncode == 0
    assert (out / "f").read_text() == "inside\n"
    host_file = tmp_path / "h.txt"
    host_file.write_text("from host\n")
    assert bb("cp", str(host_file), "fs:/d/").returncode == 0
    # The relative link climbs out of the rootfs on the host, but resolves inside the container.
    assert bb("cp", "-L", "fs:/d/rel", str(out / "shadow")).returncode == 1
    assert bb("cp", "-L", "fs:/d/abs", str(out / "passwd")).returncode == 0
    assert "root:x:0:0" in (out / "passwd").read_text()
    # Copying onto a symlink that points at a host path writes inside the container.
    assert bb("cp", str(host_file), "fs:/d/abs").returncode == 0
    assert "from host" not in open("/etc/passwd").read()
    diff = bb("diff", "fs").stdout.splitlines()
    assert "A /d" in diff and "A /d/h.txt" in diff
    tar_path = tmp_path / "fs.tar"
    assert bb("export", "-o", str(tar_path), "fs").returncode == 0
    with tarfile.open(tar_path) as tar:
        assert tar.extractfile("d/h.txt").read() == b"from host\n"


def test_commit_makes_an_image_with_the_changes(bb):
    bb("run", "--name", "c", "busybox", "sh", "-c", "echo committed > /marker", check=True)
    result = bb("commit", "-c", "CMD [\"cat\", \"/marker\"]", "c", "marked:v1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("sha256:")
    assert bb("run", "--rm", "marked:v1").stdout == "committed\n"


def test_prune_removes_stopped_containers_only(bb):
    bb("run", "-d", "--name", "keep", "busybox", "sleep", "100", check=True)
    bb("create", "--name", "gone1", "busybox", "true", check=True)
    bb("run", "--name", "gone2", "busybox", "true", check=True)
    result = bb("container", "prune", "-f")
    assert result.returncode == 0 and "Deleted Containers:" in result.stdout
    assert bb("ps", "-a", "--format", "{{.Names}}").stdout == "keep\n"
    assert len(container_ids(bb.root)) == 1
