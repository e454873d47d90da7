"""Container routes: create, list, inspect, start, stop, kill, restart, wait, logs, attach, rename, delete.

Each handler calls the functions ``pallet run``/``stop``/``rm`` use (``kernel.lifecycle``, ``kernel.monitor``);
the only thing kept in memory is which API clients are about to attach to a container being started.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time

from aiohttp import web

from pallet.kernel.api.common import blocking, json_body, json_response, query_bool, query_json
from pallet.kernel.api.errors import ApiError
from pallet.kernel.api.streams import STDERR, STDOUT, Hijacked
from pallet.kernel.errors import PalletError


class Session:
    """API clients attached to one container before its start: its monitor then waits for them."""

    def __init__(self):
        self.pending = 0
        self.started = asyncio.Event()
        self.exit: asyncio.Future = asyncio.get_running_loop().create_future()


def _store(engine):
    from pallet.kernel.containers import ContainerStore

    return ContainerStore(engine)


def _get(engine, name: str):
    from pallet.kernel import lifecycle

    return lifecycle.refresh(engine, _store(engine).get(name))


async def record_of(request: web.Request):
    return await blocking(_get, request.app["engine"], request.match_info["id"])


def _session(request: web.Request, cid: str) -> Session:
    sessions = request.app["sessions"]
    if cid not in sessions:
        sessions[cid] = Session()
    return sessions[cid]


# --- create, list, inspect --------------------------------------------------------------

def _create(engine, body: dict, name: str):
    from pallet.kernel import lifecycle
    from pallet.kernel.api.translate import create_request

    request = create_request(body, name)
    try:
        return lifecycle.create(engine, request)
    except PalletError as exc:
        if "No such image" in str(exc) or "not found" in str(exc).lower() and "image" in str(exc).lower():
            raise ApiError(404, f"No such image: {body.get('Image')}") from None
        raise


async def create(request: web.Request):
    from pallet.kernel.cgroups import discard_unsupported_weight

    body = await json_body(request)
    host = body.get("HostConfig") if isinstance(body, dict) else None
    warnings = discard_unsupported_weight(host) if isinstance(host, dict) else []
    record = await blocking(_create, request.app["engine"], body, request.query.get("name", ""))
    return json_response({"Id": record.id, "Warnings": warnings}, status=201)


def _summary(engine, record) -> dict:
    from pallet.kernel.cli.container_list import network_settings, status_text

    config = record.config
    ports = []
    for port, bindings in (record.port_bindings or {}).items():
        number, _sep, proto = port.partition("/")
        for binding in bindings or [{}]:
            item = {"PrivatePort": int(number), "Type": proto or "tcp"}
            if binding.get("HostPort"):
                item.update(IP=binding.get("HostIp") or "0.0.0.0", PublicPort=int(binding["HostPort"]))
            ports.append(item)
    return {
        "Id": record.id, "Names": ["/" + record.name], "Image": record.image_ref, "ImageID": record.image_id,
        "Command": " ".join((config.get("Entrypoint") or []) + (config.get("Cmd") or [])),
        "Created": int(record.created), "Ports": ports, "Labels": record.labels, "State": record.status,
        "Status": status_text(record, time.time()), "HostConfig": {"NetworkMode": record.network_mode},
        "NetworkSettings": {"Networks": network_settings(record)["Networks"]},
        "Mounts": [{"Type": m["Type"], "Source": m.get("Source", ""), "Destination": m["Target"],
                    "RW": not m.get("ReadOnly")} for m in record.host_config.get("Mounts") or []],
    }


def _list(engine, show_all: bool, limit: int, filters: dict) -> list[dict]:
    from pallet.kernel import lifecycle
    from pallet.kernel.cli.container_list import matches

    pairs = []
    for key, values in (filters or {}).items():
        for value in (values if isinstance(values, list) else list(values)):
            pairs.append((key, value))
    records = [lifecycle.refresh(engine, r) for r in _store(engine).all(shared=True)]
    records = [r for r in records if (show_all or r.running) and matches(r, pairs)]
    records.sort(key=lambda r: r.created, reverse=True)
    if limit > 0:
        records = records[:limit]
    return [_summary(engine, r) for r in records]


async def list_(request: web.Request):
    limit = int(request.query.get("limit") or -1)
    show_all = query_bool(request, "all") or limit > 0
    return json_response(await blocking(_list, request.app["engine"], show_all, limit,
                                        query_json(request, "filters", {})))


async def inspect(request: web.Request):
    from pallet.kernel.cli.container_list import inspect_record

    engine = request.app["engine"]
    record = await record_of(request)
    return json_response(await blocking(inspect_record, engine, record))


# --- start, stop, kill, restart ----------------------------------------------------------

def _start(engine, record, attach_first: bool) -> None:
    """Prepare and start; a start that fails removes an ``AutoRemove`` container, as Docker's daemon does
    (``docker run --rm`` waits for ``removed``, which would never come)."""
    from pallet.kernel import lifecycle, monitor

    try:
        bundle = lifecycle.prepare(engine, record)
        monitor.spawn(engine, record, bundle, attach_first=attach_first)
    except PalletError:
        if record.host_config.get("AutoRemove"):
            with contextlib.suppress(PalletError):
                lifecycle.remove(engine, lifecycle.ContainerStore(engine).get(record.id), volumes=True, force=True)
        raise


async def start(request: web.Request):
    engine = request.app["engine"]
    record = await record_of(request)
    if record.running:
        return web.Response(status=304)
    session = request.app["sessions"].get(record.id)
    try:
        await blocking(_start, engine, record, bool(session and session.pending))
    finally:
        if session is not None:
            session.started.set()
    return web.Response(status=204)


def _timeout(request: web.Request) -> float | None:
    value = request.query.get("t") or request.query.get("timeout")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, f"invalid value for t: {value}") from None


def _signal(value: str | None, default: str):
    from pallet.kernel.runopts import parse_signal

    return parse_signal(value or default)


async def stop(request: web.Request):
    from pallet.kernel import lifecycle

    engine = request.app["engine"]
    record = await record_of(request)
    if not record.running:
        return web.Response(status=304)
    sig = _signal(request.query.get("signal"), record.config.get("StopSignal") or "SIGTERM")
    await blocking(lifecycle.stop, engine, record, _timeout(request), sig)
    return web.Response(status=204)


async def kill(request: web.Request):
    from pallet.kernel import lifecycle

    engine = request.app["engine"]
    record = await record_of(request)
    if not record.running:
        raise ApiError(409, f"Container {record.id} is not running")
    await blocking(lifecycle.kill, engine, record, _signal(request.query.get("signal"), "SIGKILL"))
    return web.Response(status=204)


async def restart(request: web.Request):
    from pallet.kernel import lifecycle

    engine = request.app["engine"]
    record = await record_of(request)
    record = await blocking(lifecycle.stop, engine, record, _timeout(request))
    await blocking(_start, engine, record, False)
    return web.Response(status=204)


async def remove(request: web.Request):
    from pallet.kernel import lifecycle

    engine = request.app["engine"]
    if query_bool(request, "link"):   # docker rm --link PARENT/ALIAS: the link goes, no container does
        from pallet.kernel.containers import ContainerStore
        from pallet.kernel.runlinks import remove_link

        await blocking(remove_link, ContainerStore(engine), request.match_info["id"])
        return web.Response(status=204)
    record = await record_of(request)
    await blocking(lifecycle.remove, engine, record, query_bool(request, "force"), query_bool(request, "v"))
    return web.Response(status=204)


async def rename(request: web.Request):
    engine = request.app["engine"]
    record = await record_of(request)
    new_name = request.query.get("name") or ""
    if not new_name:
        raise ApiError(400, "Neither old nor new names may be empty")
    await blocking(_store(engine).rename, record, new_name)
    return web.Response(status=204)


# --- wait -------------------------------------------------------------------------------

def _observe_exit(engine, cid: str) -> int | None:
    """Connect to the running container's monitor as one more attach client; its last message is the
    exit code, sent once the exit is recorded (and, with ``--rm``, the container removed)."""
    from pallet.kernel.attach import open_session

    try:
        sock, stdin_fd, _tty = open_session(_store(engine).run_dir(cid), timeout=1)
    except PalletError:
        return None   # it ended meanwhile: the caller reads the exit from the record
    if stdin_fd is not None:
        os.close(stdin_fd)
    with sock:
        while True:
            try:
                message = sock.recv(1 << 17)
            except ConnectionError:
                return None
            if not message:
                return None
            if message[:1] == b"x":
                return int(message[1:])


def _settled(engine, record):
    """The record once its exit is recorded on disk (by the monitor), or None if it is gone."""
    from pallet.kernel import lifecycle

    lifecycle.wait_stopped(engine, record, 30)
    try:
        return _get(engine, record.id)
    except PalletError:
        return None


async def _exit_code(request: web.Request, record, condition: str) -> int:
    """Block as Docker's wait conditions say: ``not-running`` (now, if it is not), ``next-exit``, ``removed``."""
    engine = request.app["engine"]
    first_start = record.started_at
    session = None
    while True:
        session = request.app["sessions"].get(record.id) or session  # kept after its attach ended
        if session is not None and session.exit.done() and session.exit.result() is not None:
            return session.exit.result()
        if session is not None and session.pending:
            await asyncio.wait([session.exit], timeout=0.5)
            continue
        ran = record.status != "created" and (record.running or record.started_at != first_start)
        if record.running or (not record.running and (condition == "not-running" or ran)):
            if record.running:
                code = await blocking(_observe_exit, engine, record.id)
                if code is not None:
                    return code
            if record.status == "created":
                return record.exit_code
            settled = await blocking(_settled, engine, record)
            return (settled or record).exit_code
        try:
            record = await blocking(_get, engine, record.id)
        except PalletError:
            return record.exit_code  # removed meanwhile
        await asyncio.sleep(0.05)


