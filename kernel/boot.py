"""Starting containers again: ``pallet system boot`` after a reboot, a restart policy's restart, and
``wait --condition``. Apart from :mod:`pallet.kernel.restart` (which the lifecycle and the monitor
call) because this needs both of them; only the CLI imports it.
"""

from __future__ import annotations

import contextlib
import sys
import time

from pallet.kernel import faults, lifecycle, monitor, restart
from pallet.kernel.containers import ContainerStore
from pallet.kernel.errors import PalletError


def start_again(engine, record, count: bool) -> None:
    """Start a stopped container in the background as ``pallet start`` does (``count``: a policy
    restart, which ``RestartCount`` counts)."""
    store = ContainerStore(engine)
    changes = {"restart_forced": False}
    if count:
        changes["restart_count"] = record.restart_count + 1
    record = store.update(record.id, **changes)
    monitor.spawn(engine, record, lifecycle.prepare(engine, record))


def policy_restart(engine, cid: str) -> None:
    """The restarter's last step (``system boot --policy-restart ID``, exec'd in its process): start
    the container again unless the user stopped or removed it meanwhile; then drop the marker."""
    store = ContainerStore(engine)
    try:
        record = store.load(cid)
        if not record.stopped_by_user and not lifecycle.refresh(engine, record).running:
            faults.point("restart.checked")
            start_again(engine, record, count=True)
            from pallet.kernel import events

            events.container(engine, store.load(cid), "restart")
    finally:
        with contextlib.suppress(FileNotFoundError):
            (store.run_dir(cid) / restart.PENDING).unlink()


def boot(engine, out=None) -> list[str]:
    """``pallet system boot``: after a reboot, start every ``always`` container and every
    ``unless-stopped`` one the user had not stopped (never-started ones stay created).

    Returns the names that could not be started (each reported on ``out``)."""
    out = out or sys.stderr
    failed = []
    store = ContainerStore(engine)
    for record in store.all():
        name, _maximum = restart.policy(record)
        wanted = name == "always" or (name == "unless-stopped" and not record.stopped_by_user)
        if not wanted or not record.started_at:
            continue
        try:
            # Settled without its restart policy: a restarter forked here would start it later or at once,
            # beside this boot, which would then skip it unnamed (CI lost svc-always, then svc-unless).
            record = lifecycle.refresh(engine, record, restart_policy=False)
            if record.running or restart.pending(engine, record):
                continue
            record = store.update(record.id, restart_delay=0.0)
            start_again(engine, record, count=False)
            print(record.name, file=sys.stdout)
        except PalletError as exc:
            print(f"Error: {record.name}: {exc}", file=out)
            failed.append(record.name)
    return failed


def wait_for(engine, record, condition: str, step: float = 0.05) -> int:
    """``wait --condition``: Docker's ``not-running`` (at once unless it runs: a created or restarting
    container does not), ``next-exit`` (the next exit after the call, also one a restart follows at
    once: a new start time tells it) or ``removed``; returns the exit code."""
    store = ContainerStore(engine)
    since = time.time()
    seen_start, last_code = 0.0, record.exit_code
    while True:
        try:
            record = lifecycle.refresh(engine, store.load(record.id))
        except PalletError:
            return last_code  # removed: the last code seen (a --rm container's is published before)
        if not record.running:
            last_code = record.exit_code
        if record.running:
            if condition == "next-exit" and seen_start and record.started_at != seen_start:
                return record.exit_code  # exited and restarted between two looks
            seen_start = record.started_at
        elif condition == "not-running":
            return record.exit_code
        elif condition == "next-exit" and record.status == "exited" and record.finished_at >= since:
            return record.exit_code
        time.sleep(step)
