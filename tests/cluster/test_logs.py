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
        time.sleep(1)  # the follower has opened every node's stream (a line written before would be missed)
        remote = next(row for row in cluster.containers(c) if row["Names"].startswith("talk."))
        c("exec", remote["Names"], "touch", "/tmp/go")
        seen = _read_until(follower, lambda text: "| go " in text)
        assert re.search(r"^talk\.\d\.[a-z0-9]{12}@node-c    \| go \S+$", seen, re.M), seen
        assert "| one " not in seen, "--tail 0 shows only what comes after"
    finally:
        follower.terminate()
        follower.wait(30)
        follower.stdout.close()

    # The Engine API gathers the same way: the docker CLI against node-a's pallet serve (which runs
    # node-a's agent in place of the standalone one) prints every node's lines with its own prefix.
    a.stop_agent()
    server = start_server(a.pallet, tmp_path / "api.sock")
    try:
        def through_api():
            out = server.docker("service", "logs", "talk").stdout
            return out if out.count("| one ") == 3 else None
        shown = eventually(through_api, timeout=60)
        assert shown, server.docker("service", "logs", "talk")
        nodes = {line.partition("|")[0].strip().rpartition("@")[2] for line in shown.splitlines()}
        assert nodes == {"node-a", "node-b", "node-c"}, shown
    finally:
        stop_server(server)
        a.start_agent()
