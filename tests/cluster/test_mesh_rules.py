"""The mesh's pure parts: which tasks take traffic, and the nftables it renders (checked by ``nft -c``)."""

from __future__ import annotations

import subprocess
import uuid
from types import SimpleNamespace

import pytest

from pallet.kernel.cluster import ingress, mesh
from pallet.kernel.network import nftables, services


def task(state="running", health="", desired="running", node="n1"):
    return {"DesiredState": desired, "NodeID": node, "Status": {"State": state, "Health": health}}


@pytest.mark.parametrize("record, served", [
    (task(), True),
    (task(health="healthy"), True),
    (task(health="starting"), False),
    (task(health="unhealthy"), False),
    (task(state="failed"), False),
    (task(state="starting"), False),
    (task(desired="shutdown"), False),
    (task(node="gone"), False),
])
def test_only_running_healthy_tasks_of_live_nodes_take_traffic(record, served):
    assert mesh.serving(record, {"n1"}) is served


def test_task_addresses_come_from_its_attachments():
    record = {"NetworksAttachments": [{"Network": {"ID": "n1"}, "Addresses": ["10.0.9.7/24"]},
                                      {"Network": {"ID": "n2"}, "Addresses": ["10.0.8.3/24"]}]}
    assert mesh.task_addresses(record) == {"n1": "10.0.9.7", "n2": "10.0.8.3"}


def test_published_ports_default_to_tcp_ingress_and_skip_unpublished_ones():
    service = {"Spec": {"EndpointSpec": {"Ports": [{"TargetPort": 80, "PublishedPort": 8080},
                                                   {"TargetPort": 53, "PublishedPort": 53, "Protocol": "udp",
                                                    "PublishMode": "host"},
                                                   {"TargetPort": 9000, "PublishMode": "host"}]}}}
    assert ingress.published_ports(service) == [
        {"proto": "tcp", "published": 8080, "target": 80, "mode": "ingress"},
        {"proto": "udp", "published": 53, "target": 53, "mode": "host"}]


@pytest.fixture
def netns():
    name = f"ptmr{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_vip_rules_are_one_valid_transaction_and_an_empty_plan_removes_the_table(netns):
    body = services.render("ab" * 32, {"10.0.9.2": ["10.0.9.5", "10.0.9.6"], "10.0.9.3": []})
    assert "numgen inc mod 2" in body and "reject" in body
    nftables.replace_table("pallet_svc_test", body, netns)
    listed = subprocess.run(["nsenter", f"--net={netns}", "nft", "list", "table", "ip", "pallet_svc_test"],
                            capture_output=True, text=True, check=True).stdout
    assert "10.0.9.2 : jump vip_0" in listed and "10.0.9.3 reject" in listed
    assert services.render("ab" * 32, {}) is None
    nftables.replace_table("pallet_svc_test", None, netns)
    assert not nftables.table_exists("pallet_svc_test", netns)


def test_ingress_rules_are_valid_and_host_mode_keeps_local_tasks_only(netns):
    mesh_ = SimpleNamespace(id="mesh-x", sandbox_ip="169.254.0.2")
    store = SimpleNamespace(endpoints=lambda: [SimpleNamespace(container_id="c1", address="10.0.9.5/24")])
    ports = [{"proto": "tcp", "published": 8080, "target": 80, "mode": "ingress", "backends": ["10.0.9.5", "10.0.9.6"]},
             {"proto": "tcp", "published": 9090, "target": 90, "mode": "host", "backends": ["10.0.9.5", "10.0.9.6"]},
             {"proto": "udp", "published": 5353, "target": 53, "mode": "host", "backends": ["10.0.9.6"]}]
    rules = ingress.render(mesh_, store, ports)
    assert "10.0.9.5 . 80, 1 : 10.0.9.6 . 80" in rules["inside"]
    assert "numgen inc mod 1 map { 0 : 10.0.9.5 . 90 }" in rules["inside"], "host mode: this node's task only"
    assert "5353" not in rules["host"], "host mode without a local task: the port is not published here"
    assert 'comment "pallet-port|tcp||8080"' in rules["host"]
    nftables.replace_table("pallet_mesh_test", rules["inside"], netns)
    nftables.replace_table("pallet_mesh_test", rules["host"], netns)
    nftables.replace_table("pallet_mesh_test", None, netns)
