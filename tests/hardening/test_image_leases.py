"""Defect 1: ``rmi`` racing ``run`` must never delete a layer a container is being created on.

The race is reproduced by order, not timing: one command is held at a named fault point
(kernel/faults.py) while the other runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO
from tests.containers.conftest import container_ids


def _state(bb, name: str) -> dict:
    return json.loads(bb("inspect", name, check=True).stdout)[0]["State"]


def test_rmi_while_a_container_is_being_created_is_refused_and_the_container_runs(bb, hold):
    run = hold(bb, "create.leased", "run", "-d", "--pull", "never", "--name", "leased", "busybox", "sleep", "300")
    run.wait_paused()
    rmi = bb("rmi", "busybox")
    assert rmi.returncode == 1
    assert rmi.error_lines == [rmi.error_lines[0]] and "being used by container" in rmi.stderr
    assert "being created" in rmi.stderr
    forced = bb("rmi", "-f", "busybox")
    assert forced.returncode == 1 and "cannot be forced" in forced.stderr
    code, _out, err = run.release()
    assert code == 0, err
    assert _state(bb, "leased")["Running"]
    # The layers are all there: the container starts again after a stop.
    bb("stop", "-t", "0", "leased", check=True)
    bb("start", "leased", check=True)
    assert _state(bb, "leased")["Running"]
    assert "busybox:latest" in bb("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout


def test_run_after_rmi_decided_finds_no_image_and_creates_nothing(bb, hold):
    rmi = hold(bb, "rmi.checked", "rmi", "busybox")
    rmi.wait_paused()
    # Started while rmi holds the store lock between its check and its removal.
    run = subprocess.Popen([sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root",
                            str(bb.run_root), "run", "-d", "--pull", "never", "busybox", "sleep", "300"],
                           env=bb.env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code, out, err = rmi.release()
    assert code == 0, err
    assert "Deleted: sha256:" in out
    _out, run_err = run.communicate(timeout=120)
    assert run.returncode == 125
    assert run_err.strip().splitlines() == ["Error: No such image: busybox"]
    assert container_ids(bb.root) == []


def test_lease_of_a_killed_create_pins_nothing(bb, hold):
    run = hold(bb, "create.leased", "run", "-d", "--pull", "never", "busybox", "true")
    run.wait_paused()
    run.kill()
    assert list((bb.root / "images" / "leases").iterdir())   # the dead process's lease is still on disk
    rmi = bb("rmi", "busybox")
    assert rmi.returncode == 0, rmi.stderr
    assert list((bb.root / "images" / "leases").iterdir()) == []
    assert container_ids(bb.root) == []
