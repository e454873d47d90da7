"""Running the API: listeners (unix socket 0660 root:pallet, TCP only with mutual TLS), idle timeout, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import signal
import ssl
import sys
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from pallet.kernel.errors import UsageError

SOCKET_GROUP = "pallet"
SHUTDOWN_GRACE = 30.0   # seconds that requests in flight get after SIGTERM


@dataclass
class ServeOptions:
    hosts: list[str] = field(default_factory=list)
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    insecure_tcp: bool = False
    timeout: float = 0.0


def parse_host(host: str) -> tuple[str, str]:
    """``unix:///path``, ``tcp://ADDR:PORT`` or ``fd://`` (systemd's sockets) as (kind, address)."""
    if host == "fd://":
        return "fd", ""
    if host.startswith("unix://"):
        return "unix", host[len("unix://"):]
    if host.startswith("tcp://"):
        address = host[len("tcp://"):]
        if ":" not in address:
            raise UsageError(f"invalid -H {host}: tcp needs ADDR:PORT")
        return "tcp", address
    raise UsageError(f"invalid -H {host}: expected unix:///PATH, tcp://ADDR:PORT or fd://")


def check_hosts(options: ServeOptions) -> None:
    """Refuse what cannot be served before anything starts: bad URLs, TCP without TLS, missing TLS files."""
    for host in options.hosts:
        kind, _address = parse_host(host)
        if kind == "tcp" and options.tlsverify:
            tls_context(options)
        elif kind == "tcp" and not options.insecure_tcp:
            raise UsageError(f"-H {host}: TCP needs --tlsverify with --tlscacert/--tlscert/--tlskey "
                             "(or --insecure-tcp, which lets anyone who can connect control this host)")


def tls_context(options: ServeOptions) -> ssl.SSLContext:
    """Mutual TLS as dockerd's --tlsverify: the client must show a certificate the CA signed."""
    for flag, value in (("--tlscacert", options.tlscacert), ("--tlscert", options.tlscert), ("--tlskey", options.tlskey)):
        if not value or not os.path.exists(value):
            raise UsageError(f"{flag}: file not found: {value or '(not given)'}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=options.tlscacert)
    context.load_cert_chain(options.tlscert, options.tlskey)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _own_socket(path: str) -> None:
    """0660 root:pallet: membership of the ``pallet`` group is the access control, as Docker's ``docker`` group."""
    try:
        gid = grp.getgrnam(SOCKET_GROUP).gr_gid
    except KeyError:
        print(f"pallet serve: warning: no group {SOCKET_GROUP!r} (scripts/setup.sh makes it): {path} is root-only",
              file=sys.stderr)
        return
    os.chown(path, 0, gid)


def systemd_sockets() -> list:
    """The listening sockets systemd passed (``LISTEN_FDS`` from fd 3 on), for ``-H fd://``."""
    import socket

    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not os.environ.get("LISTEN_FDS", "").isdigit():
        raise UsageError("-H fd://: no sockets were passed by systemd (LISTEN_PID/LISTEN_FDS)")
    return [socket.socket(fileno=3 + n) for n in range(int(os.environ["LISTEN_FDS"]))]


def _unix_listener(address: str):
    """A listening unix socket at ``address``: bound and owned under a temporary name, then renamed in, so
    a client that sees the path can connect (no window between bind and listen, when it would be refused)."""
    import socket

    Path(address).parent.mkdir(parents=True, exist_ok=True)
    temp = f"{address}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        previous = os.umask(0o117)  # born 0660: never open to others, not even for a moment
        try:
            sock.bind(temp)
        finally:
            os.umask(previous)
        sock.listen(128)
        _own_socket(temp)
        os.rename(temp, address)  # replaces a previous server's; a live one would hold a lock in the run root
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    sock.setblocking(False)
    return sock


async def _sites(runner: web.AppRunner, options: ServeOptions, owned: dict[str, int]) -> list[str]:
    listening = []
    for host in options.hosts:
        kind, address = parse_host(host)
        if kind == "fd":
            for sock in systemd_sockets():
                await web.SockSite(runner, sock).start()
        elif kind == "unix":
            sock = _unix_listener(address)
            await web.SockSite(runner, sock).start()
            owned[address] = os.stat(address).st_ino
        else:
            addr, _sep, port = address.rpartition(":")
            context = tls_context(options) if options.tlsverify else None
            if context is None:
                print(f"pallet serve: WARNING: {host} is plain TCP without TLS: anyone who can connect is root "
                      "on this host", file=sys.stderr)
            site = web.TCPSite(runner, addr or "0.0.0.0", int(port), ssl_context=context)
            await site.start()
        listening.append(host)
    return listening


async def serve_async(engine, options: ServeOptions) -> None:
    from pallet.kernel.api.app import make_app

    check_hosts(options)
    engine.plugins.load()  # every group once, before requests run in threads
    app = make_app(engine)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE, access_log=_access_log())
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    owned: dict[str, int] = {}
    try:
        listening = await _sites(runner, options, owned)
        print("pallet serve: listening on " + ", ".join(listening), file=sys.stderr, flush=True)
        if options.timeout:
            asyncio.ensure_future(_idle_exit(app, options.timeout, stop))
        await stop.wait()
    finally:
        # Stops accepting, lets requests in flight finish; containers run on under their monitors.
        await runner.cleanup()
        for address, inode in owned.items():  # not a newer server's socket made at the same path
            with contextlib.suppress(FileNotFoundError):
                if os.stat(address).st_ino == inode:
                    os.unlink(address)


async def _idle_exit(app: web.Application, timeout: float, stop: asyncio.Event) -> None:
    """--timeout: exit after ``timeout`` seconds with no request (socket activation starts us again)."""
    activity = app["activity"]
    while not stop.is_set():
        idle = activity.clock() - activity.last
        if idle >= timeout and not app["sessions"]:
            stop.set()
            return
        await asyncio.sleep(max(0.05, min(1.0, timeout - idle)))


def serve(engine, options: ServeOptions) -> None:
    asyncio.run(serve_async(engine, options))


def _access_log():
    """aiohttp's access log on stderr when PALLET_DEBUG is set, else none."""
    if not os.environ.get("PALLET_DEBUG"):
        return None
    import logging

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    return logging.getLogger("pallet.api")
