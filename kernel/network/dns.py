"""Embedded DNS for user networks: one small process per network answering at 127.0.0.11 in each sandbox.

A kernel service: every network driver whose sandboxes use ``127.0.0.11`` gets it from the store.

Why this shape: the process lives in the host's network namespace (so forwarding to the host's
resolvers just works), and ``ensure`` creates a UDP socket bound to 127.0.0.11:53 *inside* the
container's namespace and hands it over with SCM_RIGHTS. A socket keeps the namespace it was
created in, so one process serves every container of the network without a rule in any sandbox,
and the socket exists before the container starts, so no early query is lost. Names come from the
network's endpoint records on disk; the process exits when the network's record disappears.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

DNS_ADDRESS = ("127.0.0.11", 53)
A, AAAA = 1, 28


# --- the engine side ------------------------------------------------------------------------

def _paths(store, record) -> tuple[Path, Path, Path]:
    base = Path(store.engine.run_root) / "network" / "dns"
    return base / f"{record.id[:16]}.pid", base / f"{record.id[:16]}.sock", base / f"{record.id[:16]}.log"


def ensure(store, record, endpoint) -> None:
    """Make sure the network's responder runs and listens in ``endpoint``'s sandbox.

    A responder started afresh (first endpoint, or after a crash took the old one and its
    sockets) gets a socket for every endpoint of the network.
    """
    pidfile, control, log = _paths(store, record)
    started = _alive(pidfile, record.id) is None
    if started:
        _start(store, record, pidfile, control, log)
    for each in store.endpoints(record.id) if started else [endpoint]:
        _hand_over(control, each)


def _start(store, record, pidfile: Path, control: Path, log: Path) -> None:
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    control.unlink(missing_ok=True)
    repo = Path(__file__).resolve().parents[2]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pallet.kernel.network.dns", str(store.dir), record.id, str(control)],
            cwd=repo, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + 5
    while not control.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the DNS responder for network {record.name} did not start (see {log})")
        time.sleep(0.01)


def _hand_over(control: Path, endpoint) -> None:
    try:
        sock = socket_in_netns(endpoint.sandbox)
    except OSError:
        return  # the sandbox is gone (a crashed container); nothing to serve
    with sock, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(str(control))
        socket.send_fds(conn, [endpoint.container_id.encode()], [sock.fileno()])
        conn.recv(1)  # the responder has registered the socket


def socket_in_netns(sandbox: str) -> socket.socket:
    """A UDP socket bound to 127.0.0.11:53 in the namespace at ``sandbox``."""
    from pallet.kernel.sandbox import in_netns

    def bound():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(DNS_ADDRESS)
        return sock

    return in_netns(sandbox, bound)


def stop(store, record) -> None:
    pidfile, control, log = _paths(store, record)
    pid = _alive(pidfile, record.id)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if _alive(pidfile, record.id) is None:
                break
            time.sleep(0.01)
    for path in (pidfile, control, log):
        path.unlink(missing_ok=True)


def _alive(pidfile: Path, network_id: str) -> int | None:
    """The responder's pid if it runs (checked by its command line, so a reused pid is not killed)."""
    try:
        pid = int(pidfile.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid if network_id.encode() in cmdline and state != "Z" else None


# --- the responder process --------------------------------------------------------------------

class Responder:
    def __init__(self, networks_dir: Path, network_id: str, control: Path):
        self.record = networks_dir / f"{network_id}.json"
        self.endpoints = networks_dir / "endpoints" / network_id
        self.control = control
        self.selector = selectors.DefaultSelector()
        self.owners: dict[socket.socket, str] = {}
        from pallet.kernel.network.resolv import host_nameservers

        self.upstream = host_nameservers()

    def serve(self) -> None:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        tmp = self.control.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        server.bind(str(tmp))
        server.listen(16)
        os.rename(tmp, self.control)  # appears only once it accepts: the starter waits for it
        self.selector.register(server, selectors.EVENT_READ, self._accept)
        while self.record.exists():
            for key, _ in self.selector.select(timeout=2):
                key.data(key.fileobj)
            self._drop_departed()

    def _accept(self, server) -> None:
        conn, _ = server.accept()
        with conn:
            msg, fds, _flags, _addr = socket.recv_fds(conn, 128, 1)
            if fds:
                sock = socket.socket(fileno=fds[0])
                self.owners[sock] = msg.decode()
                self.selector.register(sock, selectors.EVENT_READ, self._query)
            conn.send(b"k")

    def _drop_departed(self) -> None:
        for sock, container_id in list(self.owners.items()):
            if not (self.endpoints / f"{container_id}.json").exists():
                self.selector.unregister(sock)
                sock.close()
                del self.owners[sock]

    def _query(self, sock) -> None:
        try:
            packet, peer = sock.recvfrom(4096)
        except OSError:
            return
        try:
            name, qtype, question_end = parse_question(packet)
        except ValueError:
            return
        asker = self.owners.get(sock, "")
        addresses = self.lookup(name, asker)
        if addresses is not None:   # a name of this network: answered here, also when it has no address of the type
            if qtype == AAAA:
                answer = build_answer(packet, question_end, self.lookup(name, asker, "address6") or [], AAAA)
            else:
                answer = build_answer(packet, question_end, addresses if qtype == A else [])
            sock.sendto(answer, peer)
        else:
            threading.Thread(target=self._forward, args=(sock, packet, peer), daemon=True).start()

    def lookup(self, name: str, asker: str = "", field: str = "address") -> list[str] | None:
        """Addresses for ``name`` as container ``asker`` sees them: its own links' aliases first.
        ``field`` ``address6`` gives the IPv6 ones (of endpoints on an IPv6 network; services have none)."""
        name = name.rstrip(".").lower()
        from pallet.kernel.network import services

        for link in self._links(asker):
            target, _sep, alias = link.rpartition(":")
            if alias.lower() == name:
                name = target.lower()
                break
        # A cluster service's name (its VIP) wins over a task container that has it as an alias.
        service = services.lookup(self.endpoints.parent.parent, self.endpoints.name, name)
        if service is not None:
            return service if field == "address" else []
        found = []
        for path in self.endpoints.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                ep = json.loads(path.read_text())
                names = {ep["container_name"].lower(), ep["container_id"][:12], *(a.lower() for a in ep["aliases"])}
                if name in names and ep.get(field):
                    found.append(ep[field].split("/")[0])
        if field != "address":
            return found or None
        with contextlib.suppress(OSError, ValueError):  # remote endpoints of an overlay, kept by its agent
            found += json.loads(self.endpoints.with_name(f"{self.endpoints.name}.remote").read_text()).get(name, [])
        return found or None

    def _links(self, container_id: str) -> list[str]:
        """The ``CONTAINER:ALIAS`` links of the container's endpoint on this network (``network connect --link``)."""
        if not container_id:
            return []
        try:
            return json.loads((self.endpoints / f"{container_id}.json").read_text()).get("links") or []
        except (OSError, ValueError):
            return []

    def _forward(self, sock, packet: bytes, peer) -> None:
        for server in self.upstream:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as up:
                up.settimeout(2)
                try:
                    up.sendto(packet, (server, 53))
                    reply, _ = up.recvfrom(4096)
                except OSError:
                    continue
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)
                return
        with contextlib.suppress(OSError, ValueError):
            sock.sendto(build_answer(packet, parse_question(packet)[2], [], rcode=2), peer)


