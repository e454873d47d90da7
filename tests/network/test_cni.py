"""The cni driver with Debian's real reference plugins (bridge + host-local + portmap + firewall + tuning).

Everything a test makes is per-test named (bridge, conflist name, host-local data dir, config dir),
and the fixture checks that no link, iptables/nft rule or IPAM lease of it survives.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.network.conftest import NET

SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www"
PLUGINS = Path("/usr/lib/cni")

pytestmark = pytest.mark.skipif(not (PLUGINS / "bridge").exists(),
                                reason="containernetworking-plugins is not installed (scripts/setup.sh)")


def ruleset() -> str:
    return subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout


def conflist(name: str, bridge: str, subnet_prefix: str, ipam_dir: Path, extra: list | None = None) -> dict:
    """The chain podman 4 writes for its networks."""
    return {
        "cniVersion": "1.0.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": bridge, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir), "routes": [{"dst": "0.0.0.0/0"}],
                      "ranges": [[{"subnet": f"{subnet_prefix}.0/24", "gateway": f"{subnet_prefix}.1"}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "firewall"},
            {"type": "tuning"},
            *(extra or []),
        ],
    }


@pytest.fixture
def cni(pallet, tmp_path):
    """The CLI with a private CNI config dir, and a factory of conflists; checks for leftovers at the end."""
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from tests.network.conftest import teardown_root

    tag = uuid.uuid4().hex[:6]
    config = pallet.root.parent / "pallet.toml"
    config.write_text(f'[network]\nbridge_name = "pt{tag}0"\ndefault_subnet = "{NET}.90.0/24"\n'
                      'default_address_pools = "10.232.0.0/16:24"\n')
    confdir = tmp_path / "net.d"
    confdir.mkdir()
    pallet.env["PALLET_CNI_CONFIG_DIR"] = str(confdir)
    made = []

    explicit = tmp_path / "conf"
    explicit.mkdir()

    def write(name: str, extra: list | None = None, discovered: bool = False) -> tuple[Path, dict]:
        """A conflist in the watched config dir (``discovered``) or elsewhere, for ``network create``."""
        bridge = f"cni{tag}{len(made)}"
        data = conflist(f"{name}-{tag}", bridge, f"{NET}.{91 + len(made)}", tmp_path / f"ipam{len(made)}", extra)
        path = (confdir if discovered else explicit) / f"{10 + len(made)}-{name}.conflist"
        path.write_text(json.dumps(data))
        made.append((bridge, tmp_path / f"ipam{len(made)}"))
        return path, data

    pallet.cni_write = write
    pallet.cni_tag = tag
    pallet("image", "build-busybox", check=True)
    tables_before = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    try:
        yield pallet
    finally:
        ids = pallet("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            pallet("rm", "-f", *ids)
        for network_id in pallet("network", "ls", "-q").stdout.split():
            pallet("network", "rm", network_id)  # the predefined ones refuse, harmlessly
        leaked = teardown_root(Engine(Config.load(root=str(pallet.root), config_path=str(config))))
        left_links = [bridge for bridge, _ in made if os.path.exists(f"/sys/class/net/{bridge}")]
        for bridge in left_links:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        leases = [str(p) for _, ipam in made if ipam.is_dir() for p in ipam.rglob("*")
                  if p.is_file() and p.name[0].isdigit()]
        # the firewall plugin's rules name the container's address, not the network: look for both
        subnets = tuple(f"{NET}.{91 + n}." for n in range(len(made)))
        rules = [line for line in ruleset().splitlines() if tag in line or any(net in line for net in subnets)]
        for table in ("ip filter", "ip nat", "ip6 filter", "ip6 nat"):   # what the CNI plugins made for this test
            if table not in tables_before:
                subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        assert not (leaked or left_links or leases or rules), f"left behind: {leaked} {left_links} {leases} {rules}"


def wget(cli, network: str, url: str):
    return cli("run", "--rm", "--network", network, "busybox", "sh", "-c",
               f"busybox timeout 4 busybox wget -q -O - {url}; exit $?", timeout=60)


def fetch(url: str) -> str:
    for _ in range(40):
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.1)
    return ""


def test_containers_on_a_cni_network_reach_each_other_and_a_published_port_and_leave_nothing(cni):
    from pallet.kernel.network.ports import _random_port

    path, data = cni.cni_write("web")
    name = data["name"]
    cni("network", "create", "-d", "cni", "--opt", f"config={path}", name, check=True)
    port = _random_port("tcp", "127.0.0.1", set())
    cni("run", "-d", "--name", "web", "--network", name, "-p", f"{port}:80", "busybox", "sh", "-c", SERVE, check=True)

    info = json.loads(cni("inspect", "web", check=True).stdout)[0]["NetworkSettings"]["Networks"][name]
    ip = info["IPAddress"]
    assert ip.startswith(data["plugins"][0]["ipam"]["ranges"][0][0]["gateway"].rsplit(".", 1)[0] + ".")
    assert info["Gateway"] == data["plugins"][0]["ipam"]["ranges"][0][0]["gateway"]
    lease_dir = Path(data["plugins"][0]["ipam"]["dataDir"]) / name
    assert (lease_dir / ip).is_file(), "host-local holds the lease"

    peer = None
    for _ in range(20):
        peer = wget(cni, name, f"http://{ip}/")
        if peer.returncode == 0:
            break
        time.sleep(0.2)
    assert peer.returncode == 0 and peer.stdout.startswith("hello-from-"), peer.stderr

    # The published port: portmap's DNAT, reached from the host through the host's own address.
    host_ip = subprocess.run(["ip", "-4", "-o", "route", "get", "1.1.1.1"], capture_output=True,
                             text=True).stdout.split(" src ")[1].split()[0]
    assert fetch(f"http://{host_ip}:{port}/").startswith("hello-from-")
    assert cni("port", "web", check=True).stdout.strip() == f"80/tcp -> 0.0.0.0:{port}"

    assert f"{ip}:80" in ruleset(), "portmap's DNAT rule"
    cni("rm", "-f", "web", check=True)
    assert ip not in ruleset(), "DEL removed the container's DNAT, masquerade and firewall rules"
    assert not (lease_dir / ip).exists(), "DEL released the lease"
    cni("network", "rm", name, check=True)
    assert not os.path.exists(f"/sys/class/net/{data['plugins'][0]['bridge']}"), "network rm took the bridge down"


def test_check_confirms_an_attached_endpoint_and_del_is_idempotent(cni):
    path, data = cni.cni_write("chk")
    name = data["name"]
    cni("network", "create", "-d", "cni", "--opt", f"config={path}", name, check=True)
    cni("run", "-d", "--name", "c1", "--network", name, "busybox", "sleep", "300", check=True)

    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    engine = Engine(Config.load(root=str(cni.root), config_path=str(cni.root.parent / "pallet.toml")))
    store = NetworkStore(engine)
    record = store.get(name)
    endpoint = store.endpoints(record.id)[0]
    driver = store.driver("cni")
    driver.check(record.id, endpoint.id)  # raises on a plugin's complaint
    driver.leave(record.id, endpoint.id, record.driver_data, endpoint.sandbox)
    driver.leave(record.id, endpoint.id, record.driver_data, endpoint.sandbox)  # a second DEL is a no-op
    cni("rm", "-f", "c1", check=True)
    cni("network", "rm", name, check=True)


def test_a_conflist_naming_a_missing_plugin_is_refused_at_create(cni):
    path, data = cni.cni_write("missing", extra=[{"type": "no-such-plugin-xyz"}])
    result = cni("network", "create", "-d", "cni", "--opt", f"config={path}", data["name"])
    assert result.returncode == 1
    assert len(result.error_lines) == 1 and 'failed to find CNI plugin "no-such-plugin-xyz"' in result.stderr
    assert data["name"] not in cni("network", "ls", check=True).stdout


def test_a_plugin_error_is_reported_with_its_own_message_and_nothing_is_left(cni, tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    failing = plugins / "refuse"
    # A plugin of our own that fails ADD the way the spec says (JSON error on stdout) and accepts DEL.
    failing.write_text('#!/bin/sh\nif [ "$CNI_COMMAND" = ADD ]; then\n'
                       'echo \'{"cniVersion":"1.0.0","code":11,"msg":"refused by policy","details":"test said no"}\'\n'
                       'exit 1\nfi\nexit 0\n')
    failing.chmod(failing.stat().st_mode | stat.S_IEXEC)
    path, data = cni.cni_write("err", extra=[{"type": "refuse"}])
    name = data["name"]
    cni("network", "create", "-d", "cni", "--opt", f"config={path}", "--opt", f"path={plugins}", name, check=True)
    result = cni("run", "--rm", "--network", name, "busybox", "true")
    assert result.returncode == 125
    assert "CNI plugin refuse ADD failed: refused by policy: test said no" in result.stderr
    assert len(result.error_lines) == 1, result.stderr
    lease_dir = Path(data["plugins"][0]["ipam"]["dataDir"]) / name
    assert not [p for p in lease_dir.glob("*") if p.name[0].isdigit()], "the earlier plugins were DEL-ed"
    assert not os.path.exists(f"/sys/class/net/{data['plugins'][0]['bridge']}") or not [
        n for n in os.listdir(f"/sys/class/net/{data['plugins'][0]['bridge']}/brif")], "no veth left on the bridge"
    cni("network", "rm", name, check=True)


def test_network_ls_lists_the_conflists_of_the_config_dir_and_containers_use_them(cni):
    path, data = cni.cni_write("listed", discovered=True)
    listed = cni("network", "ls", check=True).stdout
    assert any(line.split()[1:3] == [data["name"], "cni"] for line in listed.splitlines()[1:]), listed
    inspect = json.loads(cni("network", "inspect", data["name"], check=True).stdout)[0]
    assert inspect["Driver"] == "cni" and inspect["Options"]["config"] == str(path)

    ran = cni("run", "--rm", "--network", data["name"], "busybox", "ip", "-4", "-o", "addr", "show", "eth0")
    subnet = data["plugins"][0]["ipam"]["ranges"][0][0]["gateway"].rsplit(".", 1)[0] + "."
    assert ran.returncode == 0 and f"inet {subnet}" in ran.stdout, ran

    cni("network", "rm", data["name"], check=True)
    path.unlink()
    assert data["name"] not in cni("network", "ls", check=True).stdout, "the network goes with its file"


def test_ip_and_mac_reach_the_plugins_that_declare_those_capabilities(cni):
    """``--ip`` as the ``ips`` capability (host-local gives that address), ``--mac-address`` as
    ``mac`` (tuning sets it), ``--network-alias`` as ``aliases``: podman's runtimeConfig."""
    path, data = cni.cni_write("caps")
    data["plugins"][0]["capabilities"] = {"ips": True}
    data["plugins"][3]["capabilities"] = {"mac": True}
    path.write_text(json.dumps(data))
    name = data["name"]
    cni("network", "create", "-d", "cni", "--opt", f"config={path}", name, check=True)
    prefix = data["plugins"][0]["ipam"]["ranges"][0][0]["gateway"].rsplit(".", 1)[0]
    wanted_ip, wanted_mac = f"{prefix}.77", "02:42:ac:11:00:77"
    shown = cni("run", "--rm", "--network", name, "--ip", wanted_ip, "--mac-address", wanted_mac,
                "busybox", "ip", "addr", "show", "eth0", check=True).stdout
    assert f"inet {wanted_ip}/24" in shown and f"link/ether {wanted_mac}" in shown, shown
    lease_dir = Path(data["plugins"][0]["ipam"]["dataDir"]) / name
    assert not (lease_dir / wanted_ip).exists(), "--rm released the chosen address"
    cni("network", "rm", name, check=True)
