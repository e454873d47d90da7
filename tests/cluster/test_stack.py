"""``pallet stack deploy/ls/services/ps/rm`` against a real single-member etcd and one joined node."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.cluster.conftest import eventually
from tests.cluster.one_node import one_node

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
def solo(tmp_path):
    """One manager node without an agent (these tests need the records, not running tasks)."""
    with one_node(tmp_path, agent=False) as pair:
        yield pair


@pytest.fixture
def node(solo):
    return solo[1].pallet


@pytest.fixture
def etcd1(solo):
    return solo[0].client()


def write_stack(tmp_path, text: str = STACK):
    (tmp_path / "token.txt").write_text("s3cret\n")
    (tmp_path / "site.conf").write_text("listen 80\n")
    path = tmp_path / "compose.yml"
    path.write_text(textwrap.dedent(text))
    return str(path)


def keys(etcd, prefix: str = "/pallet/") -> list[str]:
    return sorted(etcd.range(prefix)[0])


@pytest.mark.timeout(900)   # some 25 commands and two overlay networks: minutes on a loaded 2-core host
def test_deploy_redeploy_prune_and_rm(tmp_path, node, etcd1):
    before = keys(etcd1)
    path = write_stack(tmp_path)
    result = node("stack", "deploy", "-c", path, "demo", check=True)
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

    result = node("stack", "rm", "demo", check=True)
    assert result.stdout.splitlines() == ["Removing service demo_web", "Removing service demo_worker",
                                          "Removing secret demo_token", "Removing config demo_site",
                                          "Removing network demo_back", "Removing network demo_front"]
    assert node("stack", "ls").stdout.splitlines() == ["NAME   SERVICES"]
    assert node("secret", "ls", "-q").stdout == ""
    assert "demo_" not in node("network", "ls").stdout
    assert keys(etcd1) == before                                # nothing of the stack is left in etcd
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
    path = write_stack(tmp_path, """
        services:
          web: {image: busybox, secrets: [token]}
        secrets:
          token: {file: ./token.txt}
    """)
    node("stack", "deploy", "-c", path, "demo", check=True)
    (tmp_path / "token.txt").write_text("rotated\n")
    refused = node("stack", "deploy", "-c", path, "demo")
    assert refused.returncode == 1 and refused.error_lines[0].startswith(
        "Error: failed to update secret demo_token: only updates to Labels are allowed")
    assert node("stack", "rm", "demo", check=True).stdout.splitlines() == [
        "Removing service demo_web", "Removing secret demo_token", "Removing network demo_default"]


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


def test_with_an_agent_tasks_run_ps_lists_them_and_rm_takes_them_away(tmp_path):
    with one_node(tmp_path) as (etcd, solo):
        stack = write_stack(tmp_path, """
            services:
              web:
                image: busybox
                command: ["sh", "-c", "echo up; exec sleep 1000"]
                deploy: {replicas: 2}
              once:
                image: busybox
                command: sleep 1000
                deploy: {mode: global}
        """)
        solo("stack", "deploy", "-c", stack, "live")
        running = eventually(lambda: [line for line in solo("stack", "ps", "live", "--format",
                                                             "{{.Name}} {{.Node}} {{.DesiredState}} {{.CurrentState}}")
                                      .stdout.splitlines() if " Running Running " in line] if len(
            [1 for t in etcd.client().range("/pallet/swarm/tasks/")[0].values()
             if t["Status"]["State"] == "running"]) == 3 else None)
        assert sorted(line.split()[0] for line in running) == ["live_once." + solo.id, "live_web.1", "live_web.2"]
        assert all(line.split()[1] == "solo" for line in running)
        assert solo("stack", "services", "live", "--format", "{{.Name}} {{.Replicas}}").stdout.splitlines() == \
            ["live_once 1/1", "live_web 2/2"]
        containers = solo("ps", "--format", "{{.Names}}").stdout.split()
        assert len(containers) == 3 and all(name.startswith(("live_web.", "live_once.")) for name in containers)
        removed = solo("stack", "rm", "live")
        assert removed.stdout.splitlines() == ["Removing service live_once", "Removing service live_web",
                                               "Removing network live_default"]
        assert etcd.client().range("/pallet/swarm/tasks/")[0] == {}   # rm waited for the tasks to go
        assert eventually(lambda: solo("ps", "-aq").stdout == "")
        # The agent takes its tasks down side by side: every container had its SIGTERM before any of
        # them died (`sleep` as PID 1 ignores it, so each waits out its grace period, together).
        events = [json.loads(line) for line in solo("events", "--since", "1h", "--until", "0s", "--format",
                                                     "json").stdout.splitlines()]
        taken = [e for e in events if e["Type"] == "container" and e["Actor"]["Attributes"]["name"].startswith("live_")]
        terms = [e["timeNano"] for e in taken
                 if e["Action"] == "kill" and str(e["Actor"]["Attributes"].get("signal")) == "15"]
        dies = [e["timeNano"] for e in taken if e["Action"] == "die"]
        assert len(terms) == 3 and len(dies) == 3 and max(terms) < min(dies), [
            (e["Action"], e["Actor"]["Attributes"].get("signal"), e["timeNano"]) for e in taken]
