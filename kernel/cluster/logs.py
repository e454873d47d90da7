"""Service logs across nodes: every agent serves its tasks' logs over HTTP; ``service logs`` gathers them.

A task's log stays on the node that runs it (in its container's json-file log), as in Docker; what
travels is a request. Each agent listens on its node's address at a port of its choosing and
publishes ``https://ADDR:PORT`` at ``log-endpoints/<node-id>`` under its lease, so the endpoint of a
Down node is gone with the node. The endpoint speaks only TLS 1.3 with a certificate on both sides
(:mod:`.credentials`: each from the cluster key), so only a node holding the cluster's key reads a
task's logs, and a reader makes sure it reached the node it asked for. ``GET /tasks/<task-id>/logs?tail=N&follow=1`` answers the task
container's entries, one JSON object ``{"stream", "time", "log"}`` a line, and with ``follow`` goes
on until the container stops or the caller hangs up. ``gather`` reads every task of a service, from
this node's own files for its own tasks (no agent needed) and from the endpoints for the others,
and merges them in time order (with ``follow``, in arrival order, picking up new tasks).
"""

from __future__ import annotations

import http.client
import json
import queue
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from pallet.kernel.cluster import PREFIX, credentials
from pallet.kernel.errors import PalletError

LOG_ENDPOINTS = f"{PREFIX}log-endpoints/"
POLL = 0.2


def task_container(engine, task_id: str):
    """This root's container of ``task_id``, or None."""
    from pallet.kernel.cluster.executor import task_containers

    return task_containers(engine).get(task_id)


def entries(engine, record, tail: int | None, follow: bool, stopped: threading.Event | None = None):
    """Yield ``(stream, time, text)`` of a container's log: the last ``tail`` entries (all for None), then
    with ``follow`` what it writes until it stops (or ``stopped`` is set)."""
    from pallet.kernel import lifecycle
    from pallet.kernel.api.containers import _LogReader
    from pallet.kernel.containers import ContainerStore

    store = ContainerStore(engine)
    reader = _LogReader(store.log_path(record.id))
    try:
        first = reader.read()
        yield from (first[-tail:] if tail else []) if tail is not None else first
        while follow and not (stopped is not None and stopped.is_set()):
            new = reader.read()
            yield from new
            if not new:
                try:
                    if not lifecycle.refresh(engine, store.load(record.id)).running:
                        yield from reader.read()
                        return
                except PalletError:
                    return
                time.sleep(POLL)
    finally:
        reader.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"   # the body ends when the connection closes: no length for a follow

    def setup(self):
        # the handshake runs here, in the request's thread, so a slow or refused peer holds up no other
        self.request.settimeout(10)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def do_GET(self):  # noqa: N802 (http.server's name)
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "tasks" or parts[2] != "logs":
            self.send_error(404, "no such route")
            return
        query = parse_qs(url.query)
        tail_text = query.get("tail", ["all"])[0]
        tail = None if tail_text == "all" else int(tail_text) if tail_text.isdigit() else None
        follow = query.get("follow", ["0"])[0] == "1"
        record = task_container(self.server.engine, parts[1])
        if record is None:
            self.send_error(404, f"task {parts[1]} has no container on this node")
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.end_headers()
        try:
            for stream, stamp, text in entries(self.server.engine, record, tail, follow, self.server.closing):
                self.wfile.write(json.dumps({"stream": stream, "time": stamp, "log": text}).encode() + b"\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, format, *args):  # noqa: A002 (http.server's signature): requests are not logged
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def get_request(self):
        sock, address = super().get_request()
        return self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), address

    def handle_error(self, request, client_address):
        pass   # a peer without the cluster's certificate, or one that hung up: nothing to report


