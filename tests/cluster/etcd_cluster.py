"""A real 3-member etcd cluster for the orchestration tests, on loopback addresses and free ports."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import uuid
from pathlib import Path


def free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class Member:
    def __init__(self, name: str, host: str, data_dir: Path, log: Path):
        self.name, self.host, self.data_dir, self.log = name, host, data_dir, log
        self.client, self.peer = free_port(host), free_port(host)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client}"

    def start(self, initial_cluster: str, token: str) -> None:
        self.proc = subprocess.Popen(
            ["etcd", "--name", self.name, "--data-dir", str(self.data_dir),
             "--listen-client-urls", f"http://{self.endpoint}", "--advertise-client-urls", f"http://{self.endpoint}",
             "--listen-peer-urls", f"http://{self.host}:{self.peer}",
             "--initial-advertise-peer-urls", f"http://{self.host}:{self.peer}",
             "--initial-cluster", initial_cluster, "--initial-cluster-token", token,
             "--initial-cluster-state", "new", "--heartbeat-interval", "100", "--election-timeout", "1000"],
            stdout=subprocess.DEVNULL, stderr=self.log.open("wb"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EtcdCluster:
    def __init__(self, members: list[Member]):
        self.members = members

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(m.endpoint for m in self.members)

    def client(self, timeout: float = 5.0):
        from pallet.kernel.network.etcd import Etcd

        return Etcd(self.url, timeout=timeout)


@contextlib.contextmanager
def etcd_cluster(tmp_path: Path, size: int = 3):
    """Start ``size`` members, wait until they serve; stop them afterwards (their data is in tmp_path)."""
    token = "t" + uuid.uuid4().hex[:8]
    members = [Member(f"{token}m{i}", f"127.0.0.{11 + i}", tmp_path / f"etcd{i}", tmp_path / f"etcd{i}.log")
               for i in range(size)]
    initial = ",".join(f"{m.name}=http://{m.host}:{m.peer}" for m in members)
    try:
        for member in members:
            member.start(initial, token)
        cluster = EtcdCluster(members)
        _wait_serving(cluster)
        yield cluster
    finally:
        for member in members:
            member.stop()


def _wait_serving(cluster: EtcdCluster) -> None:
    deadline = time.monotonic() + 60
    etcd = cluster.client(timeout=2)
    while True:
        try:
            etcd.put("/pallet-test-probe", "1")
            etcd.delete("/pallet-test-probe")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