async def _wait_exit(request: web.Request, record, condition: str) -> int:
    code = await _exit_code(request, record, condition)
    if condition == "removed":
        await _until_removed(request.app["engine"], record.id)
    return code


async def _until_removed(engine, cid: str) -> None:
    while _store(engine).dir(cid).exists():
        await asyncio.sleep(0.05)


async def wait(request: web.Request):
    condition = request.query.get("condition") or "not-running"
    if condition not in ("not-running", "next-exit", "removed"):
        raise ApiError(400, f"invalid condition: {condition}")
    record = await record_of(request)
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)  # headers now: `docker run` starts the container only after this
    try:
        answer = {"StatusCode": await _wait_exit(request, record, condition), "Error": None}
    except PalletError as exc:   # the status is sent already: Docker's in-body error, not a cut stream
        answer = {"StatusCode": -1, "Error": {"Message": str(exc)}}
    await response.write(json.dumps(answer).encode() + b"\n")
    await response.write_eof()
    return response


# --- logs -------------------------------------------------------------------------------

def _log_entries(engine, record, reader: _LogReader, tail: int | None, since: float | None,
                 until: float | None):
    """The log's entries inside the window (the last ``tail``); ``reader`` goes on from there."""
    from pallet.kernel.policyopts import log_time

    if (record.host_config.get("LogConfig") or {}).get("Type") == "none":
        raise ApiError(501, "configured logging driver does not support reading")
    entries = reader.read()
    entries = [e for e in entries if (since is None or log_time(e[1]) >= since)
               and (until is None or log_time(e[1]) < until)]
    if tail is not None:
        entries = entries[-tail:] if tail else []
    return entries


