"""Defect 6: the container's process starts with every signal at its default, under -d too,
even when pallet itself was started with SIGINT and SIGHUP ignored (``cmd &``, ``nohup``)."""

from __future__ import annotations

import signal
import subprocess
import sys

from tests.conftest import REPO


def _ignoring(bb, *args: str) -> subprocess.CompletedProcess:
    def ignore():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root), *args]
    return subprocess.run(cmd, env=bb.env, cwd=str(REPO), capture_output=True, text=True, timeout=120,
                          preexec_fn=ignore)


def _sig_ign(status: str) -> str:
    return next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:"))


def test_detached_container_has_no_ignored_signal_and_its_trap_fires(bb):
    # PID 1 is grep itself here: what it inherited is exactly what the runtime's init exec'd with.
    status = _ignoring(bb, "run", "-d", "--name", "status", "busybox", "grep", "-E", "SigIgn|SigBlk", "/proc/1/status")
    assert status.returncode == 0, status.stderr
    bb("wait", "status", check=True)
    logs = bb("logs", "status", check=True).stdout
    assert _sig_ign(logs) == "0000000000000000"
    assert "SigBlk:\t0000000000000000" in logs
    started = _ignoring(bb, "run", "-d", "--name", "traps", "busybox", "sh", "-c",
                        "trap 'echo got-int; exit 7' INT; trap 'echo got-hup; exit 8' HUP; echo ready; "
                        "while :; do sleep 0.1; done")
    assert started.returncode == 0, started.stderr
    while "ready" not in bb("logs", "traps", check=True).stdout:   # the traps are set once it printed
        pass
    bb("kill", "-s", "INT", "traps", check=True)
    bb("wait", "traps", check=True)
    assert "got-int" in bb("logs", "traps", check=True).stdout
    assert bb("inspect", "-f", "{{.State.ExitCode}}", "traps", check=True).stdout.strip() == "7"


def test_foreground_container_has_no_ignored_signal(bb):
    result = _ignoring(bb, "run", "--rm", "busybox", "grep", "SigIgn", "/proc/1/status")
    assert result.returncode == 0, result.stderr
    assert _sig_ign(result.stdout) == "0000000000000000"
