"""The mesh across three simulated nodes: VIPs, service names in the embedded DNS, balancing over healthy tasks, the routing mesh."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import random
import socket

from tests.cluster.conftest import SUBNET, fetch
from tests.network.conftest import run_in
from tests.network.test_overlay import UNDERLAY


def test_a_service_gets_one_vip_from_its_networks_pool_that_no_task_can_take(swarm):
    a, b, _c = swarm.hosts
    service = swarm.create_service("web")
    vips = service["Endpoint"]["VirtualIPs"]
    assert [v["NetworkID"] for v in vips] == [swarm.network_id]
    vip = ipaddress.IPv4Interface(vips[0]["Addr"])
    assert vip.network == ipaddress.IPv4Network(SUBNET), "the VIP is in the network's subnet, with its prefix"
    assert swarm.etcd.get(f"/pallet/addresses/{SUBNET}/{vip.ip}") is not None, "a lease in the cluster IPAM"

    other = swarm.create_service("api")
    assert other["Endpoint"]["VirtualIPs"][0]["Addr"] != vips[0]["Addr"]
    task = swarm.run_task(b, service, 1)
    assert task["ip"] not in {str(vip.ip), other["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]}

    swarm.mesh(a, "release", json.dumps(service))
    assert swarm.etcd.get(f"/pallet/addresses/{SUBNET}/{vip.ip}") is None, "release gives the address back"
    swarm.services.remove(service)


def test_dnsrr_services_get_no_vip(swarm):
    service = swarm.create_service("rr", mode="dnsrr")
    assert service["Endpoint"]["VirtualIPs"] == []


def test_service_names_resolve_on_every_node_to_the_vip_and_the_healthy_tasks(swarm):
    a, b, c = swarm.hosts
    web = swarm.create_service("web")
    vip = web["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]
    up = [swarm.run_task(a, web, 1), swarm.run_task(b, web, 2)]
    sick = swarm.run_task(c, web, 3, health="unhealthy")
    warming = swarm.run_task(c, web, 4, health="starting")
    rr = swarm.create_service("rr", mode="dnsrr")
    rr_tasks = [swarm.run_task(a, rr, 1), swarm.run_task(c, rr, 2)]
    swarm.sync()

    healthy = {t["ip"] for t in up}
    for host in swarm.hosts:
        assert swarm.resolve(host, "web") == {vip}, f"{host.name}: the service name is its VIP"
        assert swarm.resolve(host, "tasks.web") == healthy, f"{host.name}: tasks.web lists the healthy tasks only"
    assert swarm.resolve(b, "web-alias") == {vip}, "a network alias of the service resolves like its name"
    assert swarm.resolve(b, "rr") == {t["ip"] for t in rr_tasks}, "dnsrr: the name is the tasks' addresses"
    assert sick["ip"] not in swarm.resolve(a, "tasks.web") and warming["ip"] not in healthy

    # A task that failed, and every task of a node that went down, leave the answers.
    up[1]["Status"]["State"] = "failed"
    swarm.put_task(up[1])
    swarm.etcd.delete(f"/pallet/swarm/alive/{a.name}")
    rr_tasks[1]["Status"]["Health"] = "healthy"
    swarm.put_task(rr_tasks[1])
    swarm.sync(b, c)
    assert swarm.resolve(c, "tasks.web") == set()
    assert swarm.resolve(b, "rr") == {rr_tasks[1]["ip"]}
    assert swarm.resolve(c, "web") == {vip}, "the VIP stays while the service exists"


def test_connections_to_the_vip_are_spread_over_the_healthy_tasks_on_every_node(swarm):
    a, b, c = swarm.hosts
    web = swarm.create_service("web")
    vip = web["Endpoint"]["VirtualIPs"][0]["Addr"].split("/")[0]
    tasks = [swarm.run_task(host, web, slot) for slot, host in enumerate(swarm.hosts, 1)]
    swarm.sync()
    names = {t["hostname"] for t in tasks}
    for host in swarm.hosts:
        seen = swarm.responders(host, "web", count=9)
        assert len(seen) == 9 and set(seen) == names, f"{host.name}: every replica answers through the VIP: {seen}"
    assert set(swarm.responders(b, vip, count=6)) == names

    # One task turns unhealthy: one transaction takes it out of every sandbox on the node, even a running one.
    client = f"client{tasks[0]['ID'][:6]}"
    b.pallet("run", "-d", "--name", client, "--network", "ov", "busybox", "sleep", "300")
    swarm.containers.append((b, client))
    tasks[2]["Status"]["Health"] = "unhealthy"
    swarm.put_task(tasks[2])
    swarm.sync()
    seen = swarm.responders(b, "web", count=6, container=client)
    assert len(seen) == 6 and set(seen) == names - {tasks[2]["hostname"]}, seen
    for task in tasks:
        task["Status"]["State"] = "shutdown"
        swarm.put_task(task)
    swarm.sync(b)
    refused = b.pallet("exec", client, "sh", "-c", fetch(vip), check=False)
    assert refused.returncode != 0 and "timed out" not in refused.stderr, "no task: the VIP refuses at once"


def get(address: str, port: int) -> str | None:
    """The body of ``GET /`` at ``address:port`` from the test's own namespace (the underlay), None if refused."""
    try:
        with socket.create_connection((address, port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
    except OSError:
        return None
    return reply.decode().partition("\r\n\r\n")[2].strip()


def test_published_ports_reach_every_replica_from_every_node(swarm):
    a, b, c = swarm.hosts
    published = random.randint(30000, 32000)
    web = swarm.create_service("web", ports=[{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": published,
                                              "PublishMode": "ingress"}])
    tasks = [swarm.run_task(a, web, 1, port=8080), swarm.run_task(b, web, 2, port=8080)]
    swarm.sync()
    names = {t["hostname"] for t in tasks}
    for i, host in enumerate(swarm.hosts):
        address = f"{UNDERLAY}.{11 + i}"
        seen = [get(address, published) for _ in range(6)]
        assert set(seen) == names, f"{host.name} ({address}): the routing mesh reaches every replica: {seen}"

    # Scaled down to one task on host a: host c (no task) still answers, through the overlay.
    tasks[1]["DesiredState"] = "shutdown"
    swarm.put_task(tasks[1])
    swarm.sync()
    assert {get(f"{UNDERLAY}.13", published) for _ in range(4)} == {tasks[0]["hostname"]}


def test_host_mode_ports_reach_only_the_nodes_own_tasks(swarm):
    a, b, c = swarm.hosts
    published = random.randint(32001, 33000)
    svc = swarm.create_service("hm", ports=[{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": published,
                                             "PublishMode": "host"}])
    on_a, on_b = swarm.run_task(a, svc, 1), swarm.run_task(b, svc, 2)
    swarm.sync()
    assert {get(f"{UNDERLAY}.11", published) for _ in range(4)} == {on_a["hostname"]}
    assert {get(f"{UNDERLAY}.12", published) for _ in range(4)} == {on_b["hostname"]}
    assert get(f"{UNDERLAY}.13", published) is None, "a node without a task of the service refuses the port"


def test_teardown_removes_every_rule_link_sandbox_and_record_of_the_node(swarm):
    a, b, _c = swarm.hosts
    svc = swarm.create_service("web", ports=[{"Protocol": "tcp", "TargetPort": 80, "PublishedPort": 33333,
                                              "PublishMode": "ingress"}])
    task = swarm.run_task(b, svc, 1)
    client = f"client{task['ID'][:6]}"
    a.pallet("run", "-d", "--name", client, "--network", "ov", "busybox", "sleep", "300")
    swarm.containers.append((a, client))
    swarm.sync(a)
    assert get(f"{UNDERLAY}.11", 33333) == task["hostname"]
    digest = hashlib.sha256(str(a.root.resolve()).encode()).hexdigest()
    sandbox = a.root / "run" / "netns" / f"mesh-{digest[:20]}"
    client_sandbox = a.root / "run" / "netns" / a.pallet("inspect", "--format", "{{.Id}}", client).stdout.strip()
    endpoints = a.root / "networks" / "endpoints"
    assert sandbox.exists() and list(endpoints.glob("*.services")) and list(endpoints.glob("*.vip.nft"))
    assert swarm.in_host(a, "nft", "list", "table", "ip", f"pallet_mesh_{digest[:10]}").returncode == 0

    swarm.mesh(a, "teardown")
    assert swarm.in_host(a, "nft", "list", "table", "ip", f"pallet_mesh_{digest[:10]}").returncode != 0
    assert swarm.in_host(a, "ip", "link", "show", f"pm{digest[:10]}").returncode != 0
    assert not sandbox.exists()
    assert not list(endpoints.glob("*.services")) and not list(endpoints.glob("*.vip.nft"))
    assert not list(endpoints.glob(f"*/mesh-{digest[:20]}.json")), "the mesh's endpoint is gone"
    assert "pallet_svc_" not in run_in(str(client_sandbox), "nft", "list", "ruleset").stdout
    leases = swarm.etcd.range("/pallet/endpoints/")[0]
    assert not [v for v in leases.values() if isinstance(v, dict) and v.get("name", "").startswith("mesh-")]
    assert get(f"{UNDERLAY}.11", 33333) is None
