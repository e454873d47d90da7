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

While the restarter waits, a marker in the run dir (``restart.pid``: its pid and start time) lets
``ps``/``inspect`` say "Restarting" and lets ``stop``/``rm`` wait for it to go.
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
    cancel_pending(engine, record)


def pending(engine, record) -> int:
    """The pid of the restarter waiting to start this container again, or 0."""
    try:   # a plain path, not pathlib: `ps -a` asks this of every container
        with open(f"{engine.run_root}/containers/{record.id}/{PENDING}", "rb") as handle:
            pid, start = (int(x) for x in handle.read().split())
    except (OSError, ValueError):
        return 0
    return pid if procs.alive(pid, start) else 0


def cancel_pending(engine, record, timeout: float = 60.0) -> None:
    """Mark the container stopped by the user and wait for a restarter to notice it and go (it looks
    at the record every 50 ms while it waits). One that had already begun the start finishes it
    first; the caller then stops what it started. No signal: a signal cannot tell the two apart."""
    store = ContainerStore(engine)
    with contextlib.suppress(PalletError):
        store.update(record.id, stopped_by_user=True)
        record.stopped_by_user = True
    deadline = time.monotonic() + timeout
    waited = False
    while pending(engine, record) and time.monotonic() < deadline:
        waited = True
        time.sleep(0.02)
    if waited:
        # A restarter past its last look started the container, and a start clears the mark: set it
        # again, or the stop that follows would be restarted (the restart tests lost this race).
        with contextlib.suppress(PalletError):
            store.update(record.id, stopped_by_user=True)


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
    """Wait out the back-off (``stop``/``rm`` cancel it through the record), then start again.

    The start is ``pallet system boot --policy-restart ID`` exec'd in this process (so the marker's
    pid stays true): the monitor's code is reached through the CLI, which keeps this module below
    the lifecycle and the monitor (no import circle)."""
    from pallet.kernel import faults
    from pallet.kernel.fsutil import atomic_write

    faults.point("restart.forked")
    store = ContainerStore(engine)
    marker = store.run_dir(record.id) / PENDING

    store.run_dir(record.id).mkdir(parents=True, exist_ok=True)
    atomic_write(marker, f"{os.getpid()} {procs.start_time(os.getpid())}\n".encode(), durable=False)
    deadline = time.monotonic() + delay
    while True:
        try:
            fresh = store.load(record.id)
        except PalletError:
            fresh = None  # removed meanwhile
        if fresh is None or fresh.stopped_by_user or fresh.running:
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
            return
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(left, 0.05))
    os.execve(sys.executable, [sys.executable, "-P", "-m", "pallet.kernel.cli", *cli_globals(engine),
                               "system", "boot", "--policy-restart", record.id], cli_env())


def cli_globals(engine) -> list[str]:
    """The global options that reach this same root, run root, config and storage driver."""
    config = engine.config
    args = ["--root", str(config.root), "--run-root", str(config.run_root)]
    if config.config_path and os.path.exists(config.config_path):
        args += ["--config", str(config.config_path)]
    if config.storage_driver_flag:
        args += ["--storage-driver", config.storage_driver_flag]
    for key, value in config.storage_opt_flags.items():
        args += ["--storage-opt", f"{key}={value}"]
    return args


def cli_env() -> dict:
    """This pallet first on the path (a checkout or site-packages), as the monitor's log pump does."""
    home = os.path.dirname(os.path.dirname(os.path.realpath(sys.modules["pallet"].__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([home, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    return env


def detach_fds(stderr_path=None) -> None:
    """In a forked helper: hold none of the parent's pipes (a CLI waits for their EOF) or sockets."""
    import resource

    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    if stderr_path is not None:
        os.dup2(devnull, 2)
        with contextlib.suppress(OSError):
            os.dup2(os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640), 2)
    os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def status_suffix(engine, record) -> bool:
    """True while a restart is waiting out its back-off (Docker's ``Restarting`` state)."""
    return not record.running and bool(pending(engine, record))
