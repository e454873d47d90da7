"""Exec routes: create, start (hijacked, Docker's frames), inspect, resize.

An exec session runs ``pallet exec`` itself, so that the API and the CLI enter a container the same
way (the runtime's exec, the container's user, env and capabilities) and the server never becomes
the subreaper of processes inside containers. Exec records live as long as the server, as Docker's do.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.streams import STDERR, STDOUT, Hijacked
from pallet.kernel.errors import Conflict


class ExecSession:
    """One ``POST /containers/{id}/exec``: its process config, and once started its state and exit code."""

    def __init__(self, container_id: str, body: dict):
        self.id = secrets.token_hex(32)
        self.container_id = container_id
        self.cmd = list(body.get("Cmd") or [])
        self.tty = bool(body.get("Tty"))
        self.stdin = bool(body.get("AttachStdin"))
        self.stdout = body.get("AttachStdout", True) is not False
        self.stderr = body.get("AttachStderr", True) is not False
        self.env = list(body.get("Env") or [])
        self.user = body.get("User") or ""
        self.workdir = body.get("WorkingDir") or ""
        self.privileged = bool(body.get("Privileged"))
        self.running = False
        self.started = False
        self.exit_code: int | None = None
        self.pid = 0
        self.resize_fd: int | None = None   # the pipe to `pallet exec` that carries window sizes (TTY only)
        size = body.get("ConsoleSize")   # [height, width], API 1.42+
        self.size = (int(size[0]), int(size[1])) if isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and v > 0 for v in size) else None

    def argv(self, engine) -> list[str]:
        config = engine.config
        argv = [sys.executable, "-P", "-m", "pallet.kernel.cli", "--root", str(config.root), "--run-root",
                str(config.run_root), "--config", str(config.config_path)]
        if config.storage_driver_flag:
            argv += ["--storage-driver", config.storage_driver_flag]
        for key, value in config.storage_opt_flags.items():
            argv += ["--storage-opt", f"{key}={value}"]
        argv.append("exec")
        argv += ["-t"] if self.tty else []
        argv += ["-i"] if self.stdin else []
        argv += ["--privileged"] if self.privileged else []
        for item in self.env:
            argv += ["-e", item]
        argv += ["-u", self.user] if self.user else []
        argv += ["-w", self.workdir] if self.workdir else []
        return argv + [self.container_id, *self.cmd]

    def inspect(self) -> dict:
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code, "ContainerID": self.container_id,
                "OpenStdin": self.stdin, "OpenStdout": self.stdout, "OpenStderr": self.stderr,
                "CanRemove": False, "DetachKeys": "", "Pid": self.pid,
                "ProcessConfig": {"tty": self.tty, "entrypoint": self.cmd[0] if self.cmd else "",
                                  "arguments": self.cmd[1:], "privileged": self.privileged, "user": self.user}}


def _running_record(engine, name: str):
    from pallet.kernel.api.containers import _get

    record = _get(engine, name)
    if not record.running:
        raise Conflict(f"Container {record.id} is not running")
    if record.status == "paused":
        raise Conflict(f"Container {record.id} is paused, unpause the container before exec")
    return record


async def create(request: web.Request):
    body = await json_body(request)
    if not isinstance(body, dict) or not body.get("Cmd"):
        raise ApiError(400, "No exec command specified")
    record = await blocking(_running_record, request.app["engine"], request.match_info["id"])
    session = ExecSession(record.id, body)
    request.app.setdefault("execs", {})[session.id] = session
    return json_response({"Id": session.id}, status=201)


def _session(request: web.Request) -> ExecSession:
    session = request.app.get("execs", {}).get(request.match_info["id"])
    if session is None:
        raise ApiError(404, f"No such exec instance: {request.match_info['id']}")
    return session


async def inspect(request: web.Request):
    return json_response(_session(request).inspect())


async def resize(request: web.Request):
    """Docker's ``h``/``w``: sent to the session's ``pallet exec``, or kept for its start."""
    from pallet.kernel.api.container_ops import _dimension

    session = _session(request)
    session.size = (_dimension(request, "h"), _dimension(request, "w"))
    _send_size(session)
    return web.Response(status=200)


def _send_size(session: ExecSession) -> None:
    if session.resize_fd is not None and session.size is not None:
        try:
            os.write(session.resize_fd, f"{session.size[0]} {session.size[1]}\n".encode())
        except OSError:
            _close_resize(session)  # the session ended


def _close_resize(session: ExecSession) -> None:
    if session.resize_fd is not None:
        os.close(session.resize_fd)
        session.resize_fd = None


def _resize_pipe(session: ExecSession, detach: bool) -> tuple[dict, tuple[int, ...]]:
    """Environment and fds for a TTY session's ``pallet exec``: the read end of the window-size pipe."""
    from pallet.kernel.cli.container_ops import RESIZE_FD_ENV

    if not session.tty or detach:
        return {}, ()
    read_end, session.resize_fd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(session.resize_fd, False)  # a stuck child never blocks the server
    _send_size(session)  # in the pipe before the child starts: it becomes the pty's first size
    return {"env": {**os.environ, RESIZE_FD_ENV: str(read_end)}}, (read_end,)


async def start(request: web.Request):
    session = _session(request)
    body = await json_body(request)
    if session.started:
        raise ApiError(409, f"exec {session.id} has already been started")
    session.started = True
    engine = request.app["engine"]
    await blocking(_running_record, engine, session.container_id)
    detach = bool(body.get("Detach"))
    extra, passed = _resize_pipe(session, detach)
    try:
        process = await asyncio.create_subprocess_exec(
            *session.argv(engine),
            stdin=asyncio.subprocess.PIPE if session.stdin and not detach else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL if detach else asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL if detach else asyncio.subprocess.PIPE, pass_fds=passed, **extra)
    except BaseException:
        _close_resize(session)
        raise
    finally:
        for fd in passed:
            os.close(fd)
    session.running, session.pid = True, process.pid
    if detach:
        asyncio.ensure_future(_reap(session, process))
        return web.Response(status=200)
    hijacked = Hijacked(request, session.tty)
    await hijacked.start()
    try:
        await _pump(session, process, hijacked)
    finally:
        _close_resize(session)
        hijacked.close()
    return hijacked.response


async def _reap(session: ExecSession, process) -> None:
    session.exit_code = await process.wait()
    session.running = False


async def _pump(session: ExecSession, process, hijacked: Hijacked) -> None:
    async def copy(reader, stream: int, wanted: bool):
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if wanted and not hijacked.gone:
                hijacked.write(stream, data)

    async def feed():
        while True:
            data = await hijacked.input.queue.get()
            if not data:
                process.stdin.close()
                return
            process.stdin.write(data)
            await process.stdin.drain()

    feeder = asyncio.ensure_future(feed()) if process.stdin is not None else None
    try:
        await asyncio.gather(copy(process.stdout, STDOUT, session.stdout), copy(process.stderr, STDERR, session.stderr))
        await _reap(session, process)  # recorded before the stream ends: the CLI asks for it right after
    finally:
        if feeder is not None:
            feeder.cancel()


ROUTES = [
    ("POST", "/containers/{id}/exec", create),
    ("POST", "/exec/{id}/start", start),
    ("POST", "/exec/{id}/resize", resize),
    ("GET", "/exec/{id}/json", inspect),
]
