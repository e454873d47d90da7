"""``pallet network`` through the real CLI: Docker's columns, errors as one line, cleanup by rm."""

from __future__ import annotations

import json
import uuid

import pytest
from tests.network.conftest import NET


@pytest.fixture
def cli(pallet):
    yield pallet
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    NetworkStore(Engine(Config.load(root=str(pallet.root), config_path=pallet.env["PALLET_CONFIG"]))).teardown_all()


def test_ls_shows_predefined_networks_with_docker_columns(cli):
    out = cli("network", "ls", check=True).stdout.splitlines()
    assert out[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert [line.split()[1:] for line in out[1:]] == [["bridge", "bridge", "local"], ["host", "host", "local"],
                                                       ["none", "none", "local"]]


def test_create_inspect_rm(cli):
    name = "n" + uuid.uuid4().hex[:8]
    created = cli("network", "create", "--subnet", f"{NET}.30.0/24", "--gateway", f"{NET}.30.254",
                  "--label", "team=net", "-o", "com.docker.network.driver.mtu=1450", name, check=True)
    network_id = created.stdout.strip()
    assert len(network_id) == 64
    view = json.loads(cli("network", "inspect", name, check=True).stdout)[0]
    assert view["Id"] == network_id and view["Driver"] == "bridge" and view["Scope"] == "local"
    assert view["IPAM"]["Config"] == [{"Subnet": f"{NET}.30.0/24", "Gateway": f"{NET}.30.254"}]
    assert view["Labels"] == {"team": "net"}
    assert cli("network", "ls", "-q", "--filter", "label=team=net", check=True).stdout.split() == [network_id[:12]]
    assert cli("network", "inspect", "--format", "{{.Name}}", network_id[:12], check=True).stdout.strip() == name
    template = ('{{range .IPAM.Config}}{{.Subnet}} via {{.Gateway}}{{end}}|{{index .Labels "team"}}|'
                '{{json .Options}}|{{upper .Driver}}|{{if .Internal}}internal{{else}}routed{{end}}|{{len .Containers}}')
    shown = cli("network", "inspect", "-f", template, name, check=True).stdout
    assert shown == f'{NET}.30.0/24 via {NET}.30.254|net|{{"com.docker.network.driver.mtu":"1450"}}|BRIDGE|routed|0\n'
    assert cli("network", "rm", name, check=True).stdout.strip() == name
    assert name not in cli("network", "ls", check=True).stdout
    assert cli("network", "rm", name).error_lines == [f"Error: network {name} not found"]
    assert (cli("network", "rm", "-f", name).returncode, cli("network", "rm", "-f", name).stdout) == (0, "")


@pytest.mark.parametrize("args, code, message", [
    (["network", "rm", "bridge"], 1, "Error: bridge is a pre-defined network and cannot be removed"),
    (["network", "inspect", "nosuchnet"], 1, "Error: network nosuchnet not found"),
    (["network", "create", "-d", "nosuchdriver", "x"], 2, 'Error: unknown network driver "nosuchdriver"'),
    (["network", "create", "--subnet", "10.0.0.1/33", "x"], 2, "Error: invalid subnet"),
    (["network", "create", "host"], 1, "Error: network with name host already exists"),
])
def test_user_errors_are_one_line(cli, args, code, message):
    result = cli(*args)
    assert result.returncode == code
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith(message)


def test_duplicate_name_and_overlapping_subnet(cli):
    cli("network", "create", "--subnet", f"{NET}.31.0/24", "dup", check=True)
    again = cli("network", "create", "dup")
    assert again.returncode == 1 and "already exists" in again.stderr
    overlap = cli("network", "create", "--subnet", f"{NET}.31.128/25", "dup2")
    assert overlap.returncode == 1 and "overlaps" in overlap.stderr
    assert cli("network", "prune", "-f", check=True).stdout.split() == ["Deleted", "Networks:", "dup"]
