"""Bridge driver and IPAM through pallet.kernel.network with sandboxes the test makes: traffic, isolation, teardown."""

from __future__ import annotations

import os
import time
import urllib.request

import pytest

from pallet.kernel.network import attach as net
from pallet.kernel.errors import Conflict, PalletError
from pallet.kernel.network.store import NetworkStore
from tests.network.conftest import NET, links, root_links, run_in


def veths_of(engine) -> set[str]:
    return {name for name in root_links(engine.root) if name.startswith("pv")}


def ping(sandbox: str, ip: str) -> bool:
    return run_in(sandbox, "busybox", "ping", "-c", "1", "-W", "1", ip).returncode == 0


def test_two_sandboxes_on_one_network_reach_each_other(engine, sandbox, container):
    NetworkStore(engine).create("front", subnet=f"{NET}.7.0/24")
    a, b = sandbox(), sandbox()
    ra = net.connect(engine, container(network_mode="front"), a)
    rb = net.connect(engine, container(network_mode="front"), b)
    assert ra["IPAddress"] == f"{NET}.7.2" and rb["IPAddress"] == f"{NET}.7.3"
    assert ra["Gateway"] == f"{NET}.7.1"
    second_octet = int(NET.split(".")[1])
    assert ra["MacAddress"] == f"02:42:0a:{second_octet:02x}:07:02", "Docker's MAC scheme: 02:42 + the IPv4 bytes"
    assert ra["dns_servers"] == ["127.0.0.11"]
    addr = run_in(a, "ip", "-4", "-o", "addr", "show", "eth0").stdout
    assert f"{NET}.7.2/24" in addr
    assert f"default via {NET}.7.1 dev eth0" in run_in(a, "ip", "route").stdout
    assert ping(a, rb["IPAddress"]) and ping(b, ra["IPAddress"])


def test_default_bridge_network_is_made_on_first_use(engine, sandbox, container):
    store = NetworkStore(engine)
    assert [r.name for r in store.all()][:3] == ["bridge", "host", "none"]
    assert not store.get("bridge").materialized
    result = net.connect(engine, container(), sandbox())
    bridge = store.get("bridge")
    assert bridge.materialized and bridge.driver_data["bridge"] == engine.test_prefix + "0"
    assert engine.test_prefix + "0" in links()
    assert result["dns_servers"] and "127.0.0.11" not in result["dns_servers"]


def test_default_bridge_can_go_away_with_its_last_container(engine, sandbox, container):
    from pallet.plugins.network.nft import table_exists, table_name

    engine.config.file["network"]["keep_default_bridge"] = False
    store = NetworkStore(engine)
    first, second = container(), container()
    net.connect(engine, first, sandbox())
    net.connect(engine, second, sandbox())
    device = store.get("bridge").driver_data["bridge"]
    net.disconnect(engine, first)
    assert device in links(), "still in use by the second container"
    net.disconnect(engine, second)
    assert device not in links() and not table_exists(table_name(engine.root))
    assert not store.get("bridge").materialized and store.ipam("default").pools() == {}
    again = net.connect(engine, container(), sandbox())
    assert again["Gateway"] and device in links()


def test_default_bridge_stays_up_by_default(engine, sandbox, container):
    c = container()
    net.connect(engine, c, sandbox())
    net.disconnect(engine, c)
    assert NetworkStore(engine).get("bridge").materialized
    assert NetworkStore(engine).get("bridge").driver_data["bridge"] in links()


def test_networks_are_isolated_from_each_other(engine, sandbox, container):
    store = NetworkStore(engine)
    store.create("red", subnet=f"{NET}.8.0/24")
    store.create("blue", subnet=f"{NET}.9.0/24")
    a, b = sandbox(), sandbox()
    ra = net.connect(engine, container(network_mode="red"), a)
    net.connect(engine, container(network_mode="blue"), b)
    assert ping(b, f"{NET}.9.1"), "a sandbox reaches its own gateway"
    assert not ping(b, ra["IPAddress"]), "blue must not reach red"


def test_internal_network_has_no_default_route(engine, sandbox, container):
    NetworkStore(engine).create("quiet", subnet=f"{NET}.10.0/24", internal=True)
    a = sandbox()
    net.connect(engine, container(network_mode="quiet"), a)
    assert "default" not in run_in(a, "ip", "route").stdout


def test_fixed_ip_mac_and_mtu(engine, sandbox, container):
    NetworkStore(engine).create("fixed", subnet=f"{NET}.11.0/24", ip_range=f"{NET}.11.128/25",
                                options={"com.docker.network.driver.mtu": "1400"})
    a, b = sandbox(), sandbox()
    ra = net.connect(engine, container(network_mode="fixed"), a, ip=f"{NET}.11.50", mac="02:11:22:33:44:55")
    rb = net.connect(engine, container(network_mode="fixed"), b)
    assert ra["IPAddress"] == f"{NET}.11.50"
    assert rb["IPAddress"] == f"{NET}.11.129", "automatic addresses come from --ip-range"
    shown = run_in(a, "ip", "-o", "link", "show", "eth0").stdout
    assert "02:11:22:33:44:55" in shown and "mtu 1400" in shown
    with pytest.raises(Conflict):
        net.connect(engine, container(network_mode="fixed"), sandbox(), ip=f"{NET}.11.50")


