"""A container whose monitor is killed after the runtime started it: nobody would keep its log or
record its exit. The next command (or ``system check --repair``) stops it, records the exit and
releases what its start made; a restart policy brings it back with a new monitor."""

from __future__ import annotations

import json
import os
import signal
import time

from tests.containers.conftest import mounts_under

LOOP = "trap 'exit 3' TERM; echo hello; while :; do sleep 0.1; done"


def _inspect(bb, name: str) -> dict:
    return json.loads(bb("inspect", name, check=True).stdout)[0]


def _record(bb, name: str) -> dict:
    cid = _inspect(bb, name)["Id"]
    return json.loads((bb.root / "containers" / cid / "container.json").read_text())


def _netns_files(bb) -> list[str]:
    directory = bb.run_root / "netns"
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _kill_monitor(bb, name: str) -> int:
    """SIGKILL the container's monitor (its log pump by then); return the container's pid."""
    record = _record(bb, name)
    os.kill(record["monitor_pid"], signal.SIGKILL)
    while os.path.exists(f"/proc/{record['monitor_pid']}/stat") and \
            open(f"/proc/{record['monitor_pid']}/stat").read().split(")")[-1].split()[0] not in ("Z", "X"):
        time.sleep(0.01)
    return record["pid"]


def _assert_stopped_and_released(bb, name: str, pid: int) -> None:
    state = _inspect(bb, name)["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137), state
    assert "monitor died" in state["Error"]
    assert not os.path.exists(f"/proc/{pid}/cmdline") or open(f"/proc/{pid}/cmdline").read() == ""
    assert mounts_under(bb.root) == []
    assert _netns_files(bb) == []


def _assert_starts_supervised(bb, name: str) -> None:
    started = bb("start", name)
    assert started.returncode == 0, started.stderr
    state = _inspect(bb, name)["State"]
    assert state["Running"] and state["Error"] == ""
    bb("stop", "-t", "10", name, check=True)
    state = _inspect(bb, name)["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 3)   # its new monitor recorded the exit
    assert "hello" in bb("logs", name, check=True).stdout


def test_monitor_killed_right_after_the_runtime_started_fails_run_and_stops_the_container(bb):
    run = bb("run", "-d", "--name", "lost", "--network", "bridge", "busybox", "sh", "-c", LOOP,
             env={"PALLET_FAULT": "monitor.started:kill"})
    assert run.returncode == 125, (run.returncode, run.stderr)
    assert run.error_lines == ["Error: the container monitor died after starting the container; "
                               "the container was stopped"], run.stderr
    pid = _record(bb, "lost")["pid"]
    _assert_stopped_and_released(bb, "lost", pid)
    assert bb("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout.startswith("lost Exited (137)")
    _assert_starts_supervised(bb, "lost")


def test_run_waits_for_a_monitor_that_closed_its_pipe_but_is_not_yet_gone(bb, hold):
    """A killed process's files close before it is a zombie: run saw EOF from a monitor that still
    looked alive, and said it never started the container (a flake under load)."""
    held = hold(bb, "monitor.started", "run", "-d", "--name", "slow", "busybox", "sh", "-c", LOOP, action="die")
    held.wait_paused()      # the monitor's descriptors are closed (run read EOF); the monitor still exists
    code, _, err = held.release()
    assert code == 125, err
    assert err.strip().splitlines() == ["Error: the container monitor died after starting the container; "
                                        "the container was stopped"], err
    _assert_stopped_and_released(bb, "slow", _record(bb, "slow")["pid"])


def test_the_next_command_stops_a_running_container_whose_monitor_was_killed(bb):
    bb("run", "-d", "--name", "orphan", "--network", "bridge", "busybox", "sh", "-c", LOOP, check=True)
    pid = _kill_monitor(bb, "orphan")
    assert os.path.exists(f"/proc/{pid}")    # the container itself still runs, unsupervised
    listing = bb("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout
    assert listing.startswith("orphan Exited (137)"), listing
    _assert_stopped_and_released(bb, "orphan", pid)
    _assert_starts_supervised(bb, "orphan")


def test_system_check_reports_an_unsupervised_container_and_repair_settles_it(bb):
    bb("run", "-d", "--name", "orphan", "busybox", "sh", "-c", LOOP, check=True)
    cid = _inspect(bb, "orphan")["Id"]
    pid = _kill_monitor(bb, "orphan")
    check = bb("system", "check")
    assert check.returncode == 1
    assert f"container\t{cid}\trunning, but its monitor is gone (unsupervised)" in check.stdout.splitlines()
    assert os.path.exists(f"/proc/{pid}")    # check alone changes nothing
    repaired = bb("system", "check", "--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert f"settled container {cid}" in repaired.stdout and "exit code 137 recorded" in repaired.stdout
    _assert_stopped_and_released(bb, "orphan", pid)


def test_a_restart_policy_brings_an_unsupervised_container_back_with_a_new_monitor(bb):
    bb("run", "-d", "--name", "always", "--restart", "always", "busybox", "sh", "-c", LOOP, check=True)
    first = _record(bb, "always")
    _kill_monitor(bb, "always")
    bb("ps", "-a", check=True)               # the next command settles it, and the policy restarts it
    deadline = time.monotonic() + 60
    while True:
        record = _record(bb, "always")
        if record["status"] == "running" and record["monitor_pid"] not in (0, first["monitor_pid"]):
            break
        assert time.monotonic() < deadline, record
        time.sleep(0.05)
    assert os.path.exists(f"/proc/{record['monitor_pid']}")
    assert _inspect(bb, "always")["RestartCount"] == 1
    bb("rm", "-f", "always", check=True)
