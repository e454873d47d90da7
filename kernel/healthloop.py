"""The idle half of a container's health check: wait out each interval, then probe once.

Like :mod:`pallet.kernel.logpump`, a bare interpreter (``python -I -S``, stdlib only) so that what
sits beside a long-running container stays small: a forked CLI would hold ~17 MB of its own once the
monitor has become the log pump. It waits on a pidfd of the container's process (so it ends the
moment the container does) and runs each probe as ``pallet healthcheck run ID``, which records the
result and acts on ``--health-on-failure``; between probes it holds no pallet code at all.
"""

import json
import os
import select
import time


def _status(state_path):
    try:
        with open(state_path) as handle:
            return json.load(handle).get("Status", "starting")
    except (OSError, ValueError):
        return "starting"


def main(argv):
    """``healthloop.py HOME PID STATE INTERVAL START_INTERVAL START_PERIOD STARTED_AT COMMAND…``
    (seconds; COMMAND is the ``pallet healthcheck run`` line, run with HOME first on PYTHONPATH)."""
    home, pid, state_path = argv[1], int(argv[2]), argv[3]
    interval, start_interval, start_period, started_at = (float(x) for x in argv[4:8])
    command = argv[8:]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([home] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    while True:
        starting = _status(state_path) == "starting" and time.time() - started_at < start_period
        if poller.poll((start_interval if starting else interval) * 1000):
            return  # the container exited
        child = os.fork()
        if child == 0:
            try:
                os.execve(command[0], command, env)
            finally:
                os._exit(127)
        os.waitpid(child, 0)


if __name__ == "__main__":
    import sys

    try:
        main(sys.argv)
    finally:
        os._exit(0)
