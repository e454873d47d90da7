"""The network conformance kit: networks made and removed, endpoints joined to a real sandbox and left, no leaks.

Collected when ``--pallet-network-driver NAME`` is given (``pallet plugins check network
NAME``); a test module may ``from pallet.kernel.conformance.network import *`` and override the
``network_driver_name`` fixture. ``--pallet-network-opt K=V`` are the driver's options (the
engine's, e.g. ``cluster-store``). The driver is called as the core calls it (see
``NetworkDriver``'s docstrings): subnets in 10.251.0.0/16, sandboxes that are real network
namespaces under the kit's run root, and the host's links are compared before and after.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess

import pytest

from pallet.kernel.conformance import harness


@pytest.fixture
def network_driver_name(request) -> str:
    return harness.driver_name(request, "network")


@pytest.fixture
def network_home(request):
    with harness.home(request, "network") as home:
        yield home


def host_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


@pytest.fixture
def network_driver(request, network_driver_name, network_home):
    """A fresh driver in ``<root>/network/NAME``; the host's links are the same before and after the test.

    The check sees every link of the network namespace: run the kit where nothing else adds links
    meanwhile (alone, or under ``unshare --net``)."""
    root = os.path.join(network_home, "root")
    home = os.path.join(root, "network", network_driver_name.replace(":", "_"))
    before = host_links()
    instance = harness.open_for_kit("network", network_driver_name, home, harness.options(request, "network"),
                                    root=root, run_root=os.path.join(network_home, "run"))
    yield instance
    leaked = host_links() - before
    assert not leaked, f"links left on the host after the test removed every network: {sorted(leaked)}"


class Sandboxes:
    """Real network namespaces, as the core makes them, removed afterwards."""

    def __init__(self, run_root: str):
        self.run_root, self.made = run_root, []

    def new(self) -> str:
        from pallet.kernel.sandbox import create_sandbox

        cid = os.urandom(16).hex()
        self.made.append(cid)
        return str(create_sandbox(self.run_root, cid))

    def remove_all(self):
        from pallet.kernel.sandbox import remove_sandbox

        for cid in self.made:
            remove_sandbox(self.run_root, cid)


@pytest.fixture
def sandboxes(network_driver):
    if not network_driver.needs_sandbox:
        pytest.skip("the driver's containers use the host's network namespace (needs_sandbox = False)")
    made = Sandboxes(str(network_driver.context.run_root))
    try:
        yield made
    finally:
        made.remove_all()


def in_sandbox(sandbox: str, *argv: str) -> str:
    return subprocess.run(["nsenter", f"--net={sandbox}", *argv], capture_output=True, text=True, check=True).stdout


def addresses(sandbox: str) -> dict[str, list[str]]:
    """``{interface: [CIDR, …]}`` of IPv4 addresses in the sandbox."""
    found: dict[str, list[str]] = {}
    for line in in_sandbox(sandbox, "ip", "-o", "-4", "addr", "show").splitlines():
        fields = line.split()
        found.setdefault(fields[1].split("@")[0], []).append(fields[3])
    return found


def subnet(index: int = 0) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.251.{(os.getpid() + index) % 250}.0/24")


def new_network(driver, index=0, **options):
    """``create_network`` as the core calls it; returns ``(id, data, subnet, gateway)``."""
    network_id = os.urandom(32).hex()
    net = subnet(index)
    gateway = str(net.network_address + 1)
    data = driver.create_network(network_id, {"internal": "false", **options},
                                 [{"pool": str(net), "gateway": f"{gateway}/{net.prefixlen}"}])
    assert isinstance(data, dict), f"create_network() must return a dict for the core to store, got {data!r}"
    json.dumps(data)  # the core stores it as JSON
    return network_id, data, net, gateway


def test_create_and_delete_network(network_driver):
    network_id, data, _net, _gw = new_network(network_driver)
    network_driver.delete_network(network_id, data)
    network_driver.delete_network(network_id, data)  # missing pieces are not an error


def endpoint_options(index: int) -> dict:
    return {"mac_address": "", "port_bindings": {}, "container_id": os.urandom(32).hex(),
            "container_name": f"kit{index}", "aliases": []}


def attach(driver, network_id, data, net, gateway, sandbox, index=2, interface="eth0"):
    from pallet.kernel.drivers import EndpointInfo

    endpoint_id = os.urandom(32).hex()
    address = f"{net.network_address + index}/{net.prefixlen}"
    info = driver.create_endpoint(network_id, endpoint_id, data, EndpointInfo(address=address, gateway=gateway),
                                  endpoint_options(index))
    assert isinstance(info, EndpointInfo), f"create_endpoint() must return an EndpointInfo, got {info!r}"
    assert info.address == address, f"create_endpoint() changed the address IPAM gave: {info.address}, want {address}"
    joined = driver.join(network_id, endpoint_id, data, sandbox,
                         {"address": address, "mac_address": info.mac_address, "interface": interface, "gateway": gateway})
    return endpoint_id, address, joined


def expect_address(sandbox: str, joined, address: str) -> None:
    """The joined interface holds ``address``; a driver that wires nothing (``interface=""``) left only lo."""
    found = addresses(sandbox)
    if not joined.interface:
        assert set(found) <= {"lo"}, f'join() returned interface "" (nothing wired) but the sandbox has {found}'
        return
    assert address in found.get(joined.interface, []), \
        f"after join() the sandbox's interface {joined.interface} lacks {address}: {found}"


def test_join_configures_the_sandbox_and_leave_undoes_it(network_driver, sandboxes):
    from pallet.kernel.drivers import JoinInfo

    network_id, data, net, gateway = new_network(network_driver)
    sandbox = sandboxes.new()
    try:
        endpoint_id, address, joined = attach(network_driver, network_id, data, net, gateway, sandbox)
        assert isinstance(joined, JoinInfo), f"join() must return a JoinInfo, got {joined!r}"
        expect_address(sandbox, joined, address)
        if joined.interface:
            state = in_sandbox(sandbox, "ip", "-o", "link", "show", joined.interface)
            assert "UP" in state.split("<", 1)[1].split(">", 1)[0].split(","), f"{joined.interface} is not up: {state}"
        routes = in_sandbox(sandbox, "ip", "-4", "route", "show", "default")
        if joined.gateway:
            assert f"via {joined.gateway}" in routes, f"join() reported gateway {joined.gateway}, the routes are: {routes!r}"
        network_driver.leave(network_id, endpoint_id, data, sandbox)
        assert set(addresses(sandbox)) <= {"lo"}, f"leave() left {joined.interface} in the sandbox: {addresses(sandbox)}"
        network_driver.delete_endpoint(network_id, endpoint_id, data)
        network_driver.delete_endpoint(network_id, endpoint_id, data)  # a second delete is not an error
    finally:
        network_driver.delete_network(network_id, data)


def test_two_containers_on_one_network(network_driver, sandboxes):
    network_id, data, net, gateway = new_network(network_driver)
    first, second = sandboxes.new(), sandboxes.new()
    try:
        one = attach(network_driver, network_id, data, net, gateway, first, index=2)
        two = attach(network_driver, network_id, data, net, gateway, second, index=3)
        expect_address(first, one[2], one[1])
        expect_address(second, two[2], two[1])
        for (endpoint_id, _address, _joined), sandbox in ((one, first), (two, second)):
            network_driver.leave(network_id, endpoint_id, data, sandbox)
            network_driver.delete_endpoint(network_id, endpoint_id, data)
    finally:
        network_driver.delete_network(network_id, data)


def test_one_container_on_two_networks(network_driver, sandboxes):
    first_id, first_data, first_net, gateway = new_network(network_driver, 0)
    second_id, second_data, second_net, _ = new_network(network_driver, 1)
    sandbox = sandboxes.new()
    try:
        # As the core does: the gateway (default route) comes from the first network only.
        one = attach(network_driver, first_id, first_data, first_net, gateway, sandbox, interface="eth0")
        two = attach(network_driver, second_id, second_data, second_net, "", sandbox, interface="eth1")
        if one[2].interface or two[2].interface:
            assert one[2].interface != two[2].interface, f"both joins used the interface {one[2].interface}"
        expect_address(sandbox, one[2], one[1])
        expect_address(sandbox, two[2], two[1])
        for endpoint_id, network_id, data in ((one[0], first_id, first_data), (two[0], second_id, second_data)):
            network_driver.leave(network_id, endpoint_id, data, sandbox)
            network_driver.delete_endpoint(network_id, endpoint_id, data)
    finally:
        network_driver.delete_network(first_id, first_data)
        network_driver.delete_network(second_id, second_data)


def test_delete_network_removes_what_endpoints_left(network_driver, sandboxes):
    network_id, data, net, gateway = new_network(network_driver)
    sandbox = sandboxes.new()
    attach(network_driver, network_id, data, net, gateway, sandbox)
    # A crash between join and leave: the core removes the sandbox, then deletes the network.
    sandboxes.remove_all()
    sandboxes.made.clear()
    network_driver.delete_network(network_id, data)