class _LogReader:
    """Reads a json-file log from where it last stopped, across rotation and removal.

    The handle stays open, so a container removed while ``logs -f`` follows it (docker-py's
    ``run(remove=True)`` reads its stream only after removing) still yields everything it wrote.
    """

    def __init__(self, path):
        self.path = path
        self.handle = None
        self.pending = b""

    def _open(self, create: bool = False) -> bool:
        try:
            # The first open creates the log if the monitor has not yet (it opens it O_APPEND|O_CREAT, so
            # both hold one file): a container that writes, exits and is removed within one poll of
            # ``logs -f`` is still read from this handle.
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o640)
        except (FileNotFoundError, NotADirectoryError):
            return False
        self.handle = os.fdopen(fd, "rb")
        self.pending = b""
        return True

    def open_now(self) -> None:
        """Hold the log from now on, made empty if it does not exist yet (the container's directory does)."""
        if self.handle is None:
            self._open(create=True)

    def _rotated(self) -> bool:
        try:
            return os.stat(self.path).st_ino != os.fstat(self.handle.fileno()).st_ino
        except FileNotFoundError:
            return False  # removed: what the handle holds is all there is

    def read(self) -> list:
        if self.handle is None and not self._open():
            return []
        chunk = self.pending + self.handle.read()
        if not chunk[len(self.pending):] and self._rotated():
            self.handle.close()
            self._open()
            chunk = self.handle.read()
        cut = chunk.rfind(b"\n") + 1
        complete, self.pending = chunk[:cut], chunk[cut:]
        entries = []
        for raw in complete.splitlines():
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(raw)
                entries.append((entry["stream"], entry["time"], entry["log"]))
        return entries

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


async def _follow(request, record, reader: _LogReader, entries, response, wanted, stamps, tty, until) -> None:
    """Write ``entries``, then (with ``follow``) what the container writes until it stops or is removed."""
    from pallet.kernel.api.streams import frame
    from pallet.kernel.policyopts import log_time

    async def emit(items) -> bool:
        for stream, stamp, text in items:
            if until is not None and log_time(stamp) >= until:
                return False
            if wanted.get(stream):
                data = (f"{stamp} {text}" if stamps else text).encode()
                await response.write(data if tty else frame(STDOUT if stream == "stdout" else STDERR, data))
        return True

    engine = request.app["engine"]
    going = await emit(entries)
    while going and query_bool(request, "follow"):
        fresh = await blocking(reader.read)
        going = await emit(fresh)
        if fresh:
            continue
        try:
            current = await blocking(_get, engine, record.id)
        except PalletError:
            current = None  # removed: the open handle still holds the rest
        if current is not None and current.running:
            await asyncio.sleep(0.1)
            continue
        if current is not None:
            await blocking(_settled, engine, current)  # the log pump has drained the output
        await emit(await blocking(reader.read))
        break


