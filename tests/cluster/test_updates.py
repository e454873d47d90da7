"""Rolling updates gated on health: one task at a time to a new tag, a manual rollback (start-first),
and an update whose health check fails rolled back automatically while the service keeps running."""

from __future__ import annotations

import json

from tests.cluster.conftest import eventually

HEALTHY = ["--health-cmd", "test -e /tmp/ok", "--health-interval", "300ms", "--health-retries", "1"]
SERVE = ["sh", "-c", "touch /tmp/ok; exec sleep 100000"]


def _tag(cluster, *tags):
    for node in cluster.nodes:
        for tag in tags:
            node("tag", "busybox", tag)


def _live(cluster, service):
    return [t for t in cluster.tasks(service) if t["DesiredState"] == "running"]


def _images(cluster, service) -> list[str]:
    return sorted(t["Spec"]["ContainerSpec"]["Image"] for t in _live(cluster, service)
                  if t["Status"]["State"] == "running")


def _watch_until(cluster, service, done) -> list[int]:
    """Sample how many tasks run until ``done()``; every sample is returned (to check a lower bound)."""
    samples = []

    def step():
        samples.append(sum(t["Status"]["State"] == "running" for t in _live(cluster, service)))
        return done()
    assert eventually(step, timeout=180), f"{service}: {cluster.update_state(service)}; {cluster.agent_logs()}"
    return samples


def test_rolling_update_to_a_new_tag_one_at_a_time_then_rollback(cluster):
    a, b, _c = cluster.nodes
    _tag(cluster, "busybox:v1", "busybox:v2")
    a("service", "create", "-d", "--name", "roll", "--replicas", "3", *HEALTHY, "--stop-grace-period", "1s",
      "--update-parallelism", "1", "--update-monitor", "1s", "--rollback-order", "start-first",
      "--rollback-parallelism", "0", "--rollback-monitor", "1s", "busybox:v1", *SERVE)
    cluster.wait_running("roll", 3)
    assert eventually(lambda: all(t["Status"]["Health"] == "healthy" for t in _live(cluster, "roll")))

    b("service", "update", "-d", "--image", "busybox:v2", "roll")
    samples = _watch_until(cluster, "roll", lambda: cluster.update_state("roll") == "completed")
    assert min(samples) >= 2, f"parallelism 1: never more than one of three tasks down ({samples})"
    assert _images(cluster, "roll") == ["busybox:v2"] * 3
    cluster.wait_running("roll", 3)
    for node in cluster.nodes:
        assert all(c["Image"] == "busybox:v2" for c in cluster.containers(node)), "old containers are gone"
    history = a("service", "ps", "roll").stdout.splitlines()[1:]
    assert sum(r.split()[1] == "\\_" for r in history) == 3 and sum(" Shutdown " in r for r in history) == 3
    view = json.loads(a("service", "inspect", "roll").stdout)[0]
    assert view["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:v1"
    assert view["UpdateStatus"]["State"] == "completed"

    assert a("service", "rollback", "-d", "roll").stdout == "roll\n"
    samples = _watch_until(cluster, "roll", lambda: cluster.update_state("roll") == "rollback_completed")
    assert min(samples) >= 3, f"start-first: the old task stops only once its successor is healthy ({samples})"
    assert _images(cluster, "roll") == ["busybox:v1"] * 3
    view = json.loads(a("service", "inspect", "roll").stdout)[0]
    assert view["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:v1"
    assert view["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:v2"


def test_an_update_whose_health_check_fails_is_rolled_back_automatically(cluster):
    a, _b, _c = cluster.nodes
    _tag(cluster, "busybox:v1", "busybox:v2")
    a("service", "create", "-d", "--name", "guarded", "--replicas", "2", *HEALTHY, "--stop-grace-period", "1s",
      "--restart-delay", "1s", "--update-failure-action", "rollback", "--update-monitor", "1s",
      "--rollback-monitor", "1s", "busybox:v1", *SERVE)
    cluster.wait_running("guarded", 2)
    a("service", "update", "-d", "--image", "busybox:v2", "--health-cmd", "test -e /tmp/never", "guarded")
    messages = set()

    def rolled_back():
        status = json.loads(a("service", "inspect", "guarded").stdout)[0].get("UpdateStatus") or {}
        messages.add(status.get("Message", ""))
        return status.get("State") == "rollback_completed"
    samples = _watch_until(cluster, "guarded", rolled_back)
    assert min(samples) >= 1, f"one of the two tasks kept running throughout ({samples})"
    # rollback_completed is reached only through rollback_started, which nothing but the failure set here (no
    # `service rollback` was run). Its message lasts only while the rollback runs (a few seconds): a sample
    # that caught it must name the failed task; under load the CLI's samples may all miss it (CI did once).
    started = {m for m in messages if m.startswith("update rolled back")}
    assert all(m.startswith("update rolled back due to failure or early termination of task ") for m in started)
    assert not {m for m in messages if m.startswith("update paused")}, messages
    view = json.loads(a("service", "inspect", "guarded").stdout)[0]
    assert view["UpdateStatus"]["Message"] == "rollback completed"
    container = view["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert container["Image"] == "busybox:v1" and container["Healthcheck"]["Test"] == ["CMD-SHELL", "test -e /tmp/ok"]
    cluster.wait_running("guarded", 2)
    assert _images(cluster, "guarded") == ["busybox:v1"] * 2
    failed = [t for t in cluster.tasks("guarded") if t["Spec"]["ContainerSpec"]["Image"] == "busybox:v2"]
    assert failed and all(t["Status"]["State"] == "failed" for t in failed)
    assert {t["Status"]["Err"] for t in failed} == {"task: unhealthy container"}
    ps = a("service", "ps", "guarded").stdout
    assert "unhealthy container" in ps or "task: unhealthy" in ps
