"""The fault-point harness: kill a command at every named point of a mutation, run the next command,
and ``system check`` finds nothing lost and nothing left; every surviving container starts."""

from __future__ import annotations

import json

import pytest

from pallet.kernel.faults import POINTS
from tests.containers.conftest import mounts_under


def _archive(bb, tmp_path) -> str:
    """busybox saved to an archive and removed, so that loading it writes blobs and unpacks layers."""
    path = tmp_path / "bb.tar"
    bb("save", "-o", str(path), "busybox", check=True)
    bb("rmi", "busybox", check=True)
    return str(path)


def _container(bb, tmp_path) -> str:
    bb("create", "--name", "base", "busybox", "sh", "-c", "echo hi > /f", check=True)
    return "base"


def _output(bb, tmp_path) -> str:
    return str(tmp_path / "out.tar")


# point -> (setup(bb, tmp_path) -> value or None, the command killed there; "{}" is the setup's value)
CASES = {
    "blob.before-rename": (_archive, ["load", "-i", "{}"]),
    "layer.before-record": (_archive, ["load", "-i", "{}"]),
    "image.before-record": (_archive, ["load", "-i", "{}"]),
    "create.leased": (None, ["run", "-d", "busybox", "sleep", "300"]),
    "create.before-record": (None, ["run", "-d", "busybox", "sleep", "300"]),
    "start.prepared": (None, ["run", "-d", "--network", "bridge", "busybox", "sleep", "300"]),
    "run.forked": (None, ["run", "-d", "--network", "bridge", "busybox", "sleep", "300"]),
    "rmi.checked": (None, ["rmi", "busybox"]),
    "commit.layer-staged": (_container, ["commit", "{}", "committed:1"]),
    "commit.before-publish": (_container, ["commit", "{}", "committed:1"]),
    "save.before-rename": (_output, ["save", "-o", "{}", "busybox"]),
}
# Killing the monitor itself (not the CLI) right after the runtime started fails the run on purpose
# (125) and stops the container: tests/hardening/test_unsupervised.py kills there.
# A user's stop while a policy restart is past its last look, and a restarter boot must not fork:
# tests/services/test_restart.py holds there.
# A quick exit recorded by the monitor itself: tests/hardening/test_quick_exit.py holds and kills there.
# An idle engine's parse of the records: tests/fastpath/test_engine.py holds there.
ELSEWHERE = {"monitor.started", "restart.checked", "restart.forked", "exit.by-engine", "exit.in-monitor",
             "engine.records-kept"}


def test_every_point_is_in_the_harness():
    assert set(POINTS) == set(CASES) | ELSEWHERE


@pytest.mark.parametrize("point", sorted(CASES))
def test_kill_at_point_then_next_command_and_check_are_clean(bb, tmp_path, point):
    setup, command = CASES[point]
    value = setup(bb, tmp_path) if setup else None
    args = [a.replace("{}", value) if value else a for a in command]
    killed = bb(*args, env={"PALLET_FAULT": f"{point}:kill"})
    assert killed.returncode == -9, (killed.returncode, killed.stderr)   # it did reach the point
    # The next command: the image is there again (or still), and a container runs on it.
    if value and command[0] == "load":
        bb("load", "-i", value, check=True)
    ran = bb("run", "--rm", "busybox", "sh", "-c", "md5sum /bin/sh >/dev/null && echo ok", timeout=120)
    assert (ran.returncode, ran.stdout) == (0, "ok\n"), ran.stderr
    check = bb("system", "check")
    assert (check.returncode, check.stdout) == (0, "no problems found\n"), check.stdout + check.stderr
    # Every surviving container starts; none holds a mount unless it runs.
    listing = bb("ps", "-a", "-q", "--no-trunc", check=True).stdout.split()
    for cid in listing:
        state = json.loads(bb("inspect", cid, check=True).stdout)[0]["State"]
        if not state["Running"]:
            started = bb("start", cid)
            assert started.returncode == 0, started.stderr
        bb("rm", "-f", cid, check=True)
    assert mounts_under(bb.root) == []
    assert bb("system", "check").returncode == 0
