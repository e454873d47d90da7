"""Secrets and configs reach a service's tasks on every node: through the cluster store, the secret sealed."""

from __future__ import annotations

import base64
import json

from tests.cluster.conftest import eventually

SLEEPER = ["--stop-grace-period", "1s", "busybox", "sleep", "100000"]
CHECK = "cat /run/secrets/api-token; stat -c '%a %u %g' /run/secrets/api-token /etc/site.conf; cat /etc/site.conf"


def _task_container(cluster, node, service: str) -> str:
    names = [c["Names"] for c in cluster.containers(node) if c["Names"].startswith(f"{service}.")]
    assert len(names) == 1, names
    return names[0]


def test_a_secret_and_a_config_reach_tasks_on_every_node(cluster, tmp_path):
    a, b, c = cluster.nodes
    (tmp_path / "token").write_bytes(b"s3cret-value\n")
    (tmp_path / "site.conf").write_text("listen 8080\n")
    secret_id = a("secret", "create", "token", str(tmp_path / "token")).stdout.strip()
    config_id = b("config", "create", "site", str(tmp_path / "site.conf")).stdout.strip()
    stored = cluster.etcd.client().get(f"/pallet/swarm/secrets/{secret_id}")
    assert b"s3cret" not in json.dumps(stored).encode() and b"s3cret" not in base64.b64decode(stored["Sealed"]), \
        "etcd holds the secret sealed"
    assert c("secret", "ls", "--format", "{{.Name}}").stdout.split() == ["token"], "every node sees the cluster's"
    assert c("config", "ls", "-q").stdout.split() == [config_id]

    a("service", "create", "-d", "--name", "files", "--replicas", "3",
      "--secret", "source=token,target=api-token,mode=0400",
      "--config", "source=site,target=/etc/site.conf,mode=0440,uid=1,gid=2", *SLEEPER)
    cluster.wait_running("files", {"node-a": 1, "node-b": 1, "node-c": 1})
    for node in cluster.nodes:
        seen = node("exec", _task_container(cluster, node, "files"), "sh", "-c", CHECK).stdout
        assert seen == "s3cret-value\n400 0 0\n440 1 2\nlisten 8080\n", f"{node.name}: {seen!r}"
    refused = a("secret", "rm", "token", check=False)
    assert refused.returncode == 1 and refused.stderr == \
        "Error: secret 'token' is in use by the following service: files\n"

    a("service", "update", "-d", "--secret-rm", "token", "--update-parallelism", "0", "--update-monitor", "1s", "files")
    cluster.wait_update("files")
    cluster.wait_running("files", 3)
    for node in cluster.nodes:
        container = _task_container(cluster, node, "files")
        assert node("exec", container, "sh", "-c", "test ! -e /run/secrets/api-token && cat /etc/site.conf"
                    ).stdout == "listen 8080\n", f"{node.name}: the removed secret is gone, the config stays"
    a("service", "rm", "files")
    assert eventually(lambda: not cluster.tasks_of(cluster.service_id("files") or "-") and not any(
        cluster.containers(n) for n in cluster.nodes))
    assert b("secret", "rm", "token").stdout == "token\n"
    assert c("config", "rm", "site").stdout == "site\n"
    assert not cluster.etcd.client().range("/pallet/swarm/secret")[0]
