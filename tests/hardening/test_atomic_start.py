"""Defects 2 and 3: killing ``run -d`` during start never leaves an unsupervised or half-made container,
and the next start of a container whose start was interrupted works the first time."""

from __future__ import annotations

import json

from tests.containers.conftest import mounts_under

LOOP = "trap 'exit 3' TERM; echo hello; while :; do sleep 0.1; done"


def _inspect(bb, name: str) -> dict:
    return json.loads(bb("inspect", name, check=True).stdout)[0]


def _netns_files(bb) -> list[str]:
    directory = bb.run_root / "netns"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def test_monitor_survives_the_cli_killed_before_its_report(bb, hold, tmp_path):
    run = hold(bb, "monitor.started", "run", "-d", "--name", "orphaned", "busybox", "sh", "-c", LOOP)
    run.wait_paused()
    run.kill()                       # the CLI dies; the monitor (its own session) is paused
    with open(tmp_path / "faults" / "monitor.started.go", "wb"):
        pass                         # its report now meets a closed pipe
    state = _inspect(bb, "orphaned")["State"]
    assert state["Running"] and state["Status"] == "running"
    logs = bb("logs", "orphaned", check=True)
    assert "hello" in logs.stdout    # the log pump runs: output is kept
    bb("stop", "-t", "10", "orphaned", check=True)
    state = _inspect(bb, "orphaned")["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 3)   # recorded by the monitor, not 255


def test_cli_killed_after_prepare_leaves_a_created_container_holding_nothing(bb, hold):
    run = hold(bb, "start.prepared", "run", "-d", "--name", "halfway", "--network", "bridge", "busybox",
               "sh", "-c", LOOP)
    run.wait_paused()
    assert mounts_under(bb.root) and _netns_files(bb)   # prepare made a rootfs mount and a netns
    run.kill()
    listing = bb("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True)
    assert listing.stdout.split() == ["halfway", "Created"]
    assert mounts_under(bb.root) == []
    assert _netns_files(bb) == []
    assert _inspect(bb, "halfway")["NetworkSettings"]["IPAddress"] == ""
    # Defect 3: the first start after the interrupted one works.
    started = bb("start", "halfway")
    assert started.returncode == 0, started.stderr
    assert _inspect(bb, "halfway")["State"]["Running"]


def test_start_over_a_leftover_netns_mount_works_the_first_time(bb, hold):
    bb("create", "--name", "again", "--network", "bridge", "busybox", "sh", "-c", LOOP, check=True)
    start = hold(bb, "start.prepared", "start", "again")
    start.wait_paused()
    start.kill()
    # No command looked at the container in between: its netns file is still a mount point.
    assert _netns_files(bb)
    started = bb("start", "again")
    assert started.returncode == 0, started.stderr
    assert _inspect(bb, "again")["State"]["Running"]
