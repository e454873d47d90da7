"""``pallet stack deploy/ls/services/ps/rm`` against a real single-member etcd and one joined node."""

from __future__ import annotations

import textwrap

import pytest

from tests.cluster.etcd_cluster import etcd_cluster
from tests.conftest import Pallet, teardown_networks

STACK = """
version: "3.8"
services:
  web:
    image: busybox
    command: httpd -f -p 80
    ports: ["18080:80"]
    networks: [front]
    deploy:
      replicas: 2
      update_config: {parallelism: 1, delay: 1s}
    secrets: [token]
    configs: [{source: site, target: /etc/site.conf}]
  worker:
    image: busybox
    command: ["sleep", "1000"]
    networks: [front, back]
    deploy: {mode: global}
    volumes: ["data:/data"]
  db:
    image: busybox
    command: sleep 1000
    networks: [back]
networks:
  front:
  back:
volumes:
  data:
secrets:
  token: {file: ./token.txt}
configs:
  site: {file: ./site.conf}
"""


@pytest.fixture
def etcd1(tmp_path):
    with etcd_cluster(tmp_path, size=1) as cluster:
        yield cluster


@pytest.fixture
def node(tmp_path, etcd1):
    """One pallet root joined to the cluster as a manager (no agent: these tests need records, not tasks)."""
    from pallet.kernel.cluster import nodes
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine

    base = tmp_path / "node"
    base.mkdir()
    pallet = Pallet(base / "root", base / "run")
    nodes.join(Engine(Config.load(root=str(pallet.root), config_path=pallet.env["PALLET_CONFIG"])), etcd1.url,
               role="manager", hostname="stack-node")
    try:
        yield pallet
    finally:
        teardown_networks(pallet)
        client = etcd1.client()
        client.delete("/pallet/", prefix=True)


def write_stack(tmp_path, text: str = STACK):
    (tmp_path / "token.txt").write_text("s3cret\n")
    (tmp_path / "site.conf").write_text("listen 80\n")
    path = tmp_path / "compose.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def keys(etcd, prefix: str = "/pallet/") -> list[str]:
    return sorted(etcd.client().range(prefix)[0])


def test_deploy_creates_networks_secrets_configs_then_services(tmp_path, node, etcd1):
    result = node("stack", "deploy", "-c", write_stack(tmp_path), "demo", check=True)
    assert result.stdout.splitlines() == ["Creating network demo_front", "Creating network demo_back",
                                          "Creating secret demo_token", "Creating config demo_site",
                                          "Creating service demo_web", "Creating service demo_worker",
                                          "Creating service demo_db"]
    assert node("stack", "ls").stdout.splitlines() == ["NAME   SERVICES", "demo   3"]
    services = node("stack", "services", "demo", "--format", "{{.Name}} {{.Mode}} {{.Ports}}").stdout.splitlines()
    assert services == ["demo_db replicated ", "demo_web replicated *:18080->80/tcp", "demo_worker global "]
    networks = node("network", "ls", "--filter", "label=com.docker.stack.namespace=demo",
                    "--format", "{{.Name}} {{.Driver}}").stdout.split("\n")
    assert sorted(filter(None, networks)) == ["demo_back overlay", "demo_front overlay"]
    assert node("secret", "ls", "--format", "{{.Name}}").stdout.split() == ["demo_token"]
    assert node("volume", "ls", "-q").stdout.split() == ["demo_data"]
    assert any(k.startswith("/pallet/swarm/configs/") for k in keys(etcd1))


