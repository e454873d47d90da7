"""Virtual IPs: one per overlay network of a service, from the network's own pool, never a task's address."""

from __future__ import annotations

import ipaddress
import json

from tests.cluster.conftest import SUBNET


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
