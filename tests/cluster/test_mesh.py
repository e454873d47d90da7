"""The mesh across three simulated nodes: VIPs, service names in the embedded DNS, balancing over healthy tasks, the routing mesh."""

from __future__ import annotations

import ipaddress
import json

from tests.cluster.conftest import SUBNET, fetch


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
