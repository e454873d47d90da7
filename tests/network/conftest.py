"""Network fixtures: a private engine per test, sandboxes made with ``ip netns``, and a leak check at the end."""

from __future__ import annotations

import os
import random
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pallet.kernel.config import Config
from pallet.kernel.engine import Engine


# Subnets for the networks tests create: random per session, so two checkouts running this suite
# at the same time on one host do not route the same subnet to two bridges.
NET = f"10.{random.SystemRandom().randint(100, 230)}"


@dataclass
class FakeContainer:
    """The fields of a container record that ``pallet.kernel.network.attach.connect`` reads (the test owns the sandbox)."""

    id: str
    name: str
    network_mode: str = "bridge"
    port_bindings: dict = field(default_factory=dict)
    host_config: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def run_in(sandbox: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(["nsenter", f"--net={sandbox}", *cmd], capture_output=True, text=True, timeout=timeout)


def root_links(root: Path) -> set[str]:
    """Links the bridge driver of ``root`` made (bridges and host-side veths), from its state files.

    Leak checks look only at these: other tests on this machine create and delete links concurrently.
    """
    import json

    names = set()
    for state in (Path(root) / "network" / "bridge").glob("*.json"):
        data = json.loads(state.read_text())
        names.add(data["bridge"])
        names.update(ep["veth"] for ep in data["endpoints"].values())
    return names


def teardown_root(engine) -> list[str]:
    """Remove every network of the engine's root; return what had to be removed by force (leaks)."""
    from pallet.kernel.network.store import NetworkStore
    from pallet.plugins.network.nft import table_exists, table_name

    made = root_links(engine.root)
    NetworkStore(engine).teardown_all()
    leaked = sorted(made & links())
    for name in leaked:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    table = table_name(engine.root)
    for family in ("ip", "ip6"):
        if table_exists(table, family):
            subprocess.run(["nft", "delete", "table", family, table])
            leaked.append(f"nft table {family} {table}")
    return leaked


@pytest.fixture
def engine(tmp_path):
    """An engine on a private root; its default bridge device has a per-test name."""
    prefix = "pt" + uuid.uuid4().hex[:6]
    config_file = tmp_path / "pallet.toml"
    # Pools of our own: the defaults may already be routed by whatever else runs on this host.
    config_file.write_text(f'[network]\nbridge_name = "{prefix}0"\ndefault_address_pools = "10.232.0.0/16:24"\n')
    engine = Engine(Config.load(root=str(tmp_path / "root"), config_path=str(config_file)))
    engine.test_prefix = prefix
    try:
        yield engine
    finally:
        leaked = teardown_root(engine)
        assert not leaked, f"left behind: {leaked}"


@pytest.fixture
def sandbox():
    """Factory of network namespaces (``/run/netns/<unique>``) with lo up, all removed afterwards."""
    made = []

    def make() -> str:
        name = f"ptns{os.getpid()}{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        path = f"/run/netns/{name}"
        subprocess.run(["nsenter", f"--net={path}", "ip", "link", "set", "lo", "up"], check=True)
        return path

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture
def container():
    def make(name: str | None = None, **kwargs) -> FakeContainer:
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        return FakeContainer(id=cid, name=name or f"c{cid[:8]}", **kwargs)

    return make


@pytest.fixture
def httpd_in():
    """Start ``busybox httpd`` serving a marker file inside a sandbox; stopped afterwards."""
    procs = []

    def start(sandbox: str, directory: Path, text: str, port: int = 80):
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "index.html").write_text(text)
        proc = subprocess.Popen(["nsenter", f"--net={sandbox}", "busybox", "httpd", "-f", "-p", str(port),
                                 "-h", str(directory)])
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
