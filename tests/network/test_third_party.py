"""A third-party network driver (the contrib vendor's macvlan) through NetworkStore, as ``network create -d`` uses it."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from pallet.kernel.network import attach as net
from pallet.kernel.network.store import NetworkStore
from tests.conftest import REPO
from tests.network.conftest import NET, run_in

VENDOR_SRC = REPO / "contrib" / "pallet-vendor-example" / "src"


@pytest.fixture
def parent_link():
    """A veth pair on the host to carry macvlan endpoints (no dummy links in this kernel); removed afterwards."""
    name = f"ptm{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p"], check=True)
    try:
        for end in (name, f"{name}p"):
            subprocess.run(["ip", "link", "set", end, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_vendor_macvlan_network_through_the_store(engine, sandbox, container, parent_link, monkeypatch):
    from pallet.kernel.plugins import DriverRecord, PluginRecord

    monkeypatch.syspath_prepend(str(VENDOR_SRC))
    sys.modules.pop("pallet_vendor_example.network", None)
    from pallet_vendor_example.network import MacvlanNetwork

    plugin = PluginRecord("macvlan", "pallet.network", "pallet_vendor_example.network")
    engine.plugins.load("network")
    engine.plugins.drivers["network"]["macvlan"] = DriverRecord("macvlan", "network", MacvlanNetwork, plugin)

    store = NetworkStore(engine)
    store.create("mv", driver="macvlan", subnet=f"{NET}.90.0/24", options={"parent": parent_link})
    a, b = sandbox(), sandbox()
    ca = container(network_mode="mv")
    ra = net.connect(engine, ca, a)
    cb = container(network_mode="mv")
    rb = net.connect(engine, cb, b)
    assert ra["IPAddress"] == f"{NET}.90.2" and rb["IPAddress"] == f"{NET}.90.3"
    assert f"default via {NET}.90.1" in run_in(a, "ip", "route").stdout
    assert run_in(a, "busybox", "ping", "-c", "1", "-W", "2", rb["IPAddress"]).returncode == 0
    net.disconnect(engine, cb)
    assert "eth0" not in run_in(b, "ip", "-o", "link").stdout
    net.disconnect(engine, ca)
    store.remove("mv")
    assert [r.name for r in store.all() if r.driver == "macvlan"] == []
