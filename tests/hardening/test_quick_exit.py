"""A detached container that ends within its monitor's first 50 ms (``true``, ``echo``, a failing
command) has its output drained and its exit recorded by the monitor itself, which still has pallet
loaded, instead of by the light log pump after its interpreter started."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import REPO
from tests.containers.conftest import mounts_under


def _record(bb, cid: str) -> dict:
    return json.loads((bb.root / "containers" / cid / "container.json").read_text())


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as handle:
        return handle.read().replace(b"\0", b" ").decode()


def _paused_at(fault_dir, point: str) -> int:
    """The pid paused at ``point`` (the CLI of ``run -d`` returned before its monitor got there)."""
    marker = fault_dir / f"{point}.paused"
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, f"never reached {point}"
        time.sleep(0.02)
    return int(marker.read_text())


def test_a_quick_exit_is_drained_and_recorded_by_the_monitor_not_the_log_pump(bb, tmp_path):
    faults = tmp_path / "faults"
    faults.mkdir()
    cid = bb("run", "-d", "--name", "quick", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=True,
             env={"PALLET_FAULT": "exit.in-monitor:pause", "PALLET_FAULT_DIR": str(faults)}).stdout.strip()
    monitor = _paused_at(faults, "exit.in-monitor")
    try:
        assert "logpump" not in _cmdline(monitor)           # still the forked CLI, pallet loaded
        record = _record(bb, cid)
        assert (record["status"], record["monitor_pid"]) == ("running", monitor), record
    finally:
        with open(faults / "exit.in-monitor.go", "wb"):
            pass
    assert bb("wait", "quick", check=True).stdout == "3\n"
    record = _record(bb, cid)
    assert (record["status"], record["exit_code"], record["monitor_pid"]) == ("exited", 3, 0), record
    logs = bb("logs", "quick", check=True)
    assert (logs.stdout, logs.stderr) == ("out\n", "err\n")
    assert mounts_under(bb.root) == []


def test_a_monitor_killed_before_draining_a_quick_exit_is_settled_by_the_next_command(bb):
    run = bb("run", "-d", "--name", "lost", "busybox", "sh", "-c", "echo gone; exit 3",
             env={"PALLET_FAULT": "exit.in-monitor:kill"})
    assert run.returncode == 0, run.stderr        # the start was reported before the monitor was killed
    listing = bb("ps", "-a", "--format", "{{.Names}} {{.Status}}", check=True).stdout
    assert listing.startswith("lost Exited ("), listing
    assert mounts_under(bb.root) == []
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr
    started = bb("start", "lost")
    assert started.returncode == 0, started.stderr
    assert bb("wait", "lost", check=True).stdout == "3\n"


def test_with_the_window_off_the_log_pump_records_a_quick_exit(bb):
    cid = bb("run", "-d", "busybox", "sh", "-c", "echo late; exit 6", check=True,
             env={"PALLET_QUICK_EXIT_MS": "0", "PALLET_FAULT": "exit.in-monitor:kill"}).stdout.strip()
    assert bb("wait", cid, check=True).stdout == "6\n"       # the fault point was never reached
    assert bb("logs", cid, check=True).stdout == "late\n"
    assert _record(bb, cid)["status"] == "exited"


def test_between_the_exit_and_its_code_the_container_is_still_running_not_exited_0(bb, tmp_path):
    """The container has ended (a zombie, not yet reaped) and its monitor, held here, has not published the
    code: commands must not report "exited 0" (a running record's code), and a ``wait`` started in this
    window prints the real code. CI caught ``wait`` printing 0 for ``exit 7`` in that window, under load."""
    import subprocess

    faults = tmp_path / "faults"
    faults.mkdir()
    bb("run", "-d", "--name", "window", "busybox", "sh", "-c", "exit 3", check=True,
       env={"PALLET_FAULT": "exit.in-monitor:pause", "PALLET_FAULT_DIR": str(faults)})
    _paused_at(faults, "exit.in-monitor")
    waiter = None
    try:
        state = bb("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "window", check=True).stdout
        assert state == "running 0\n", state
        assert bb("ps", "-a", "--format", "{{.Status}}", check=True).stdout.startswith("Up "), "not Up"
        waiter = subprocess.Popen(bb.command("wait", "window"), cwd=str(REPO), env=bb.env, stdout=subprocess.PIPE,
                                  text=True)
        # a stop in this window finds a "running" container whose process is gone: it waits for the record,
        # not "is not running" (CI: the restart back-off test's stop hit this window, exit 1)
        stopper = subprocess.Popen(bb.command("stop", "window"), cwd=str(REPO), env=bb.env, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        with pytest.raises(subprocess.TimeoutExpired):   # it blocks (it printed "0" at once before)
            waiter.wait(timeout=3)
        assert stopper.poll() is None, stopper.communicate()
    finally:
        with open(faults / "exit.in-monitor.go", "wb"):
            pass
    out, _ = waiter.communicate(timeout=60)
    assert (waiter.returncode, out) == (0, "3\n")
    stopped, errors = stopper.communicate(timeout=60)
    assert (stopper.returncode, stopped, errors) == (0, "window\n", "")
