"""``service logs`` gathers the logs of a service's tasks from every node (each agent serves its own)."""

from __future__ import annotations

import re
import selectors
import subprocess
import time

from tests.api.conftest import start_server, stop_server
from tests.cluster.conftest import eventually
from tests.conftest import REPO

TALKER = ["sh", "-c", 'echo "one $(hostname)"; echo "two $(hostname)"; echo "oops $(hostname)" >&2; '
          'while :; do if [ -e /tmp/go ]; then rm /tmp/go; echo "go $(hostname)"; fi; sleep 0.2; done']
PREFIX = re.compile(r"^talk\.(\d)\.([a-z0-9]{12})@(node-[abc])    \| (\w+) (\S+)$")


def _rows(text: str) -> list[tuple]:
    rows = []
    for line in text.splitlines():
        match = PREFIX.match(line)
        assert match, f"not Docker's prefix: {line!r}"
        rows.append(match.groups())
    return rows


def _read_until(proc, wanted, timeout: float = 60.0) -> str:
    """What the follower printed until ``wanted(text)`` (the test's generous deadline)."""
    seen = b""
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while not wanted(seen.decode()) and time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                chunk = proc.stdout.read1(65536)
                if not chunk:
                    break
                seen += chunk
    return seen.decode()


def test_service_logs_gathers_every_node_with_tail_timestamps_and_follow(cluster, tmp_path):
    a, b, c = cluster.nodes
    a("service", "create", "-d", "--name", "talk", "--replicas", "3", "--stop-grace-period", "1s", "busybox", *TALKER)
    cluster.wait_running("talk", {"node-a": 1, "node-b": 1, "node-c": 1})
    tasks = {t["ID"][:12]: t for t in cluster.tasks("talk")}
    where = {n.id: n.name for n in cluster.nodes}

    def complete():
        shown = c("service", "logs", "talk")
        return shown if len(shown.stdout.splitlines()) == 6 and len(shown.stderr.splitlines()) == 3 else None
    shown = eventually(complete, timeout=60)
    assert shown, "every task's lines, from the three nodes"
    rows = _rows(shown.stdout)
    assert {r[2] for r in rows} == {"node-a", "node-b", "node-c"}
    for slot, task_id, node, word, _host in rows:
        assert where[tasks[task_id]["NodeID"]] == node and str(tasks[task_id]["Slot"]) == slot
    assert sorted(r[3] for r in rows) == ["one"] * 3 + ["two"] * 3
    assert {r[3] for r in _rows(shown.stderr)} == {"oops"}, "stderr lines stay on stderr"

    tail = a("service", "logs", "--tail", "2", "talk")   # per task, over both streams (as Docker counts)
    assert sorted(r[3] for r in _rows(tail.stdout)) == ["two"] * 3 and len(tail.stderr.splitlines()) == 3
    stamped = b("service", "logs", "-t", "--no-task-ids", "talk").stdout.splitlines()
    assert len(stamped) == 6 and all(
        re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z talk\.\d@node-[abc]    \| (one|two) ", line) for line in stamped)
    assert b("service", "logs", "--tail", "x", "talk", check=False).stderr == \
        'Error: invalid argument "x" for "-n, --tail" flag\n'

    follower = subprocess.Popen(a.pallet.command("service", "logs", "-f", "--tail", "0", "talk"), cwd=str(REPO),
                                env=a.pallet.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        # A line written before the follower opened node-c's stream is not shown (--tail 0): ask again
        # until one comes through, on a loaded machine the streams open late.
        remote = next(row for row in cluster.containers(c) if row["Names"].startswith("talk."))
        seen, deadline = "", time.monotonic() + 60
        while "| go " not in seen and time.monotonic() < deadline:
            c("exec", remote["Names"], "touch", "/tmp/go")
            seen += _read_until(follower, lambda text: "| go " in text, timeout=2)
        assert re.search(r"^talk\.\d\.[a-z0-9]{12}@node-c    \| go \S+$", seen, re.M), seen
        assert "| one " not in seen, "--tail 0 shows only what comes after"
    finally:
        follower.terminate()
        follower.wait(30)
        follower.stdout.close()

    # The Engine API gathers the same way: the docker CLI against node-a's pallet serve (which runs
    # node-a's agent in place of the standalone one) prints every node's lines with its own prefix.
    # On a loaded machine the server may take longer than the lease TTL to start, node-a's task then
    # moves: the lines come from wherever the running tasks are by then (two nodes at least).
    a.stop_agent()
    server = start_server(a.pallet, tmp_path / "api.sock")
    try:
        def through_api():
            running = {where[t["NodeID"]] for t in cluster.tasks("talk") if t["Status"]["State"] == "running"
                       and t["DesiredState"] == "running"}
            out = server.docker("service", "logs", "talk").stdout
            shown_nodes = {line.partition("|")[0].strip().rpartition("@")[2] for line in out.splitlines()}
            return out if out.count("| one ") == 3 and shown_nodes == running else None
        shown = eventually(through_api, timeout=60)
        assert shown, (server.docker("service", "logs", "talk"), cluster.tasks("talk"))
        nodes = {line.partition("|")[0].strip().rpartition("@")[2] for line in shown.splitlines()}
        assert len(nodes) >= 2 and nodes <= {"node-a", "node-b", "node-c"}, shown
    finally:
        stop_server(server)
        a.start_agent()


def test_the_log_endpoint_answers_only_a_node_holding_the_cluster_key(tmp_path):
    """Each agent's log endpoint speaks only mutual TLS from the cluster key: a plain HTTP client, a TLS
    client without a certificate and one whose certificate another key made get nothing; a reader with
    the cluster's key gets the task's lines, and refuses an endpoint that is not the node it asked for."""
    import http.client
    import os
    import ssl
    from urllib.parse import urlparse

    import pytest

    from pallet.kernel.cluster import credentials, logs
    from pallet.kernel.errors import PalletError
    from tests.cluster.one_node import one_node

    with one_node(tmp_path) as (etcd, solo):
        solo("service", "create", "-d", "--name", "said", "--stop-grace-period", "1s", "busybox",
             "sh", "-c", "echo secret words; exec sleep 1000")
        client = etcd.client()

        def running_task():
            tasks = [t for t in client.range("/pallet/swarm/tasks/")[0].values() if t["Status"]["State"] == "running"]
            return tasks[0] if tasks else None
        task = eventually(running_task)
        assert task, solo.log.read_text()
        url = client.get(f"/pallet/swarm/log-endpoints/{solo.id}")
        assert url.startswith("https://"), url
        where = urlparse(url)
        path = f"/tasks/{task['ID']}/logs?tail=all&follow=0"

        plain = http.client.HTTPConnection(where.hostname, where.port, timeout=10)
        with pytest.raises((OSError, http.client.HTTPException)):
            plain.request("GET", path)
            plain.getresponse().read()
        plain.close()

        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.check_hostname, anonymous.verify_mode = False, ssl.CERT_NONE
        stranger = credentials.tls_context(os.urandom(32), solo.id, server=False)
        for context in (anonymous, stranger):
            connection = http.client.HTTPSConnection(where.hostname, where.port, timeout=10, context=context)
            with pytest.raises((OSError, http.client.HTTPException)):
                connection.request("GET", path)
                assert b"secret words" not in connection.getresponse().read()
            connection.close()

        member = credentials.tls_context(solo.secrets_key.read_bytes(), "a-reader", server=False)
        lines = eventually(lambda: list(logs.remote(url, solo.id, member, task["ID"], None, False)))
        assert [(stream, text.strip()) for stream, _stamp, text in lines] == [("stdout", "secret words")], lines
        with pytest.raises(PalletError, match="is not node someoneelse's"):
            list(logs.remote(url, "someoneelse", member, task["ID"], None, False))