def test_disconnect_releases_address_and_links(engine, sandbox, container):
    store = NetworkStore(engine)
    store.create("cycle", subnet=f"{NET}.12.0/24")
    c = container(network_mode="cycle")
    first = net.connect(engine, c, sandbox())
    veths = veths_of(engine)
    assert len(veths) == 1 and veths <= links(), "one host-side veth per endpoint"
    net.disconnect(engine, c)
    net.disconnect(engine, c)  # idempotent
    assert not veths & links() and not veths_of(engine)
    again = net.connect(engine, container(network_mode="cycle"), sandbox())
    assert again["IPAddress"] == first["IPAddress"]


def test_disconnect_after_the_sandbox_vanished(engine, sandbox, container):
    import subprocess

    NetworkStore(engine).create("crash", subnet=f"{NET}.13.0/24")
    c = container(network_mode="crash")
    path = sandbox()
    net.connect(engine, c, path)
    veths = veths_of(engine)
    subprocess.run(["ip", "netns", "del", path.rsplit("/", 1)[1]], check=True)
    net.disconnect(engine, c)
    assert not veths & links() and not veths_of(engine)
    assert NetworkStore(engine).endpoints() == []


def test_remove_network_refuses_active_endpoints_then_cleans_everything(engine, sandbox, container):
    from pallet.plugins.network.nft import table_exists, table_name

    store = NetworkStore(engine)
    record = store.create("gone", subnet=f"{NET}.14.0/24")
    c = container(network_mode="gone")
    net.connect(engine, c, sandbox())
    with pytest.raises(Conflict, match="has active endpoints"):
        store.remove("gone")
    net.disconnect(engine, c)
    store.remove("gone")
    assert record.driver_data["bridge"] not in links()
    assert not table_exists(table_name(engine.root))
    assert store.ipam("default").pools() == {}


def test_published_port_reaches_the_sandbox_from_localhost(engine, sandbox, container, httpd_in, tmp_path):
    from pallet.kernel.network.ports import _random_port

    port = _random_port("tcp", "127.0.0.1", set())
    a = sandbox()
    httpd_in(a, tmp_path / "www", "hello from the sandbox")
    c = container(port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]})
    result = net.connect(engine, c, a)
    assert result["ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    body = _fetch(f"http://127.0.0.1:{port}/")
    assert body == "hello from the sandbox"

    before = veths_of(engine)
    with pytest.raises(Conflict, match="port is already allocated"):
        net.connect(engine, container(port_bindings={"80/tcp": [{"HostIp": "", "HostPort": str(port)}]}), sandbox())
    assert veths_of(engine) == before and len(NetworkStore(engine).endpoints()) == 1
    bridge = NetworkStore(engine).get("bridge").driver_data["bridge"]
    assert set(os.listdir(f"/sys/class/net/{bridge}/brif")) == before, "no veth left by the failure"


def test_random_host_port(engine, sandbox, container):
    c = container(port_bindings={"8080/tcp": [{"HostIp": "", "HostPort": ""}], "53/udp": None})
    result = net.connect(engine, c, sandbox())
    tcp = int(result["ports"]["8080/tcp"][0]["HostPort"])
    assert 1024 < tcp < 65536 and result["ports"]["53/udp"][0]["HostPort"]


def test_port_busy_on_the_host_is_refused(engine, sandbox, container):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PalletError, match="already allocated"):
            net.connect(engine, container(port_bindings={"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}),
                        sandbox())


def _fetch(url: str) -> str:
    deadline = time.monotonic() + 5
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_networks_added_with_connect_are_joined_again_on_restart(engine, sandbox, container):
    store = NetworkStore(engine)
    store.create("main", subnet=f"{NET}.15.0/24")
    store.create("extra", subnet=f"{NET}.16.0/24")
    c = container(network_mode="main")
    box = sandbox()
    first = net.connect(engine, c, box)
    added = net.connect(engine, c, box, network="extra", aliases=["x"])
    assert "eth1" in run_in(box, "ip", "-o", "link").stdout
    c.network = {"Networks": {**first["Networks"], **added["Networks"]}}
    net.disconnect(engine, c)
    assert store.endpoints() == []

    again = sandbox()
    result = net.connect(engine, c, again)
    assert sorted(result["Networks"]) == ["extra", "main"]
    assert result["Networks"]["extra"]["Aliases"] == ["x"]
    shown = run_in(again, "ip", "-o", "-4", "addr").stdout
    assert f"{NET}.15.2/24" in shown and f"{NET}.16.2/24" in shown