async def logs(request: web.Request):
    engine = request.app["engine"]
    record = await record_of(request)
    tail_text = request.query.get("tail", "all")
    tail = None if tail_text in ("all", "") or tail_text.startswith("-") else int(tail_text)
    since = float(request.query["since"]) if request.query.get("since", "0") not in ("0", "") else None
    until = float(request.query["until"]) if request.query.get("until", "0") not in ("0", "") else None
    wanted = {"stdout": query_bool(request, "stdout"), "stderr": query_bool(request, "stderr")}
    stamps = query_bool(request, "timestamps")
    tty = bool(record.config.get("Tty"))
    reader = _LogReader(_store(engine).log_path(record.id))
    if query_bool(request, "follow") and (record.host_config.get("LogConfig") or {}).get("Type") != "none":
        await blocking(reader.open_now)
    try:
        entries = await blocking(_log_entries, engine, record, reader, tail, since, until)
    except BaseException:
        reader.close()
        raise
    response = web.StreamResponse(headers={"Content-Type": "application/vnd.docker.raw-stream" if tty
                                           else "application/vnd.docker.multiplexed-stream"})
    try:
        await response.prepare(request)
        await _follow(request, record, reader, entries, response, wanted, stamps, tty, until)
    finally:
        reader.close()
    await response.write_eof()
    return response


# --- attach -----------------------------------------------------------------------------

def _connect_monitor(engine, cid: str):
    """The monitor's attach socket and the container's input fd (if it keeps one)."""
    from pallet.kernel.attach import open_session

    sock, stdin_fd, _tty = open_session(_store(engine).run_dir(cid))
    return sock, stdin_fd


async def attach(request: web.Request):
    engine = request.app["engine"]
    record = await record_of(request)
    streams = {"1": query_bool(request, "stdout"), "2": query_bool(request, "stderr")}
    want_stdin = query_bool(request, "stdin")
    hijacked = Hijacked(request, bool(record.config.get("Tty")))
    session = None
    if not record.running:
        session = _session(request, record.id)
        session.pending += 1
    await hijacked.start()
    try:
        if session is not None:
            await session.started.wait()
        try:
            sock, stdin_fd = await blocking(_connect_monitor, engine, record.id)
        except PalletError:
            return hijacked.response  # it started and ended before we could attach
        try:
            code = await relay(hijacked, sock, stdin_fd if want_stdin else None, streams)
        finally:
            if stdin_fd is not None:
                os.close(stdin_fd)
            sock.close()
        if session is not None and code is not None and not session.exit.done():
            session.exit.set_result(code)
    finally:
        if session is not None:
            session.pending -= 1
            if not session.pending:
                request.app["sessions"].pop(record.id, None)
                if not session.exit.done():
                    session.exit.set_result(None)
        hijacked.close()
    return hijacked.response


async def relay(hijacked: Hijacked, sock: socket.socket, stdin_fd: int | None, streams: dict) -> int | None:
    """Monitor messages to the client as frames, client input to the container; the exit code, or None."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)

    async def forward_input():
        while True:
            data = await hijacked.input.queue.get()
            if not data:
                if not hijacked.tty:
                    os.close(stdin_fd)
                return
            await blocking(_write_all, stdin_fd, data)

    feeder = asyncio.ensure_future(forward_input()) if stdin_fd is not None else None
    try:
        while True:
            message = await loop.sock_recv(sock, 1 << 17)
            if not message:
                return None
            kind, data = message[:1].decode(), message[1:]
            if kind == "x":
                return int(data)
            if streams.get(kind) and data:
                try:
                    hijacked.write(STDOUT if kind == "1" else STDERR, data)
                except ConnectionResetError:
                    return None  # the client went away: the container goes on
    finally:
        if feeder is not None:
            feeder.cancel()


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


ROUTES = [
    ("POST", "/containers/create", create),
    ("GET", "/containers/json", list_),
    ("GET", "/containers/{id}/json", inspect),
    ("POST", "/containers/{id}/start", start),
    ("POST", "/containers/{id}/stop", stop),
    ("POST", "/containers/{id}/kill", kill),
    ("POST", "/containers/{id}/restart", restart),
    ("POST", "/containers/{id}/wait", wait),
    ("POST", "/containers/{id}/rename", rename),
    ("POST", "/containers/{id}/attach", attach),
    ("GET", "/containers/{id}/logs", logs),
    ("DELETE", "/containers/{id:.+}", remove),   # docker rm --link sends PARENT/ALIAS
]