def test_redeploy_updates_only_what_changed_and_prunes_only_when_asked(tmp_path, node, etcd1):
    path = write_stack(tmp_path)
    node("stack", "deploy", "-c", path, "demo", check=True)
    again = node("stack", "deploy", "-c", path, "demo", check=True)
    assert again.stdout == ""                                   # the same file changes nothing
    changed = STACK.replace("replicas: 2", "replicas: 3").replace("""  db:
    image: busybox
    command: sleep 1000
    networks: [back]
""", "")
    path = write_stack(tmp_path, changed)
    result = node("stack", "deploy", "-c", path, "demo", check=True)
    assert [line.split(" (id:")[0] for line in result.stdout.splitlines()] == ["Updating service demo_web"]
    assert node("stack", "ls").stdout.splitlines()[1] == "demo   3"   # db is kept without --prune
    pruned = node("stack", "deploy", "--prune", "-c", path, "demo", check=True)
    assert pruned.stdout.splitlines() == ["Removing service demo_db"]
    assert node("stack", "services", "demo", "--format", "{{.Name}} {{.Replicas}}").stdout.split("\n")[0] == \
        "demo_web 0/3"


def test_rm_removes_every_object_and_etcd_key_of_the_stack(tmp_path, node, etcd1):
    before = keys(etcd1)
    node("stack", "deploy", "-c", write_stack(tmp_path), "demo", check=True)
    other = node("stack", "deploy", "-c", write_stack(tmp_path, "services:\n  solo: {image: busybox}\n"), "other",
                 check=True)
    assert "Creating network other_default" in other.stdout
    result = node("stack", "rm", "demo", check=True)
    assert result.stdout.splitlines() == ["Removing service demo_db", "Removing service demo_web",
                                          "Removing service demo_worker", "Removing secret demo_token",
                                          "Removing config demo_site", "Removing network demo_back",
                                          "Removing network demo_front"]
    assert node("stack", "ls").stdout.splitlines() == ["NAME    SERVICES", "other   1"]
    assert node("secret", "ls", "-q").stdout == ""
    assert "demo_" not in node("network", "ls").stdout
    node("stack", "rm", "other", check=True)
    assert keys(etcd1) == before                                # nothing of either stack is left in etcd
    gone = node("stack", "rm", "demo")
    assert (gone.returncode, gone.stdout, gone.stderr) == (0, "", "Nothing found in stack: demo\n")
    assert node("volume", "ls", "-q").stdout.split() == ["demo_data"]   # volumes are kept, as Docker keeps them
    node("volume", "rm", "demo_data", check=True)


def test_external_objects_must_exist_and_changed_secrets_are_refused(tmp_path, node):
    missing = node("stack", "deploy", "-c", write_stack(tmp_path, """
        services:
          web: {image: busybox, networks: [shared]}
        networks:
          shared: {external: true}
    """), "demo")
    assert missing.returncode == 1
    assert missing.error_lines == ['Error: network "shared" is declared as external, but could not be found. You need '
                                   "to create a swarm-scoped network before the stack is deployed"]
    assert node("stack", "ls").stdout.splitlines() == ["NAME   SERVICES"]     # nothing was made
    path = write_stack(tmp_path)
    node("stack", "deploy", "-c", path, "demo", check=True)
    (tmp_path / "token.txt").write_text("rotated\n")
    refused = node("stack", "deploy", "-c", path, "demo")
    assert refused.returncode == 1 and refused.error_lines[0].startswith(
        "Error: failed to update secret demo_token: only updates to Labels are allowed")
    node("stack", "rm", "demo", check=True)
    node("volume", "rm", "demo_data", check=True)


def test_compose_errors_are_one_line_and_change_nothing(tmp_path, node):
    result = node("stack", "deploy", "-c", write_stack(tmp_path, """
        services:
          web: {image: busybox, deploy: {replicas: x}}
    """), "demo")
    assert (result.returncode, result.error_lines) == (1, ["Error: services.web.deploy.replicas: 'x' is not of type "
                                                           "'integer'"])
    assert node("stack", "ls").stdout.splitlines() == ["NAME   SERVICES"]
    usage = node("stack", "deploy", "demo")
    assert (usage.returncode, usage.error_lines) == (2, ["Error: Please specify a Compose file (with --compose-file)."])


def test_a_root_outside_any_cluster_is_told_to_join(tmp_path, pallet):
    result = pallet("stack", "deploy", "-c", write_stack(tmp_path), "demo")
    assert result.returncode == 1
    assert result.error_lines == ['Error: this node is not part of a cluster: join one first with '
                                  '"pallet node join --cluster-store etcd://HOST:PORT"']
