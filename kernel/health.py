"""Health checks: the image's ``HEALTHCHECK`` or ``--health-*``, probed inside the container.

The container's monitor forks a *prober* (:func:`spawn_prober`) right after the start: the bare
:mod:`pallet.kernel.healthloop`, which sleeps the interval (the start interval during the start
period) on a pidfd of the container's process, so it ends the moment the container does, and then runs
``pallet healthcheck run``. A probe runs as ``exec`` does: the bundle's process
(user, env, cwd, capabilities) with the probe's arguments, in the container's namespaces. State goes
to ``health.json`` beside the record (so ``inspect`` still shows it after the exit, as Docker's does):
``Status`` starting|healthy|unhealthy, ``FailingStreak`` and the last 5 results with their output.

Docker's rules: a probe passes with exit 0; exceeding the timeout is a failure (exit -1); failures
during the start period do not count, a pass there ends it; ``Retries`` consecutive failures make the
container unhealthy. On that transition ``--health-on-failure`` (podman's flag; what moby#28400 asks)
acts: ``none``, ``kill`` (SIGKILL; the restart policy then applies as to any exit), ``stop`` (as
``pallet stop``: never restarted) or ``restart`` (a stop, then a restart whatever the policy, through
the restart policy's back-off).

Beside Docker's ``CMD``/``CMD-SHELL`` tests, two of pallet's own run from *outside* the container but in
its network, as the kubelet runs Kubernetes' ``httpGet`` and ``tcpSocket`` probes (``kube play`` makes
them): ``["HTTP-GET", URL, "Name: value"…]`` passes on a status 200-399, ``["TCP-SOCKET", HOST, PORT]``
when a connection opens. A forked child of the prober enters the container's network namespace
(``setns`` on ``/proc/PID/ns/net``) and speaks the protocol itself, so the image needs no wget or nc
and the probe sees what a peer in the pod sees (``localhost`` is the pod's).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from pallet.kernel import procs
from pallet.kernel.containers import ContainerStore
from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write_json, locked

STATE = "health.json"
DEFAULTS = {"Interval": 30.0, "Timeout": 30.0, "StartPeriod": 0.0, "StartInterval": 5.0, "Retries": 3}
KEEP_RESULTS = 5
MAX_OUTPUT = 4096  # Docker keeps this much of a probe's output
ACTIONS = ("none", "kill", "restart", "stop")


def check_config(record) -> dict | None:
    """The effective check in seconds (Docker's defaults filled in), or None if there is none."""
    config = record.config.get("Healthcheck") or {}
    test = config.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    effective = {"Test": test}
    for key, default in DEFAULTS.items():
        value = config.get(key) or 0
        effective[key] = (value / 1e9 if key != "Retries" else value) or default
    return effective


def probe_args(test: list[str]) -> list[str]:
    """``CMD-SHELL x`` -> ``/bin/sh -c x``; ``CMD a b`` -> ``a b`` (Docker's Test forms)."""
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    if test[0] == "CMD":
        return list(test[1:])
    raise PalletError(f"unknown health check type {test[0]!r} (want CMD, CMD-SHELL or NONE)")


def on_failure(record) -> str:
    return record.host_config.get("HealthOnFailure") or "none"


# --- state ---------------------------------------------------------------------------------

def _path(engine, record):
    return ContainerStore(engine).dir(record.id) / STATE


def load_state(engine, record) -> dict:
    try:
        return json.loads(_path(engine, record).read_text())
    except (OSError, ValueError):
        return {"Status": "starting", "FailingStreak": 0, "Log": []}


def reset(engine, record) -> None:
    """A (re)start: back to ``starting``, keeping the earlier results, as Docker does."""
    path = _path(engine, record)
    with locked(path.with_suffix(".lock")):
        state = load_state(engine, record)
        atomic_write_json(path, {**state, "Status": "starting", "FailingStreak": 0}, durable=False)


def inspect_state(engine, record) -> dict | None:
    """``State.Health`` for inspect (none when the container has no check)."""
    if check_config(record) is None:
        return None
    return load_state(engine, record)


def ps_suffix(engine, record) -> str:
    if check_config(record) is None:
        return ""
    status = load_state(engine, record).get("Status", "starting")
    return "(health: starting)" if status == "starting" else f"({status})"


# --- probing -------------------------------------------------------------------------------

def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


NET_PROBES = ("HTTP-GET", "TCP-SOCKET")


def run_probe(engine, record, check: dict) -> tuple[int, str]:
    """Run the probe once in the container, as ``exec`` does; return (exit code, output).

    The caller must be a subreaper (the runtime's exec leaves the process to it)."""
    from pallet.kernel import lifecycle

    if check["Test"][0] in NET_PROBES:
        return _run_net_probe(record, check)

    base = lifecycle.bundle_config(engine, record)
    process = {**base["process"], "args": probe_args(check["Test"]), "terminal": False}
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    try:
        try:
            pid = lifecycle.runtime_for(engine, record).exec(record.id, process, (devnull, write_fd, write_fd), None)
        except PalletError as exc:
            return 1, f"the health check could not start: {exc}"
        os.close(write_fd)
        write_fd = -1
        return _result(pid, read_fd, check["Timeout"])
    finally:
        os.close(read_fd)
        os.close(devnull)
        if write_fd >= 0:
            os.close(write_fd)


def _run_net_probe(record, check: dict) -> tuple[int, str]:
    """An ``HTTP-GET``/``TCP-SOCKET`` probe from a forked child in the container's network namespace."""
    try:
        netns = os.open(f"/proc/{record.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        return 1, f"the health check could not start: the container's network namespace: {exc.strerror}"
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(read_fd)
            try:
                code, text = _net_probe_in(netns, check)
            except Exception as exc:  # noqa: BLE001 - the child reports it as the probe's output
                code, text = 1, f"the health check could not run: {exc}"
            os.write(write_fd, text.encode("utf-8", "replace")[:MAX_OUTPUT])
        finally:
            os._exit(code)
    os.close(netns)
    os.close(write_fd)
    try:
        return _result(pid, read_fd, check["Timeout"])
    finally:
        os.close(read_fd)


def _net_probe_in(netns: int, check: dict) -> tuple[int, str]:
    """In the child: enter the network namespace, then probe; (0 pass / 1 fail, what happened)."""
    from pallet.kernel import linux

    linux.setns(netns, linux.CLONE_NEWNET)
    kind, *rest = check["Test"]
    try:
        if kind == "TCP-SOCKET":
            import socket

            host, port = rest[0], int(rest[1])
            with socket.create_connection((host, port), timeout=check["Timeout"]):
                return 0, f"connected to {host}:{port}"
        return http_get(rest[0], rest[1:], check["Timeout"])
    except (OSError, ValueError) as exc:
        return 1, f"{kind.lower()} probe failed: {exc}"


def http_get(url: str, headers: list[str], timeout: float) -> tuple[int, str]:
    """One GET, the kubelet's way: 200-399 passes, redirects are not followed, HTTPS is not verified."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # as the kubelet does
        conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    sent = {"User-Agent": "pallet-probe", "Accept": "*/*"}
    for line in headers:
        name, _sep, value = line.partition(":")
        sent[name.strip()] = value.strip()
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""), headers=sent)
        response = conn.getresponse()
        body = response.read(MAX_OUTPUT).decode("utf-8", "replace")
    finally:
        conn.close()
    code = 0 if 200 <= response.status < 400 else 1
    return code, f"HTTP {response.status} {response.reason}\n{body}"


def _result(pid: int, fd: int, timeout: float) -> tuple[int, str]:
    """The probe process's (exit code, output); past the timeout it is killed and the code is -1."""
    output, timed_out = _collect(pid, fd, timeout)
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        procs.wait_for(pid)
        return -1, f"Health check exceeded timeout ({timeout:g}s)"
    return procs.wait_for(pid), output


def _collect(pid: int, fd: int, timeout: float) -> tuple[str, bool]:
    """Read the probe's output until it exits or ``timeout`` passes; (output, timed out)."""
    deadline = time.monotonic() + timeout
    chunks, size = [], 0
    pidfd = os.pidfd_open(pid)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        done = False
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return b"".join(chunks).decode("utf-8", "replace"), True
            events = poller.poll(left * 1000 if not done else 50)
            if done and not events:
                break
            for ready, _mask in events:
                if ready == pidfd:
                    done = True
                    poller.unregister(pidfd)
                    continue
                data = os.read(fd, 65536)
                if not data:
                    poller.unregister(fd)
                    return b"".join(chunks).decode("utf-8", "replace"), False
                if size < MAX_OUTPUT:
                    chunks.append(data[:MAX_OUTPUT - size])
                    size += len(chunks[-1])
        return b"".join(chunks).decode("utf-8", "replace"), False
    finally:
        os.close(pidfd)


def probe_once(engine, record, check: dict) -> tuple[str, str]:
    """One probe, its result recorded; returns (status before, status after)."""
    started = time.time()
    code, output = run_probe(engine, record, check)
    ended = time.time()
    path = _path(engine, record)
    with locked(path.with_suffix(".lock")):
        state = load_state(engine, record)
        before = state.get("Status", "starting")
        in_start_period = before == "starting" and ended - record.started_at < check["StartPeriod"]
        if code == 0:
            state["Status"], state["FailingStreak"] = "healthy", 0
        elif not in_start_period:
            state["FailingStreak"] = state.get("FailingStreak", 0) + 1
            if state["FailingStreak"] >= check["Retries"]:
                state["Status"] = "unhealthy"
        entry = {"Start": _iso(started), "End": _iso(ended), "ExitCode": code, "Output": output}
        state["Log"] = (state.get("Log") or [])[-(KEEP_RESULTS - 1):] + [entry]
        atomic_write_json(path, state, durable=False)
    if state["Status"] != before:
        from pallet.kernel import events

        events.container(engine, record, f"health_status: {state['Status']}")   # Docker's action name
    return before, state["Status"]


def act_on_failure(engine, record) -> None:
    """``--health-on-failure``, once the container turned unhealthy."""
    from pallet.kernel import lifecycle

    action = on_failure(record)
    if action == "kill":
        with contextlib.suppress(PalletError):
            lifecycle.kill(engine, record, signal.SIGKILL)
    elif action == "stop":
        lifecycle.stop(engine, record)
    elif action == "restart":
        ContainerStore(engine).update(record.id, restart_forced=True)
        with contextlib.suppress(PalletError):
            lifecycle.kill(engine, record, signal.SIGTERM)
        if not lifecycle.wait_stopped(engine, record, record.config.get("StopTimeout") or 10):
            with contextlib.suppress(PalletError):
                lifecycle.kill(engine, record, signal.SIGKILL)


def check_now(engine, record) -> str:
    """``pallet healthcheck run``: one probe now, recorded and acted on as the prober's are."""
    check = check_config(record)
    if check is None:
        raise PalletError(f"container {record.name} has no defined healthcheck")
    procs.set_subreaper()
    before, after = probe_once(engine, record, check)
    if after == "unhealthy" and before != "unhealthy":
        act_on_failure(engine, record)
    return after


# --- the prober process ------------------------------------------------------------------

def spawn_prober(engine, record, pid: int) -> None:
    """Start the prober beside the monitor: a fork that ``exec``s the bare :mod:`pallet.kernel.healthloop`."""
    from pallet.kernel.restart import cli_env, cli_globals, detach_fds

    check = check_config(record)
    if check is None:
        return
    record = ContainerStore(engine).load(record.id)  # with this start's pid and time
    reset(engine, record)
    argv = [sys.executable, "-I", "-S", str(Path(__file__).with_name("healthloop.py")), cli_env()["PYTHONPATH"],
            str(pid), str(_path(engine, record)), *(f"{check[k]:g}" for k in ("Interval", "StartInterval", "StartPeriod")),
            repr(record.started_at), sys.executable, "-P", "-m", "pallet.kernel.cli", *cli_globals(engine),
            "healthcheck", "run", record.id]
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() != 0:
        return
    try:
        os.setsid()
        detach_fds(str(ContainerStore(engine).run_dir(record.id) / "monitor.err"))
        os.execv(sys.executable, argv)
    finally:
        os._exit(1)
