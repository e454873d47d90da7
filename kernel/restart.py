"""Restart policies (``--restart``) with Docker's semantics, kept by the container's own monitor.

pallet has no daemon, so nobody is left to restart a container once its monitor has recorded the
exit. The monitor therefore decides (:func:`after_exit`): if the policy says so, it forks a small
*restarter* that sleeps the back-off and then starts the same container again (its record, rootfs,
volumes and network configuration — what ``pallet start`` does) under a fresh monitor.

Docker's rules, which this follows:

- ``no``: never; ``on-failure[:N]``: a non-zero exit, at most N times (N=0: no limit);
  ``always``/``unless-stopped``: any exit.
- A ``stop`` or ``kill`` by the user is never restarted (the record remembers it: ``stopped_by_user``,
  durable, so ``unless-stopped`` is not started again by ``system boot`` either; ``always`` is).
  A ``kill -s HUP|USR1|USR2|WINCH|CONT`` is a message to the process, not a stop: it does not count.
- Back-off: 100 ms before the first restart, doubled before each next one, at most 1 min; back to
  100 ms once the container had run for 10 s.
- ``RestartCount`` counts the policy's restarts; a start by the user resets it.

While the restarter sleeps, a marker in the run dir (``restart.pid``: its pid and start time) lets
``ps``/``inspect`` say "Restarting" and lets ``stop``/``rm`` cancel it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time

from pallet.kernel import procs
from pallet.kernel.containers import ContainerStore
from pallet.kernel.errors import PalletError

FIRST_DELAY = 0.1
MAX_DELAY = 60.0
RESET_AFTER = 10.0
PENDING = "restart.pid"
# Signals that ask the process to do something (reload, resize, continue), not to stop.
NOT_A_STOP = {signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT}


def policy(record) -> tuple[str, int]:
    spec = record.host_config.get("RestartPolicy") or {}
    return spec.get("Name") or "no", int(spec.get("MaximumRetryCount") or 0)


def next_delay(previous: float, uptime: float) -> float:
    """Docker's back-off: 100 ms, doubled each time, capped at 1 min, reset after 10 s of uptime."""
    if uptime >= RESET_AFTER or previous <= 0:
        return FIRST_DELAY
    return min(previous * 2, MAX_DELAY)


def should_restart(record, exit_code: int) -> bool:
    """What the policy says about this exit (a user's stop and ``--rm`` always win)."""
    if record.host_config.get("AutoRemove") or record.stopped_by_user:
        return False
    if record.restart_forced:  # --health-on-failure restart
        return True
    name, maximum = policy(record)
    if name in ("always", "unless-stopped"):
        return True
    if name == "on-failure":
        return exit_code != 0 and (maximum == 0 or record.restart_count < maximum)
    return False


def note_user_stop(engine, record, sig: int | None = None) -> None:
    """``stop``/``kill`` by the user: remember it (before the signal, so the monitor sees it) and
    cancel a restart that is waiting out its back-off."""
    if sig is not None and sig in NOT_A_STOP:
        return
    store = ContainerStore(engine)
    with contextlib.suppress(PalletError):
        store.update(record.id, stopped_by_user=True)
        record.stopped_by_user = True
    cancel_pending(engine, record)


def pending(engine, record) -> int:
    """The pid of the restarter waiting to start this container again, or 0."""
    try:
        pid, start = (int(x) for x in (ContainerStore(engine).run_dir(record.id) / PENDING).read_text().split())
    except (OSError, ValueError):
        return 0
    return pid if procs.alive(pid, start) else 0


def cancel_pending(engine, record, timeout: float = 30.0) -> None:
    """Stop a waiting restarter; if it was already starting the container, let it finish first
    (the caller then stops what it started)."""
    pid = pending(engine, record)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while pending(engine, record) and time.monotonic() < deadline:
            time.sleep(0.01)
    with contextlib.suppress(FileNotFoundError):
        (ContainerStore(engine).run_dir(record.id) / PENDING).unlink()


def after_exit(engine, record, exit_code: int) -> None:
    """Called by the monitor once the exit is recorded and resources released: restart if due."""
    if not should_restart(record, exit_code):
        return
    store = ContainerStore(engine)
    uptime = max(0.0, (record.finished_at or time.time()) - (record.started_at or 0.0))
    delay = next_delay(record.restart_delay, uptime)
    try:
        record = store.update(record.id, restart_delay=delay)
    except PalletError:
        return  # removed meanwhile
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    code = 0
    try:
        from pallet.kernel.health import detach_fds

        os.setsid()
        detach_fds(str(store.run_dir(record.id) / "monitor.err"))
        _restarter(engine, record, delay)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _restarter(engine, record, delay: float) -> None:
    """Wait out the back-off (``stop``/``rm`` may cancel it with SIGTERM), then start again."""
    store = ContainerStore(engine)
    marker = store.run_dir(record.id) / PENDING
    from pallet.kernel.fsutil import atomic_write

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    store.run_dir(record.id).mkdir(parents=True, exist_ok=True)
    atomic_write(marker, f"{os.getpid()} {procs.start_time(os.getpid())}\n".encode(), durable=False)
    try:
        time.sleep(delay)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # from here on, a canceller waits for us instead
        try:
            fresh = store.load(record.id)
        except PalletError:
            return  # removed meanwhile
        if fresh.stopped_by_user or fresh.running:
            return
        start_again(engine, fresh, count=True)
    finally:
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()


def start_again(engine, record, count: bool) -> None:
    """Start a stopped container in the background as ``pallet start`` does (``count``: a policy
    restart, which ``RestartCount`` counts)."""
    from pallet.kernel import lifecycle, monitor

    store = ContainerStore(engine)
    changes = {"restart_forced": False}
    if count:
        changes["restart_count"] = record.restart_count + 1
    record = store.update(record.id, **changes)
    monitor.spawn(engine, record, lifecycle.prepare(engine, record))


def boot(engine, out=None) -> list[str]:
    """``pallet system boot``: after a reboot, start every ``always`` container and every
    ``unless-stopped`` one the user had not stopped (never-started ones stay created).

    Returns the names that could not be started (each reported on ``out``)."""
    from pallet.kernel import lifecycle

    out = out or sys.stderr
    failed = []
    store = ContainerStore(engine)
    for record in store.all():
        name, _maximum = policy(record)
        wanted = name == "always" or (name == "unless-stopped" and not record.stopped_by_user)
        if not wanted or not record.started_at:
            continue
        try:
            record = lifecycle.refresh(engine, record)
            if record.running or pending(engine, record):
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
    from pallet.kernel import lifecycle

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


def status_suffix(engine, record) -> bool:
    """True while a restart is waiting out its back-off (Docker's ``Restarting`` state)."""
    return not record.running and bool(pending(engine, record))
