"""Networks and volumes through the API: create, list, inspect, use by name, remove."""

from __future__ import annotations


def test_a_user_network_lets_containers_reach_each_other_by_name(api):
    assert api.docker("network", "create", "apinet").returncode == 0
    names = api.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    assert "apinet" in names
    assert api.docker("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "apinet").stdout == "apinet bridge\n"
    assert api.docker("run", "-d", "--network", "apinet", "--name", "srv", "busybox", "sleep", "100").returncode == 0
    ping = api.docker("run", "--rm", "--network", "apinet", "busybox", "ping", "-c1", "-W2", "srv")
    assert ping.returncode == 0 and "1 packets received" in ping.stdout, ping.stdout + ping.stderr
    assert api.docker("rm", "-f", "srv").returncode == 0
    assert api.docker("network", "rm", "apinet").returncode == 0
    again = api.docker("network", "rm", "apinet")
    assert again.returncode == 1 and "network apinet not found" in again.stderr
    assert api.request("GET", "/networks/apinet")[0] == 404


def test_a_named_volume_keeps_data_between_containers(api):
    assert api.docker("volume", "create", "data").stdout == "data\n"
    assert api.docker("run", "--rm", "-v", "data:/d", "busybox", "sh", "-c", "echo kept > /d/f").returncode == 0
    assert api.docker("run", "--rm", "-v", "data:/d", "busybox", "cat", "/d/f").stdout == "kept\n"
    client = api.client()
    assert [v.name for v in client.volumes.list()] == ["data"]
    assert client.volumes.get("data").attrs["Driver"] == "local"
    assert api.pallet("volume", "ls", "-q").stdout.split() == ["data"]  # one state with the CLI
    assert api.docker("volume", "rm", "data").returncode == 0
    missing = api.docker("volume", "rm", "data")
    assert missing.returncode == 1 and "No such volume: data" in missing.stderr


def test_docker_py_networks_create_list_remove(api):
    client = api.client()
    network = client.networks.create("pynet", labels={"role": "test"})
    assert [n.name for n in client.networks.list(filters={"label": "role=test"})] == ["pynet"]
    assert client.networks.get("pynet").id == network.id
    network.remove()
    assert client.networks.list(names=["pynet"]) == []


def test_volume_update_is_docker_s_refusal_for_local_volumes(api):
    """``volume update`` is for swarm's cluster (CSI) volumes: docker's CLI and pallet's say so, the route is a 503."""
    assert api.docker("volume", "create", "upd").returncode == 0
    ours, theirs = api.pallet("volume", "update", "--availability", "drain", "upd"), api.docker("volume", "update", "upd")
    assert (ours.returncode, ours.error_lines) == (1, ["Error: can only update cluster volumes"])
    assert (theirs.returncode, theirs.stderr.strip()) == (1, "can only update cluster volumes")
    missing = api.pallet("volume", "update", "nope")
    assert (missing.returncode, missing.error_lines) == (1, ["Error: No such volume: nope"])
    assert "No such volume: nope" in api.docker("volume", "update", "nope").stderr
    status, _h, body = api.request("PUT", "/volumes/upd?version=1", {"Spec": {"Availability": "drain"}})
    assert (status, body) == (503, {"message": "volume update only valid for cluster volumes, but swarm is unavailable"})
    assert api.docker("volume", "rm", "upd").returncode == 0


def test_docker_cli_ipv6_config_only_and_link_networks(api):
    import ipaddress
    import json
    import uuid

    from tests.network.conftest import NET

    prefix = f"fd{uuid.uuid4().hex[:2]}:{uuid.uuid4().hex[:4]}:2"
    made = api.docker("network", "create", "--ipv6", "--subnet", f"{NET}.86.0/24", "--subnet", f"{prefix}::/64", "six")
    assert made.returncode == 0, made.stderr
    run = api.docker("run", "-d", "--name", "s", "--network", "six", "--ip6", f"{prefix}::9", "busybox", "sleep", "60")
    assert run.returncode == 0, run.stderr
    shown = api.docker("inspect", "-f", "{{.NetworkSettings.Networks.six.GlobalIPv6Address}}", "s")
    assert shown.stdout == f"{ipaddress.IPv6Address(prefix + '::9')}\n"   # as written: "fd46:16b:…", not "016b"
    assert api.docker("run", "-d", "--name", "c", "--network", "six", "busybox", "sleep", "60").returncode == 0
    assert api.docker("network", "create", "--subnet", f"{NET}.87.0/24", "other").returncode == 0
    linked = api.docker("network", "connect", "--link", "s:store", "--driver-opt",
                        "com.docker.network.endpoint.ifname=side0", "other", "c")
    assert linked.returncode == 0, linked.stderr
    # the link's alias is answered on the network it was given for, to "c" only
    assert api.docker("network", "connect", "other", "s").returncode == 0
    found = api.docker("exec", "c", "nslookup", "store")
    s_other = json.loads(api.docker("inspect", "s").stdout)[0]["NetworkSettings"]["Networks"]["other"]["IPAddress"]
    assert s_other in found.stdout, found.stdout + found.stderr
    assert "side0" in api.docker("exec", "c", "ip", "-o", "link").stdout
    cfg = api.docker("network", "create", "--config-only", "--subnet", f"{NET}.85.0/24", "cfg")
    assert cfg.returncode == 0, cfg.stderr
    refused = api.docker("run", "--rm", "--network", "cfg", "busybox", "true")
    assert refused.returncode == 125 and "cannot create endpoint on configuration-only network" in refused.stderr
    assert api.docker("network", "create", "--config-from", "cfg", "fromcfg").returncode == 0
    assert api.docker("network", "inspect", "-f", "{{.ConfigFrom.Network}}", "fromcfg").stdout == "cfg\n"
    in_use = api.docker("network", "rm", "cfg")
    assert in_use.returncode == 1 and 'configuration network "cfg" is in use' in in_use.stderr
    assert api.docker("rm", "-f", "s", "c").returncode == 0
    assert api.docker("network", "rm", "six", "other", "fromcfg", "cfg").returncode == 0


def test_docker_run_on_two_networks_joins_both_with_their_own_settings(api):
    import json

    from tests.network.conftest import NET

    assert api.docker("network", "create", "--subnet", f"{NET}.81.0/24", "front").returncode == 0
    assert api.docker("network", "create", "--subnet", f"{NET}.80.0/24", "back").returncode == 0
    run = api.docker("run", "-d", "--name", "two", "--network", f"name=front,ip={NET}.81.40",
                     "--network", "name=back,alias=db", "busybox", "sleep", "60")
    assert run.returncode == 0, run.stderr
    networks = json.loads(api.docker("inspect", "two").stdout)[0]["NetworkSettings"]["Networks"]
    assert networks["front"]["IPAddress"] == f"{NET}.81.40" and networks["back"]["IPAddress"].startswith(f"{NET}.80.")
    found = api.docker("run", "--rm", "--network", "back", "busybox", "nslookup", "db")
    assert networks["back"]["IPAddress"] in found.stdout, found.stdout + found.stderr
    assert api.docker("rm", "-f", "two").returncode == 0
    assert api.docker("network", "rm", "front", "back").returncode == 0
