"""Fixtures for the hardening tests: a busybox root (``bb``) and commands held at a fault point."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.containers.conftest import bb  # noqa: F401  (the fixture)


class Held:
    """A ``pallet`` command started in the background with ``PALLET_FAULT=POINT:pause`` (or ``:die``)."""

    def __init__(self, pallet, point: str, fault_dir: Path, *args: str, action: str = "pause"):
        self.point, self.dir = point, fault_dir
        cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(pallet.root), "--run-root",
               str(pallet.run_root), *args]
        env = {**pallet.env, "PALLET_FAULT": f"{point}:{action}", "PALLET_FAULT_DIR": str(fault_dir)}
        self.proc = subprocess.Popen(cmd, env=env, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, start_new_session=True)

    def wait_paused(self, limit: float = 60) -> None:
        """Wait until the command reached its point (or fail if it ended before)."""
        marker = self.dir / f"{self.point}.paused"
        deadline = time.monotonic() + limit
        while not marker.exists():
            if self.proc.poll() is not None:
                raise AssertionError(f"ended ({self.proc.returncode}) before {self.point}: {self.proc.stderr.read()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"never reached {self.point}")
            time.sleep(0.02)

    def release(self, limit: float = 120) -> tuple[int, str, str]:
        with open(self.dir / f"{self.point}.go", "wb"):
            pass
        out, err = self.proc.communicate(timeout=limit)
        return self.proc.returncode, out, err

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 9)
        self.proc.wait()


@pytest.fixture
def hold(tmp_path):
    """``hold(pallet, POINT, *args)`` starts a command that pauses at POINT; all are killed afterwards."""
    started: list[Held] = []
    fault_dir = tmp_path / "faults"
    fault_dir.mkdir()

    def start(pallet, point: str, *args: str, action: str = "pause") -> Held:
        held = Held(pallet, point, fault_dir, *args, action=action)
        started.append(held)
        return held

    yield start
    for held in started:
        if held.proc.poll() is None:
            held.kill()
