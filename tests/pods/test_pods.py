"""Pods with real containers: an httpd and a sidecar that reaches it on localhost, the pod's published port,
the lifecycle commands, and bad input. The network fixture tears down whatever the pods' networks made."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid

import pytest

from tests.network.conftest import NET

SERVE = "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec busybox httpd -f -p 8080 -h /www"


@pytest.fixture
def cli(pallet):
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from tests.network.conftest import teardown_root

    config = pallet.root.parent / "pallet.toml"
    config.write_text(f'[network]\nbridge_name = "pt{uuid.uuid4().hex[:6]}0"\ndefault_subnet = "{NET}.70.0/24"\n'
                      'default_address_pools = "10.232.0.0/16:24"\n')
    pallet("image", "build-busybox", check=True)
    try:
        yield pallet
    finally:
        for pod_id in pallet("pod", "ls", "-q").stdout.split():
            pallet("pod", "rm", "-f", pod_id)
        ids = pallet("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            pallet("rm", "-f", *ids)
        leaked = teardown_root(Engine(Config.load(root=str(pallet.root), config_path=str(config))))
        assert not leaked, f"left behind: {leaked}"


def sidecar_fetch(cli, pod: str):
    for _ in range(30):
        result = cli("run", "--rm", "--pod", pod, "busybox", "sh", "-c",
                     "busybox timeout 4 busybox wget -q -O - http://localhost:8080/; exit $?", timeout=60)
        if result.returncode == 0:
            return result
        time.sleep(0.2)
    return result


def test_a_sidecar_reaches_the_pods_httpd_on_localhost_and_the_pod_publishes_its_port(cli):
    from pallet.kernel.network.ports import _random_port

    port = _random_port("tcp", "127.0.0.1", set())
    pod_id = cli("pod", "create", "--name", "web", "-p", f"127.0.0.1:{port}:8080", "--label", "tier=front",
                 check=True).stdout.strip()
    cli("run", "-d", "--name", "httpd", "--pod", "web", "busybox", "sh", "-c", SERVE, check=True)

    fetched = sidecar_fetch(cli, "web")
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == "hello-from-web", "members share the pod's hostname"

    body = ""
    for _ in range(30):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                body = response.read().decode()
            break
        except OSError:
            time.sleep(0.1)
    assert body.strip() == "hello-from-web"

    info = json.loads(cli("pod", "inspect", "web", check=True).stdout)[0]
    assert info["Id"] == pod_id and info["Status"] == "Running" and info["Labels"] == {"tier": "front"}
    assert [c["Name"] for c in info["Containers"]] == ["web-infra", "httpd"]
    assert "web" in cli("pod", "ls", check=True).stdout
    assert "httpd" in cli("pod", "ps", "web", check=True).stdout
    assert "httpd -f -p 8080" in cli("pod", "top", "web", check=True).stdout
    stats = cli("pod", "stats", "--no-stream", "web", check=True).stdout
    assert "httpd" in stats and "web-infra" in stats

    cli("pod", "stop", "web", check=True)
    assert json.loads(cli("pod", "inspect", "web", check=True).stdout)[0]["Status"] == "Exited"
    cli("pod", "start", "web", check=True)
    assert sidecar_fetch(cli, "web").returncode == 0, "restarted members rejoin the new infra namespaces"

    cli("pod", "rm", "-f", "web", check=True)
    assert cli("ps", "-aq").stdout.strip() == "", "pod rm -f removes every container"
    assert cli("pod", "ls", "-q").stdout.strip() == ""


def test_shared_pid_namespace_lets_members_see_each_other_and_logs_are_prefixed(cli):
    cli("pod", "create", "--name", "pids", "--share", "net,ipc,uts,pid", check=True)
    cli("run", "-d", "--name", "sleeper", "--pod", "pids", "busybox", "sh", "-c", "echo started; exec sleep 300",
        check=True)
    seen = cli("run", "--rm", "--pod", "pids", "busybox", "ps", "-o", "args", check=True).stdout
    assert "sleep 300" in seen and "while :" in seen, seen
    # every member is in the infra container's UTS (and IPC) namespace, not a copy with the same name
    namespaces = "readlink /proc/self/ns/uts /proc/self/ns/ipc; hostname"
    member = cli("run", "--rm", "--pod", "pids", "busybox", "sh", "-c", namespaces, check=True).stdout
    sleeper = cli("exec", "sleeper", "sh", "-c", namespaces, check=True).stdout
    assert member == sleeper and member.split()[-1] == "pids", (member, sleeper)
    own = cli("run", "--rm", "busybox", "readlink", "/proc/self/ns/uts", check=True).stdout
    assert own.strip() != member.split()[0]
    for _ in range(30):
        logs = cli("pod", "logs", "pids", check=True).stdout
        if logs:
            break
        time.sleep(0.1)
    assert logs == "sleeper started\n"
    refused = cli("pod", "rm", "pids")
    assert refused.returncode == 1 and "has running containers (sleeper)" in refused.stderr
    cli("pod", "kill", "pids", check=True)
    cli("pod", "prune", "-f", check=True)
    assert cli("pod", "ls", "-q").stdout.strip() == "" and cli("ps", "-aq").stdout.strip() == ""


def test_bad_input_is_one_clear_line(cli):
    bad = cli("pod", "create", "--share", "net,mnt")
    assert bad.returncode == 2 and bad.error_lines == ['Error: invalid --share kind "mnt" (one of net, ipc, uts, pid)']
    cli("pod", "create", "--name", "p1", check=True)
    twice = cli("pod", "create", "--name", "p1")
    assert twice.returncode == 1 and len(twice.error_lines) == 1 and "already in use" in twice.stderr
    clash = cli("run", "--rm", "--pod", "p1", "-p", "80", "busybox", "true")
    assert clash.returncode != 0 and len(clash.error_lines) == 1 and "set it on the pod" in clash.stderr
    missing = cli("run", "--rm", "--pod", "nope", "busybox", "true")
    assert missing.returncode != 0 and missing.error_lines == ["Error: no such pod: nope"]


def test_infra_image_runs_its_own_command_and_pod_restart_rejoins_the_new_namespaces(cli, tmp_path):
    context = tmp_path / "pause"
    context.mkdir()
    (context / "Dockerfile").write_text(
        'FROM busybox\nCMD ["sh", "-c", "trap \'exit 0\' TERM; while :; do sleep 1001 & wait; done"]\n')
    cli("build", "-q", "-t", "mypause:1", str(context), check=True)
    cli("pod", "create", "--name", "own", "--infra-image", "mypause:1", check=True)
    cli("run", "-d", "--name", "member", "--pod", "own", "busybox", "sleep", "300", check=True)
    infra = json.loads(cli("inspect", "own-infra", check=True).stdout)[0]
    assert infra["Config"]["Image"] == "mypause:1" and infra["State"]["Running"]
    assert "sleep 1001" in cli("top", "own-infra", check=True).stdout

    def netns(name):
        return cli("exec", name, "readlink", "/proc/self/ns/net", check=True).stdout.strip()

    def started(name):
        return json.loads(cli("inspect", name, check=True).stdout)[0]["State"]["StartedAt"]

    before = (netns("own-infra"), netns("member"), started("member"), started("own-infra"))
    assert before[0] == before[1]
    cli("pod", "restart", "own", check=True)
    after = (netns("own-infra"), netns("member"), started("member"), started("own-infra"))
    assert after[0] == after[1], "the member is in the new infra container's namespace"
    # (a netns inode number may be reused once the old one is freed: the start times tell the restart)
    assert after[2] != before[2] and after[3] != before[3], (before, after)

    cli("pod", "pause", "own", check=True)
    states = {c["Name"]: c["State"] for c in json.loads(cli("pod", "inspect", "own", check=True).stdout)[0]["Containers"]}
    assert set(states.values()) == {"paused"}, states
    cli("pod", "unpause", "own", check=True)
    assert json.loads(cli("inspect", "member", check=True).stdout)[0]["State"]["Status"] == "running"

    # --infra-command overrides the image's command (a JSON array or a shell line)
    cli("pod", "create", "--name", "cmd", "--infra-command", '["sh", "-c", "exec sleep 1002"]', check=True)
    assert "sleep 1002" in cli("top", "cmd-infra", check=True).stdout
    bad = cli("pod", "create", "--name", "bad", "--infra-command", '["sh", 1]')
    assert bad.returncode == 2 and bad.error_lines == [
        """Error: invalid --infra-command '["sh", 1]': a JSON array of strings or a shell line"""]
    assert sorted(cli("pod", "ls", "--format", "{{.Name}}", check=True).stdout.split()) == ["cmd", "own"]
    table = cli("pod", "ls", check=True).stdout.splitlines()
    assert table[0].split() == ["POD", "ID", "NAME", "STATUS", "CREATED", "INFRA", "ID", "#", "OF", "CONTAINERS"]
    assert cli("pod", "ls", "--filter", "name=ow", "--format", "{{.Name}} {{.NumberOfContainers}} {{.Status}}",
               check=True).stdout == "own 2 Running\n"
    assert cli("pod", "ls", "-q", "--filter", "label=nope", check=True).stdout == ""
    wrong = cli("pod", "ls", "--filter", "colour=red")
    assert wrong.returncode == 2 and wrong.error_lines == ["Error: invalid filter 'colour' (one of id, name, status, label)"]
    cli("pod", "rm", "-f", "own", "cmd", check=True)
    cli("rmi", "mypause:1", check=True)
