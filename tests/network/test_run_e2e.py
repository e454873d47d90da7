"""End to end with ``pallet run``: name and alias resolution, isolation, published ports, concurrent runs."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def test_connect_link_alias_resolves_for_that_container_only(cli):
    net = f"lk{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.95.0/24", net, check=True)
    cli("run", "-d", "--name", "db", "--network", net, "busybox", "sleep", "60", check=True)
    cli("run", "-d", "--name", "app", "busybox", "sleep", "60", check=True)
    cli("run", "-d", "--name", "other", "--network", net, "busybox", "sleep", "60", check=True)
    cli("network", "connect", "--link", "db:database", net, "app", check=True)
    db_ip = json.loads(cli("inspect", "db", check=True).stdout)[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
    found = cli("exec", "app", "nslookup", "database")
    assert found.returncode == 0 and db_ip in found.stdout, found.stdout + found.stderr
    assert cli("exec", "other", "nslookup", "database").returncode != 0   # container-scoped, as Docker's links
    settings = json.loads(cli("inspect", "app", check=True).stdout)[0]["NetworkSettings"]["Networks"][net]
    assert settings["Links"] == ["db:database"]
    missing = cli("network", "connect", "--link", "nosuch:x", net, "other")
    assert (missing.returncode, missing.error_lines) == (1, ["Error: No such container: nosuch"])
    on_default = cli("network", "connect", "--link", "db:d", "bridge", "other")
    assert on_default.returncode == 2 and "user defined networks only" in on_default.stderr
    assert "bridge" not in json.loads(cli("inspect", "other", check=True).stdout)[0]["NetworkSettings"]["Networks"]


def test_connect_driver_opts_name_the_interface_and_set_its_sysctls(cli):
    net = f"do{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.96.0/24", net, check=True)
    cli("run", "-d", "--name", "box", "busybox", "sleep", "60", check=True)
    cli("network", "connect", "--driver-opt", "com.docker.network.endpoint.ifname=data0",
        "--driver-opt", "com.docker.network.endpoint.sysctls=net.ipv4.conf.IFNAME.log_martians=1,"
                        "net.ipv4.conf.IFNAME.accept_redirects=0", net, "box", check=True)
    shown = cli("exec", "box", "ip", "-o", "-4", "addr", "show", "data0", check=True).stdout
    assert f"{NET}.96." in shown
    sysctls = cli("exec", "box", "cat", "/proc/sys/net/ipv4/conf/data0/log_martians",
                  "/proc/sys/net/ipv4/conf/data0/accept_redirects", check=True).stdout.split()
    assert sysctls == ["1", "0"]
    assert cli("exec", "box", "cat", "/proc/sys/net/ipv4/conf/eth0/log_martians", check=True).stdout.strip() == "0"
    settings = json.loads(cli("inspect", "box", check=True).stdout)[0]["NetworkSettings"]["Networks"][net]
    assert settings["DriverOpts"]["com.docker.network.endpoint.ifname"] == "data0"
    cli("network", "disconnect", net, "box", check=True)
    unknown = cli("network", "connect", "--driver-opt", "com.example.color=blue", net, "box")
    assert unknown.returncode == 2 and unknown.error_lines[0].startswith("Error: --driver-opt com.example.color: ")
    bad = cli("network", "connect", "--driver-opt", "com.docker.network.endpoint.sysctls=kernel.pid_max=9", net, "box")
    assert bad.returncode == 2 and 'invalid endpoint sysctl "kernel.pid_max=9"' in bad.stderr
    taken = cli("network", "connect", "--driver-opt", "com.docker.network.endpoint.ifname=eth0", net, "box")
    assert (taken.returncode, taken.error_lines) == (1, ["Error: interface eth0 already exists in the container"])
    assert net not in json.loads(cli("inspect", "box", check=True).stdout)[0]["NetworkSettings"]["Networks"]
    ip6 = cli("network", "connect", "--ip6", "fd00:1::5", net, "box")
    assert (ip6.returncode, ip6.error_lines) == (2, [f"Error: an IPv6 address (fd00:1::5) needs a network created "
                                                     f"with --ipv6; {net} has none"])


def test_config_only_network_lends_its_configuration_and_takes_no_endpoint(cli):
    cfg, net = f"cf{uuid.uuid4().hex[:6]}", f"fr{uuid.uuid4().hex[:6]}"
    bridge = f"pt{uuid.uuid4().hex[:6]}c"
    cli("network", "create", "--config-only", "--subnet", f"{NET}.97.0/24", "--gateway", f"{NET}.97.254",
        "-o", f"com.docker.network.bridge.name={bridge}", "--label", "tier=cfg", cfg, check=True)
    view = json.loads(cli("network", "inspect", cfg, check=True).stdout)[0]
    assert (view["Driver"], view["ConfigOnly"], view["Scope"]) == ("null", True, "local")
    assert not (Path("/sys/class/net") / bridge).exists()      # nothing is built for a configuration
    used = cli("run", "--rm", "--network", cfg, "busybox", "true")
    assert (used.returncode, used.error_lines) == (125, ["Error: cannot create endpoint on configuration-only network"])
    for extra, message in ((["--subnet", f"{NET}.98.0/24"], "user specified configurations are not supported"),
                           (["-o", "com.docker.network.driver.mtu=1400"], "network driver options are not supported")):
        refused = cli("network", "create", "--config-from", cfg, *extra, net)
        assert refused.returncode == 1 and message in refused.stderr
    nested = cli("network", "create", "--config-only", "--config-from", cfg, net)
    assert nested.returncode == 1 and "cannot depend on another configuration network" in nested.stderr
    absent = cli("network", "create", "--config-from", "nosuchcfg", net)
    assert (absent.returncode, absent.error_lines) == (1, ['Error: configuration network "nosuchcfg" does not exist'])
    cli("network", "create", "--config-from", cfg, net, check=True)
    view = json.loads(cli("network", "inspect", net, check=True).stdout)[0]
    assert view["ConfigFrom"] == {"Network": cfg} and view["Labels"] == {"tier": "cfg"}
    assert view["IPAM"]["Config"] == [{"Subnet": f"{NET}.97.0/24", "Gateway": f"{NET}.97.254"}]
    assert (Path("/sys/class/net") / bridge).exists()
    seen = cli("run", "--rm", "--network", net, "busybox", "ip", "-o", "-4", "route", check=True).stdout
    assert f"default via {NET}.97.254" in seen
    in_use = cli("network", "rm", cfg)
    assert (in_use.returncode, in_use.error_lines) == (1, [f'Error: configuration network "{cfg}" is in use'])
    cli("network", "prune", "-f", "--filter", f"label=tier=cfg", check=True)
    assert cfg in cli("network", "ls", check=True).stdout     # still lent to a network when prune looked
    cli("network", "rm", cfg, check=True)
    assert not (Path("/sys/class/net") / bridge).exists()


@pytest.mark.parametrize("args, message", [
    (["--scope", "global"], "Error: --scope global: the bridge driver's networks are local-scoped "
                            "(pallet does not re-scope a driver's networks)"),
    (["--scope", "planet"], 'Error: invalid scope "planet": expected local, swarm or global'),
    (["--ingress", "-d", "overlay"], "Error: --ingress: pallet's routing mesh joins each service's own overlay "
                                     "network (docs/network.md); there is no ingress network to create"),
    (["--ipv4=false"], "Error: --ipv4=false: pallet's network drivers need an IPv4 subnet on every network"),
    (["--subnet", "fd00:5::/64"], "Error: an IPv6 --subnet, --gateway or --ip-range needs --ipv6"),
    (["--ipv6", "-d", "none"], "Error: --ipv6: the none driver assigns IPv4 addresses only"),
    (["--config-only", "--internal"], "Error: configuration network can only contain network specific fields. "
                                      "Network operator fields like [ ingress | internal | attachable | scope ] "
                                      "are not supported."),
])
def test_network_create_flags_pallet_cannot_honour_are_one_line_refusals(cli, args, message):
    name = f"rf{uuid.uuid4().hex[:6]}"
    result = cli("network", "create", *args, name)
    assert (result.returncode, result.error_lines) == (2 if "--config-only" not in args else 1, [message])
    assert name not in cli("network", "ls", check=True).stdout


def test_network_create_scope_local_and_ipv4_are_accepted(cli):
    name = f"sc{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--scope", "local", "--ipv4", "--subnet", f"{NET}.99.0/24", name, check=True)
    assert cli("network", "inspect", "-f", "{{.Scope}}", name, check=True).stdout == "local\n"


def test_ipv6_network_gives_containers_addresses_routes_names_and_nat66(cli):
    from pallet.plugins.network.nft import table_name

    net, auto, internal = (f"{p}{uuid.uuid4().hex[:6]}" for p in ("six", "sxa", "sxi"))
    # canonical (no leading zeros in a group), as inspect prints it: a "09ce" group failed this once
    prefix = ipaddress.ip_address(f"fd{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:4]}:1::").compressed[:-2]
    cli("network", "create", "--ipv6", "--subnet", f"{NET}.88.0/24", "--subnet", f"{prefix}::/64", net, check=True)
    view = json.loads(cli("network", "inspect", net, check=True).stdout)[0]
    assert view["EnableIPv6"] is True
    assert view["IPAM"]["Config"] == [{"Subnet": f"{NET}.88.0/24", "Gateway": f"{NET}.88.1"},
                                      {"Subnet": f"{prefix}::/64", "Gateway": f"{prefix}::1"}]
    cli("run", "-d", "--name", "v6srv", "--network", net, "--ip6", f"{prefix}::55", "busybox", "sleep", "60", check=True)
    settings = json.loads(cli("inspect", "v6srv", check=True).stdout)[0]["NetworkSettings"]
    assert (settings["GlobalIPv6Address"], settings["GlobalIPv6PrefixLen"], settings["IPv6Gateway"]) == \
        (f"{prefix}::55", 64, f"{prefix}::1")
    assert settings["Networks"][net]["GlobalIPv6Address"] == f"{prefix}::55"
    seen = cli("run", "--rm", "--network", net, "busybox", "sh", "-c",
               "ip -6 addr show eth0; ip -6 route; ping6 -c1 -W3 v6srv; nslookup v6srv 127.0.0.11", check=True).stdout
    assert f"inet6 {prefix}::2/64" in seen and f"default via {prefix}::1" in seen
    assert "1 packets received" in seen and f"Address: {prefix}::55" in seen and f"Address: {NET}.88." in seen
    rules = subprocess.run(["nft", "list", "table", "ip6", table_name(cli.root)], capture_output=True, text=True)
    assert f"ip6 saddr {prefix}::/64 oifname != " in rules.stdout and "masquerade" in rules.stdout
    taken = cli("run", "--rm", "--network", net, "--ip6", f"{prefix}::55", "busybox", "true")
    assert (taken.returncode, taken.error_lines) == (125, [f"Error: Address already in use: {prefix}::55"])
    bad = cli("run", "--rm", "--network", net, "--ip6", "10.0.0.1", "busybox", "true")
    assert (bad.returncode, bad.error_lines) == (125, ['Error: invalid IPv6 address: "10.0.0.1"'])
    # Without a subnet, a /64 of a ULA prefix of this root's own; an internal network gets no IPv6 route out.
    cli("network", "create", "--ipv6", "--subnet", f"{NET}.89.0/24", auto, check=True)
    subnet6 = json.loads(cli("network", "inspect", auto, check=True).stdout)[0]["IPAM"]["Config"][1]["Subnet"]
    assert subnet6.startswith("fd") and subnet6.endswith("::/64")
    cli("network", "create", "--ipv6", "--internal", "--subnet", f"{NET}.90.0/24", internal, check=True)
    cli("network", "connect", "--ip6", subnet6.replace("::/64", "::77"), auto, "v6srv", check=True)
    inside = cli("exec", "v6srv", "ip", "-6", "addr", check=True).stdout
    assert subnet6.replace("::/64", "::77/64") in inside
    routes = cli("run", "--rm", "--network", internal, "busybox", "ip", "-6", "route", check=True).stdout
    assert "default" not in routes
    cli("rm", "-f", "v6srv", check=True)
    for name in (net, auto, internal):
        cli("network", "rm", name, check=True)
    gone = subprocess.run(["nft", "list", "table", "ip6", table_name(cli.root)], capture_output=True, text=True)
    assert gone.returncode != 0     # the last IPv6 network took the ip6 table with it


def test_link_local_ips_are_added_to_the_container_interface(cli):
    net = f"ll{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.84.0/24", net, check=True)
    cli("run", "-d", "--name", "llbox", "--link-local-ip", "169.254.7.7", "--link-local-ip", "fe80::77",
        "busybox", "sleep", "60", check=True)
    addresses = cli("exec", "llbox", "ip", "addr", "show", "eth0", check=True).stdout
    assert "inet 169.254.7.7/16" in addresses and "inet6 fe80::77/64" in addresses
    settings = json.loads(cli("inspect", "llbox", check=True).stdout)[0]["NetworkSettings"]["Networks"]["bridge"]
    assert settings["IPAMConfig"] == {"LinkLocalIPs": ["169.254.7.7", "fe80::77"]}
    cli("network", "connect", "--link-local-ip", "169.254.9.9", net, "llbox", check=True)
    assert "inet 169.254.9.9/16" in cli("exec", "llbox", "ip", "-4", "addr", "show", "eth1", check=True).stdout
    cli("restart", "-t", "0", "llbox", check=True)      # kept for the next start, on both networks
    again = cli("exec", "llbox", "ip", "-4", "addr", check=True).stdout
    assert "169.254.7.7/16" in again and "169.254.9.9/16" in again
    bad = cli("run", "--rm", "--link-local-ip", "nope", "busybox", "true")
    assert (bad.returncode, bad.error_lines) == (125, ["Error: invalid link-local IP address: nope"])


def test_run_on_several_networks_with_docker_s_per_network_settings(cli):
    a, b = f"ma{uuid.uuid4().hex[:6]}", f"mb{uuid.uuid4().hex[:6]}"
    cli("network", "create", "--subnet", f"{NET}.83.0/24", a, check=True)
    cli("network", "create", "--subnet", f"{NET}.82.0/24", b, check=True)
    cli("create", "--name", "multi", "--network", f"name={a},alias=front,ip={NET}.83.50",
        "--network", f"name={b},alias=back,driver-opt=com.docker.network.endpoint.ifname=back0",
        "busybox", "sleep", "60", check=True)
    created = json.loads(cli("inspect", "multi", check=True).stdout)[0]
    assert set(created["NetworkSettings"]["Networks"]) == {a, b}     # before the start, as Docker shows them
    cli("start", "multi", check=True)
    shown = cli("exec", "multi", "ip", "-o", "-4", "addr", check=True).stdout
    assert f"inet {NET}.83.50/24" in shown
    assert "back0" in shown and f"{NET}.82." in shown
    networks = json.loads(cli("inspect", "multi", check=True).stdout)[0]["NetworkSettings"]["Networks"]
    assert networks[a]["IPAddress"] == f"{NET}.83.50" and networks[a]["IPAMConfig"] == {"IPv4Address": f"{NET}.83.50"}
    on_b = cli("run", "--rm", "--network", b, "busybox", "nslookup", "back")
    assert networks[b]["IPAddress"] in on_b.stdout, on_b.stdout + on_b.stderr
    cli("restart", "-t", "0", "multi", check=True)      # both again, the asked address kept
    again = json.loads(cli("inspect", "multi", check=True).stdout)[0]["NetworkSettings"]["Networks"]
    assert set(again) == {a, b} and again[a]["IPAddress"] == f"{NET}.83.50"
    for args, message in (
            (["--network", a, "--network", a], f'network "{a}" is specified multiple times'),
            (["--network", "bridge", "--network", a],
             "conflicting options: cannot attach both user-defined and non-user-defined network-modes"),
            (["--ip", f"{NET}.83.9", "--network", f"name={a},ip={NET}.83.8"],
             "conflicting options: cannot specify both --ip and per-network IPv4 address"),
            (["--network", f"name={a},colour=red"], "invalid field key colour"),
            (["--network", f"name={a},gw-priority=5"], "gw-priority: a container's default gateway is its first "
                                                       "network's (pallet does not choose gateways by priority)")):
        refused = cli("run", "--rm", *args, "busybox", "true")
        assert (refused.returncode, refused.error_lines) == (125, [f"Error: {message}"]), refused.stderr
    zero = cli("network", "connect", "--gw-priority", "0", "bridge", "multi")
    assert zero.returncode == 0, zero.stderr
    other = cli("network", "connect", "--gw-priority", "3", b, "multi")
    assert other.returncode == 2 and "--gw-priority: a container's default gateway" in other.stderr
