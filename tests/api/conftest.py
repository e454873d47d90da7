"""Fixtures for the Engine API tests: ``pallet serve`` on a private root with busybox, and real clients."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.containers.conftest import bb  # noqa: F401  (the private root with busybox:latest)

DOCKER = "/usr/local/bin/docker"


class Server:
    """A running ``pallet serve``, its socket, and the docker CLI pointed at it."""

    def __init__(self, pallet, socket_path: Path, process: subprocess.Popen, log: Path):
        self.pallet, self.socket, self.process, self.log = pallet, socket_path, process, log
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{socket_path}",
                    "DOCKER_CONFIG": str(socket_path.parent / "docker-config")}

    def docker(self, *args: str, input: str | None = None, timeout: float = 60):
        return subprocess.run([DOCKER, *args], input=input, capture_output=True, text=True, timeout=timeout,
                              env=self.env)

    def request(self, method: str, path: str, body=None, headers=None):
        """One raw HTTP request on the socket: (status, headers, parsed JSON body or text)."""
        connection = UnixConnection(str(self.socket))
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        raw = response.read()
        connection.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode()
        return response.status, dict(response.getheaders()), payload

    def client(self):
        import docker

        return docker.DockerClient(base_url=f"unix://{self.socket}", timeout=60)


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=60)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


def start_server(pallet, socket_path: Path, *extra: str, env: dict | None = None, engine: bool = False):
    """``pallet serve`` on ``pallet``'s root; without the resident engine beside it unless ``engine``
    (an engine per test would preload pallet ~100 times in this module's pass; its own tests use it)."""
    log = socket_path.parent / "serve.log"
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(pallet.root), "--run-root", str(pallet.run_root),
           "serve", "-H", f"unix://{socket_path}", *([] if engine else ["--no-engine"]), *extra]
    process = subprocess.Popen(cmd, cwd=str(REPO), env={**pallet.env, **(env or {})}, stdout=subprocess.DEVNULL,
                               stderr=open(log, "w"))
    while not socket_path.exists():
        if process.poll() is not None:
            raise AssertionError(f"pallet serve exited {process.returncode}: {log.read_text()}")
        time.sleep(0.02)
    return Server(pallet, socket_path, process, log)


def stop_server(server: Server) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(60)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@pytest.fixture
def api(bb, tmp_path):  # noqa: F811
    """``pallet serve`` on ``bb``'s root, stopped (SIGTERM) before the root is cleaned up."""
    server = start_server(bb, tmp_path / "api.sock")
    try:
        yield server
    finally:
        stop_server(server)
