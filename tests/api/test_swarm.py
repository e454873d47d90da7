"""The swarm routes of ``pallet serve`` (/swarm, /nodes, /services, /tasks, /secrets, /configs) with the real
docker CLI 28 and docker-py, on one node of a single-member etcd with its agent."""

from __future__ import annotations

import base64
import json

import pytest

from tests.api.conftest import start_server, stop_server
from tests.cluster.conftest import eventually
from tests.cluster.one_node import one_node


@pytest.fixture
def swarm(tmp_path):
    """``(server, node, etcd)``: pallet serve on a joined manager; the server runs the node's agent."""
    with one_node(tmp_path, agent=False, busybox=True) as (etcd, node):
        server = start_server(node.pallet, tmp_path / "api.sock")
        try:
            yield server, node, etcd
        finally:
            try:   # while the server's agent runs, so the tasks are retired and their containers removed
                for service in node("service", "ls", "-q", check=False).stdout.split():
                    node("service", "rm", service, check=False)
                eventually(lambda: not etcd.client().range("/pallet/swarm/tasks/")[0], timeout=60)
            finally:
                stop_server(server)


def test_outside_a_cluster_swarm_routes_answer_503_and_secrets_still_work(api):
    status, _h, body = api.request("GET", "/v1.44/swarm")
    assert status == 503 and body["message"].startswith("This node is not a swarm manager.")
    for path in ("/services", "/nodes", "/tasks", "/configs"):
        assert api.request("GET", path)[0] == 503, path
    listed = api.docker("service", "ls")
    assert listed.returncode == 1 and "This node is not a swarm manager." in listed.stderr
    info = api.request("GET", "/info")[2]["Swarm"]
    assert info["LocalNodeState"] == "inactive" and info["NodeID"] == ""
    created = api.docker("secret", "create", "--label", "team=db", "apipw", "-", input="hunter2")
    assert created.returncode == 0, created.stderr
    secret_id = created.stdout.strip()
    assert api.docker("secret", "ls", "--format", "{{.ID}} {{.Name}}").stdout.split() == [secret_id, "apipw"]
    shown = json.loads(api.docker("secret", "inspect", "apipw").stdout)[0]
    assert shown["Spec"] == {"Name": "apipw", "Labels": {"team": "db"}} and "Data" not in shown["Spec"]
    assert api.pallet("secret", "ls", "--format", "{{.Name}}").stdout.split() == ["apipw"]   # the root's own store
    assert api.request("POST", "/secrets/create", {"Name": "bad", "Data": "***"})[::2] == (
        400, {"message": "invalid Data: expected base64"})
    assert api.docker("secret", "rm", "apipw").returncode == 0
    assert api.request("GET", f"/secrets/{secret_id}")[0] == 404


