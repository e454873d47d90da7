"""End to end with ``pallet run``: name and alias resolution, isolation, published ports, concurrent runs."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.network.conftest import NET

SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www"


@pytest.fixture
def cli(pallet):
    """The real CLI on a private root with its own default bridge device; everything removed afterwards."""
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from tests.network.conftest import teardown_root

    config = pallet.root.parent / "pallet.toml"
    # Explicit subnets: the default pools may be taken by whatever else runs on this host.
    config.write_text(f'[network]\nbridge_name = "pt{uuid.uuid4().hex[:6]}0"\ndefault_subnet = "{NET}.80.0/24"\n'
                      'default_address_pools = "10.232.0.0/16:24"\n')
    pallet("image", "build-busybox", check=True)
    try:
        yield pallet
    finally:
        ids = pallet("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            pallet("rm", "-f", *ids)
        leaked = teardown_root(Engine(Config.load(root=str(pallet.root), config_path=str(config))))
        assert not leaked, f"left behind: {leaked}"


def wget(cli, network: str, url: str):
    # sh stays PID 1 so timeout's watchdog can kill wget (PID 1 ignores signals it has no handler for);
    # busybox-static's own ``wget -T`` crashes, hence timeout.
    # "; exit $?" keeps sh from exec-ing the command in its own place.
    return cli("run", "--rm", "--network", network, "busybox", "sh", "-c",
               f"busybox timeout 4 busybox wget -q -O - {url}; exit $?", timeout=60)


def wait_until_serving(cli, network: str, url: str):
    for _ in range(20):
        result = wget(cli, network, url)
        if result.returncode == 0:
            return result
        time.sleep(0.2)
    return result


def test_containers_find_each_other_by_name_and_alias_and_other_networks_cannot_reach(cli):
    for i, name in enumerate(("front", "side", "apart")):
        cli("network", "create", "--subnet", f"{NET}.{81 + i}.0/24", name, check=True)
    cli("run", "-d", "--name", "web", "--network", "front", "busybox", "sh", "-c", SERVE, check=True)
    by_name = wait_until_serving(cli, "front", "http://web/")
    assert by_name.returncode == 0, by_name.stderr
    assert by_name.stdout.startswith("hello-from-")

    cli("network", "connect", "--alias", "www", "side", "web", check=True)
    by_alias = wget(cli, "side", "http://www/")
    assert by_alias.returncode == 0 and by_alias.stdout == by_name.stdout, by_alias.stderr

    web_ip = json.loads(cli("inspect", "web", check=True).stdout)[0]["NetworkSettings"]["Networks"]["front"]["IPAddress"]
    assert not wget(cli, "apart", f"http://{web_ip}/").stdout, "a container on another network must not reach it"
    assert wget(cli, "apart", "http://web/").returncode != 0, "nor resolve its name"


def test_published_port_serves_localhost_and_a_second_claim_fails_cleanly(cli):
    from pallet.kernel.network.ports import _random_port

    port = _random_port("tcp", "127.0.0.1", set())
    cli("run", "-d", "--name", "pub", "-p", f"127.0.0.1:{port}:80", "busybox", "sh", "-c", SERVE, check=True)
    body = ""
    for _ in range(30):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                body = response.read().decode()
            break
        except OSError:
            time.sleep(0.1)
    assert body.startswith("hello-from-")
    assert cli("port", "pub", check=True).stdout.strip() == f"80/tcp -> 127.0.0.1:{port}"

    endpoints_before = cli("network", "inspect", "bridge", check=True).stdout
    second = cli("run", "-d", "--name", "pub2", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
    assert second.returncode != 0
    assert "port is already allocated" in second.stderr
    assert cli("network", "inspect", "bridge", check=True).stdout == endpoints_before


def test_concurrent_runs_get_distinct_addresses_released_on_rm(cli):
    cli("network", "create", "--subnet", f"{NET}.60.0/24", "busy", check=True)
    names = [f"n{i}" for i in range(4)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: cli("run", "-d", "--name", n, "--network", "busy", "busybox",
                                              "sleep", "60"), names))
    assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
    view = json.loads(cli("network", "inspect", "busy", check=True).stdout)[0]
    addresses = [c["IPv4Address"] for c in view["Containers"].values()]
    assert len(addresses) == 4 and len(set(addresses)) == 4
    cli("rm", "-f", *names, check=True)
    assert json.loads(cli("network", "inspect", "busy", check=True).stdout)[0]["Containers"] == {}
    cli("run", "-d", "--name", "again", "--network", "busy", "busybox", "sleep", "60", check=True)
    again = json.loads(cli("network", "inspect", "busy", check=True).stdout)[0]["Containers"]
    assert [c["IPv4Address"] for c in again.values()] == [f"{NET}.60.2/24"], "freed addresses are reused"


def test_connect_refuses_a_container_without_a_sandbox(cli):
    cli("network", "create", "--subnet", f"{NET}.61.0/24", "lonely", check=True)
    cli("run", "-d", "--name", "isolated", "--network", "none", "busybox", "sleep", "60", check=True)
    result = cli("network", "connect", "lonely", "isolated")
    assert result.returncode == 1
    assert result.error_lines == ["Error: container isolated uses network mode none and cannot be connected to "
                                  "other networks"]


def test_run_takes_fixed_ip_mac_and_alias_on_a_user_network(cli):
    net = f"fixed{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.91.0/24", net, check=True)
    server = cli("run", "-d", "--name", "srv", "--network", net, "--ip", f"{NET}.91.50",
                 "--mac-address", "92:d0:c6:0a:29:33", "--network-alias", "db", "busybox", "sh", "-c", SERVE)
    assert server.returncode == 0, server.stderr
    inside = cli("exec", "srv", "sh", "-c", "ip -o -4 addr show eth0; cat /sys/class/net/eth0/address", check=True)
    assert f"{NET}.91.50/24" in inside.stdout
    assert "92:d0:c6:0a:29:33" in inside.stdout
    assert "hello-from-" in wait_until_serving(cli, net, "http://db/").stdout
    settings = json.loads(cli("inspect", "srv", check=True).stdout)[0]["NetworkSettings"]["Networks"][net]
    assert settings["IPAddress"] == f"{NET}.91.50" and settings["MacAddress"] == "92:d0:c6:0a:29:33"
    assert "db" in settings["Aliases"]


def test_bad_ip_and_mac_are_usage_errors(cli):
    bad_ip = cli("run", "--rm", "--ip", "10.0.0.300", "busybox", "true")
    assert (bad_ip.returncode, bad_ip.error_lines) == (125, ['Error: invalid IPv4 address: "10.0.0.300"'])
    bad_mac = cli("run", "--rm", "--mac-address", "zz:00", "busybox", "true")
    assert (bad_mac.returncode, bad_mac.error_lines) == (125, ["Error: zz:00 is not a valid mac address"])


def test_connect_to_a_user_network_switches_the_resolver_to_the_embedded_dns(cli):
    cli("network", "create", "--subnet", f"{NET}.62.0/24", "named", check=True)
    cli("run", "-d", "--name", "plain", "--dns-option", "timeout:2", "busybox", "sleep", "60", check=True)
    before = cli("exec", "plain", "cat", "/etc/resolv.conf").stdout
    assert "nameserver 127.0.0.11" not in before
    cli("network", "connect", "named", "plain", check=True)
    after = cli("exec", "plain", "cat", "/etc/resolv.conf").stdout.splitlines()
    assert "nameserver 127.0.0.11" in after and "options timeout:2" in after  # the container's own options stay
    assert [line for line in after if line.startswith("nameserver")] == ["nameserver 127.0.0.11"]
    cli("run", "-d", "--name", "peer", "--network", "named", "busybox", "sleep", "60", check=True)
    peer_ip = json.loads(cli("inspect", "peer", check=True).stdout)[0]["NetworkSettings"]["Networks"]["named"]["IPAddress"]
    found = cli("exec", "plain", "nslookup", "peer")
    assert peer_ip in found.stdout, found.stdout + found.stderr


def test_aux_addresses_are_reserved_and_never_given_to_a_container(cli):
    net = f"aux{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.92.0/29", "--aux-address", f"router={NET}.92.2",
        "--aux-address", f"printer={NET}.92.3", net, check=True)
    config = json.loads(cli("network", "inspect", net, check=True).stdout)[0]["IPAM"]["Config"][0]
    assert config["AuxiliaryAddresses"] == {"router": f"{NET}.92.2", "printer": f"{NET}.92.3"}
    seen = cli("run", "--rm", "--network", net, "busybox", "ip", "-o", "-4", "addr", "show", "eth0", check=True)
    assert f"{NET}.92.4/29" in seen.stdout   # .1 is the gateway, .2 and .3 are reserved
    taken = cli("network", "create", "--subnet", f"{NET}.93.0/29", "--aux-address", f"gw={NET}.93.1", f"{net}b")
    assert taken.returncode == 1 and f"Address already in use: {NET}.93.1" in taken.stderr
    assert f"{net}b" not in cli("network", "ls", check=True).stdout   # nothing half-made stays
    alone = cli("network", "create", "--aux-address", f"x={NET}.94.2", f"{net}c")
    assert (alone.returncode, alone.error_lines) == (2, ["Error: an --aux-address needs a --subnet"])
