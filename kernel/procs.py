"""Process facts from /proc and the few process-control calls the lifecycle needs (subreaper, pidfd, waits)."""

from __future__ import annotations

import os


def pid_exists(pid: int) -> bool:
    """Whether a process ``pid`` exists (one we may not signal counts); no check of which process it is."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int) -> int:
    """Field 22 of /proc/PID/stat (ticks since boot), or 0 if the process is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return 0
    fields = data[data.rfind(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return 0
    return int(fields[19])


def alive(pid: int, started: int) -> bool:
    """True if ``pid`` runs and is the same process that started at ``started`` (pids are reused)."""
    if pid <= 0:
        return False
    now = start_time(pid)
    return now != 0 and (started == 0 or now == started)


def wait_gone(pid: int, timeout: float) -> None:
    """Block until ``pid`` exits or ``timeout`` seconds pass (a pidfd: any process, not only a child).
    The caller checks again afterwards, so a pid reused meanwhile only shortens the wait."""
    import select

    try:
        pidfd = os.pidfd_open(pid)
    except OSError:   # gone already
        return
    try:
        select.select([pidfd], [], [], max(0.0, timeout))
    finally:
        os.close(pidfd)


def set_subreaper() -> None:
    """Become the reaper of orphaned descendants, so a runtime that forks away still hands us the exit status."""
    from pallet.kernel import linux

    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)


def exit_code_from_status(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def wait_for(pid: int) -> int:
    """Reap ``pid`` (our child or orphan), reaping other orphans on the way; return Docker's exit code."""
    while True:
        try:
            got, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        except InterruptedError:
            continue
        if got == pid:
            reap_orphans()
            return exit_code_from_status(status)


def reap_orphans() -> None:
    while True:
        try:
            got, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if got == 0:
            return