def test_swarm_info_and_node_ls_with_the_docker_cli(swarm):
    server, node, _etcd = swarm
    status, _h, cluster = server.request("GET", "/v1.44/swarm")
    assert status == 200 and len(cluster["ID"]) == 25 and cluster["Spec"]["Orchestration"] == {
        "TaskHistoryRetentionLimit": 5}
    info = server.request("GET", "/info")[2]["Swarm"]
    assert (info["NodeID"], info["LocalNodeState"], info["ControlAvailable"]) == (node.id, "active", True)
    assert info["Cluster"]["ID"] == cluster["ID"] and info["Nodes"] == info["Managers"] == 1
    eventually(lambda: "Leader" in server.docker("node", "ls").stdout)
    lines = server.docker("node", "ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "HOSTNAME", "STATUS", "AVAILABILITY", "MANAGER", "STATUS", "ENGINE", "VERSION"]
    assert lines[1].split()[:6] == [node.id, "*", "solo", "Ready", "Active", "Leader"]
    updated = server.docker("node", "update", "--label-add", "zone=a", "solo")
    assert updated.returncode == 0, updated.stderr
    assert json.loads(server.docker("node", "inspect", "self").stdout)[0]["Spec"]["Labels"] == {"zone": "a"}
    stale = server.request("POST", f"/nodes/{node.id}/update?version=1", {"Role": "manager", "Availability": "active"})
    assert stale[::2] == (500, {"message": "update out of sequence"})
    assert "docker swarm" not in server.docker("info").stderr


def test_service_create_ls_ps_logs_update_rm_with_the_docker_cli(swarm):
    server, node, _etcd = swarm
    created = server.docker("service", "create", "--name", "web", "--replicas", "2", "busybox",
                            "sh", "-c", "echo hello-from-$HOSTNAME-task; exec sleep 1000", timeout=180)
    assert created.returncode == 0, created.stderr
    service_id = created.stdout.splitlines()[0]
    assert f"verify: Service {service_id} converged" in created.stdout   # the CLI followed the tasks to running
    lines = server.docker("service", "ls").stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS"]
    assert lines[1].split()[1:] == ["web", "replicated", "2/2", "busybox:latest"]
    tasks = server.docker("service", "ps", "--format", "{{.Name}} {{.Node}} {{.DesiredState}}", "web").stdout
    assert sorted(tasks.splitlines()) == ["web.1 solo Running", "web.2 solo Running"]
    logs = eventually(lambda: (lambda out: out if out.count("hello-from") == 2 else None)(
        server.docker("service", "logs", "web").stdout))
    for line in logs.splitlines():
        prefix, _bar, text = line.partition("|")
        assert prefix.strip().startswith(("web.1.", "web.2.")) and prefix.strip().endswith("@solo")
        assert text.strip().startswith("hello-from-")
    scaled = server.docker("service", "update", "--detach", "--replicas", "3", "web")
    assert scaled.returncode == 0, scaled.stderr
    eventually(lambda: "3/3" in server.docker("service", "ls").stdout)
    inspected = json.loads(server.docker("service", "inspect", "web").stdout)[0]
    assert inspected["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert inspected["PreviousSpec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    assert server.docker("service", "rm", "web").stdout.strip() == "web"
    assert server.docker("service", "ls", "-q").stdout == ""
    missing = server.docker("service", "inspect", "web")
    assert (missing.returncode, missing.stderr) == (1, "Error: no such service: web\n")   # the CLI's words for a 404


def test_docker_py_services_and_nodes(swarm):
    server, node, etcd = swarm
    client = server.client()
    service = client.services.create("busybox", ["sleep", "1000"], name="py", labels={"via": "docker-py"})
    assert [s.name for s in client.services.list()] == ["py"]
    assert client.services.list(filters={"label": "via=docker-py"})[0].id == service.id
    assert client.services.get("py").attrs["Spec"]["Labels"] == {"via": "docker-py"}
    assert eventually(lambda: [t for t in service.tasks() if t["Status"]["State"] == "running"])
    task = service.tasks()[0]
    assert client.api.inspect_task(task["ID"])["ServiceID"] == service.id
    service.scale(2)
    assert eventually(lambda: len([t for t in service.tasks(filters={"desired-state": "running"})
                                   if t["Status"]["State"] == "running"]) == 2)
    assert [n.attrs["Description"]["Hostname"] for n in client.nodes.list()] == ["solo"]
    assert client.nodes.get(node.id).attrs["Spec"]["Role"] == "manager"
    service.remove()
    assert client.services.list() == []
    import docker

    with pytest.raises(docker.errors.NotFound):
        client.services.get("py")


def test_configs_live_in_the_cluster_store(swarm):
    server, _node, etcd = swarm
    status, _h, body = server.request("POST", "/configs/create", {
        "Name": "site", "Labels": {"k": "v"}, "Data": base64.b64encode(b"listen 80\n").decode()})
    assert status == 201
    assert server.docker("config", "ls", "--format", "{{.Name}}").stdout.split() == ["site"]
    shown = json.loads(server.docker("config", "inspect", "site").stdout)[0]
    assert base64.b64decode(shown["Spec"]["Data"]) == b"listen 80\n" and shown["ID"] == body["ID"]
    assert any(k.startswith("/pallet/swarm/configs/") for k in etcd.client().range("/pallet/swarm/")[0])
    assert server.docker("config", "rm", "site").returncode == 0
    assert server.request("GET", "/configs/site")[0] == 404