class LogServer:
    """The agent's log endpoint, in daemon threads."""

    def __init__(self, engine, host: str):
        self.httpd = _TLSServer((host or "127.0.0.1", 0), _Handler)
        self.httpd.tls = credentials.node_context(engine, server=True)
        self.httpd.engine, self.httpd.closing = engine, threading.Event()
        address, port = self.httpd.server_address[:2]
        self.url = f"https://{'[' + address + ']' if ':' in address else address}:{port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True, name="pallet-logs").start()

    def close(self) -> None:
        self.httpd.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def remote(url: str, node_id: str, tls: ssl.SSLContext, task_id: str, tail: int | None, follow: bool):
    """Yield ``(stream, time, text)`` of a task's log from the endpoint ``url`` of node ``node_id``."""
    parsed = urlparse(url)
    if parsed.scheme != "https":
        raise PalletError(f"node {node_id} serves logs without TLS (an older agent): restart its agent")
    connection = http.client.HTTPSConnection(parsed.hostname, parsed.port, timeout=None if follow else 30,
                                             context=tls)
    try:
        connection.connect()
        if not credentials.peer_is(connection.sock, node_id):
            raise PalletError(f"the log endpoint {url} is not node {node_id}'s")
        connection.request("GET", f"/tasks/{task_id}/logs?tail={'all' if tail is None else tail}"
                                  f"&follow={1 if follow else 0}")
        response = connection.getresponse()
        if response.status != 200:
            raise PalletError(response.reason or f"HTTP {response.status}")
        for raw in response:
            entry = json.loads(raw)
            yield entry["stream"], entry["time"], entry["log"]
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise PalletError(str(exc) or type(exc).__name__) from None
    finally:
        connection.close()


def gather(engine, service_id: str, tail: int | None, follow: bool, warn, stop: threading.Event | None = None):
    """Yield ``(task, node_id, stream, time, text)`` for every task of the service on every node.

    ``warn`` gets one line per task whose node cannot be reached. Without ``follow`` the entries come
    sorted by time once all are read; with it, as they arrive, until ``stop`` is set.
    """
    from pallet.kernel.cluster import services, store

    etcd = store.connect(engine)
    me = store.require_membership(engine)["ID"]
    tls = None
    stop = stop or threading.Event()
    arrived: queue.Queue = queue.Queue()
    readers: dict[str, threading.Thread] = {}

    def read(task: dict, task_tail: int | None) -> None:
        nonlocal tls
        try:
            node = task["NodeID"]
            record = task_container(engine, task["ID"]) if node == me else None
            if record is not None:
                source = entries(engine, record, task_tail, follow, stop)
            else:
                url = etcd.get(f"{LOG_ENDPOINTS}{node}")
                if not url:
                    raise PalletError(f"node {node} publishes no log endpoint (is it down?)")
                tls = tls or credentials.node_context(engine, server=False)
                source = remote(url, node, tls, task["ID"], task_tail, follow)
            for stream, stamp, text in source:
                arrived.put((task, node, stream, stamp, text))
                if stop.is_set():
                    return
        except PalletError as exc:
            warn(f"logs of task {task['ID'][:12]}: {exc}")
        finally:
            arrived.put(None)

    def start_new(task_tail: int | None) -> None:
        for task in services.list_tasks(engine, {"service": service_id}):
            if task["ID"] in readers or not task.get("NodeID"):
                continue
            if not ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID"):
                continue   # not started yet: a follow picks it up once it is
            readers[task["ID"]] = threading.Thread(target=read, args=(task, task_tail), daemon=True)
            readers[task["ID"]].start()

    start_new(tail)
    if not follow:
        done, collected = 0, []
        while done < len(readers):
            item = arrived.get()
            if item is None:
                done += 1
            else:
                collected.append(item)
        yield from sorted(collected, key=lambda item: item[3])
        return
    next_scan = time.monotonic() + 1.0
    while not stop.is_set():
        try:
            item = arrived.get(timeout=POLL)
        except queue.Empty:
            item = None
        if item is not None:
            yield item
        if time.monotonic() >= next_scan:
            next_scan = time.monotonic() + 1.0
            try:
                start_new(None)   # a task started after the follow began: from its first line
            except PalletError as exc:
                warn(str(exc))