def parse_question(packet: bytes) -> tuple[str, int, int]:
    """(qname, qtype, offset after the question) of a one-question query."""
    if len(packet) < 12 or struct.unpack("!H", packet[4:6])[0] != 1:
        raise ValueError("not a single-question query")
    labels, pos = [], 12
    while True:
        if pos >= len(packet):
            raise ValueError("truncated name")
        length = packet[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            raise ValueError("compressed question")
        labels.append(packet[pos:pos + length].decode("ascii", "replace"))
        pos += length
    qtype, _qclass = struct.unpack("!HH", packet[pos:pos + 4])
    return ".".join(labels), qtype, pos + 4


def build_answer(query: bytes, question_end: int, addresses: list[str], rtype: int = 1, rcode: int = 0) -> bytes:
    """A response to ``query`` with one A (``rtype`` 1) or AAAA (28) record per address (TTL 600, Docker's);
    empty means NOERROR/no data."""
    flags = 0x8000 | (struct.unpack("!H", query[2:4])[0] & 0x0100) | 0x0080 | rcode  # QR, RD copied, RA
    header = query[:2] + struct.pack("!HHHHH", flags, 1, len(addresses), 0, 0)
    family, size = (socket.AF_INET6, 16) if rtype == AAAA else (socket.AF_INET, 4)
    answers = b"".join(struct.pack("!HHHIH", 0xC00C, rtype, 1, 600, size) + socket.inet_pton(family, a)
                       for a in addresses)
    return header + query[12:question_end] + answers


def main(argv: list[str]) -> None:
    networks_dir, network_id, control = Path(argv[0]), argv[1], Path(argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        Responder(networks_dir, network_id, control).serve()
    finally:
        control.unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1:])
