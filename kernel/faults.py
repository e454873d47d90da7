"""Named fault points: a test makes one command stop, die or fail at an exact place in a mutation.

``PALLET_FAULT=NAME[:ACTION]`` arms the point ``NAME`` in the process (and its children) that
sees the variable; ACTION is

- ``pause`` (the default): write ``$PALLET_FAULT_DIR/NAME.paused``, then block until the test
  opens the FIFO ``$PALLET_FAULT_DIR/NAME.go`` for writing and closes it. A test can so hold a
  command at a point, run another command against it, and let the first go on — races are
  reproduced by order, never by sleeps;
- ``kill``: SIGKILL this process there (what a crash or ``kill -9`` leaves);
- ``die``: exit as the kernel takes a killed process down, slowly: close every descriptor (a pipe's
  reader sees EOF), pause as ``pause`` does while the process still exists, then SIGKILL it;
- ``fail``: raise a :class:`PalletError` there (an error mid-mutation must roll back).

:data:`POINTS` lists every point, so a harness can iterate over them. Unarmed, a point costs
one dictionary lookup.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

from pallet.kernel.errors import PalletError

POINTS = {
    "blob.before-rename": "a blob's bytes are written and verified, not yet renamed into the store",
    "layer.before-record": "a layer is unpacked by the storage driver, its record not yet written",
    "image.before-record": "an image's layers are recorded, its image record and tags not yet written",
    "create.leased": "create holds its image lease, the container record not yet written",
    "create.before-record": "the container's read-write layer is made, its record not yet written",
    "start.prepared": "start has mounted the rootfs, made the netns and bundle; no monitor yet",
    "run.forked": "run -d has forked the monitor and waits for its report (the CLI side)",
    "monitor.started": "the monitor started the container, its report to the CLI not yet written",
    "restart.forked": "a restart policy's restarter is forked, its pending marker not yet written",
    "restart.checked": "a policy restart found the container neither stopped by the user nor running, not yet started",
    "rmi.checked": "rmi has checked that no container uses the image, nothing removed yet",
    "commit.layer-staged": "commit has staged its layer blob outside the store lock, the lock not yet taken",
    "commit.before-publish": "commit has written its layer blob, the image not yet published",
    "save.before-rename": "save -o has written the whole archive beside its target, not yet renamed",
    "exit.in-monitor": "a detached container ended before its monitor became the log pump; output not yet drained",
    "exit.by-engine": "an engine's worker took a detached container's exit from its log pump, not yet recorded",
    "engine.records-kept": "an idle engine parsed its root's container records again, not yet back to accept",
}


def point(name: str) -> None:
    """Act as ``PALLET_FAULT`` says if it names this point; otherwise do nothing."""
    armed = os.environ.get("PALLET_FAULT")
    if not armed:
        return
    target, _, action = armed.partition(":")
    if target != name:
        return
    action = action or "pause"
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "die":
        os.closerange(0, os.sysconf("SC_OPEN_MAX"))
        _pause(name)
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "fail":
        raise PalletError(f"fault injected at {name}")
    if action == "pause":
        _pause(name)
        return
    raise PalletError(f"PALLET_FAULT: unknown action {action!r} (pause, kill, die or fail)")


def _pause(name: str) -> None:
    directory = Path(os.environ.get("PALLET_FAULT_DIR") or ".")
    fifo = directory / f"{name}.go"
    with contextlib.suppress(FileExistsError):
        os.mkfifo(fifo, 0o600)
    marker = directory / f"{name}.paused"
    tmp = directory / f".{name}.paused.{os.getpid()}"
    tmp.write_text(str(os.getpid()))
    os.rename(tmp, marker)
    with open(fifo, "rb") as handle:   # blocks until the test opens the write end
        handle.read()
