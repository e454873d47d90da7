"""Health checks with real containers: transitions, results, ps, healthcheck run, the on-failure actions.

Most tests use a one-hour interval and drive the probes with ``pallet healthcheck run``, so that
nothing depends on how fast this machine is; the prober itself is tested with short intervals."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime

import pytest

from tests.services.conftest import eventually, state

HOUR = ["--health-interval", "1h"]


def _status(pallet, name):
    return pallet("ps", "-a", "--filter", f"name={name}", "--format", "{{.Status}}", check=True).stdout.strip()


def test_starting_healthy_unhealthy_with_results_and_ps(bb):
    bb("run", "-d", "--name", "hc-t", "--health-cmd", "cat /tmp/ok", *HOUR, "--health-retries", "2",
       "busybox", "sh", "-c", "echo fine > /tmp/ok; exec sleep 1000", check=True)
    health = state(bb, "hc-t")["Health"]
    assert (health["Status"], health["FailingStreak"]) == ("starting", 0)
    assert _status(bb, "hc-t").endswith("(health: starting)")
    assert eventually(lambda: bb("exec", "hc-t", "test", "-e", "/tmp/ok").returncode == 0)
    run = bb("healthcheck", "run", "hc-t")
    assert (run.returncode, run.stdout) == (0, "healthy\n")
    assert _status(bb, "hc-t").endswith("(healthy)")
    bb("exec", "hc-t", "rm", "/tmp/ok", check=True)
    first = bb("healthcheck", "run", "hc-t")
    assert first.returncode == 1 and state(bb, "hc-t")["Health"]["Status"] == "healthy"  # one failure of two
    second = bb("healthcheck", "run", "hc-t")
    assert (second.returncode, second.stdout) == (1, "unhealthy\n")
    assert _status(bb, "hc-t").endswith("(unhealthy)")
    for _ in range(4):
        bb("healthcheck", "run", "hc-t")
    health = state(bb, "hc-t")["Health"]
    assert health["Status"] == "unhealthy" and health["FailingStreak"] == 6
    assert len(health["Log"]) == 5  # the last five
    assert [entry["ExitCode"] for entry in health["Log"]] == [1] * 5
    assert "can't open '/tmp/ok'" in health["Log"][-1]["Output"]
    assert state(bb, "hc-t")["Running"]  # --health-on-failure none: it keeps running
    # each change of status is one event, with Docker's action names; event=health_status matches them
    shown = bb("events", "--since", "0", "--until", str(int(time.time()) + 1),
               "--filter", "container=hc-t", "--filter", "event=health_status", "--format", "{{.Action}}")
    assert shown.stdout.split("\n")[:-1] == ["health_status: healthy", "health_status: unhealthy"], shown.stderr


def test_the_prober_runs_on_its_interval(bb):
    bb("run", "-d", "--name", "hc-p", "--health-cmd", "test -e /tmp/ok", "--health-interval", "100ms",
       "--health-retries", "1", "busybox", "sh", "-c", "touch /tmp/ok; exec sleep 1000", check=True)
    assert eventually(lambda: state(bb, "hc-p")["Health"]["Status"] == "healthy")
    bb("exec", "hc-p", "rm", "/tmp/ok", check=True)
    assert eventually(lambda: state(bb, "hc-p")["Health"]["Status"] == "unhealthy")
    bb("exec", "hc-p", "touch", "/tmp/ok", check=True)
    assert eventually(lambda: state(bb, "hc-p")["Health"]["Status"] == "healthy")


def test_a_probe_over_its_timeout_fails(bb):
    bb("run", "-d", "--name", "hc-to", "--health-cmd", "sleep 30", *HOUR, "--health-timeout", "200ms",
       "--health-retries", "1", "busybox", "sleep", "1000", check=True)
    assert bb("healthcheck", "run", "hc-to").returncode == 1
    last = state(bb, "hc-to")["Health"]["Log"][-1]
    assert last["ExitCode"] == -1 and "exceeded timeout" in last["Output"]


def test_failures_in_the_start_period_do_not_count(bb):
    bb("run", "-d", "--name", "hc-sp", "--health-cmd", "false", *HOUR, "--health-start-period", "1h",
       "--health-retries", "1", "busybox", "sleep", "1000", check=True)
    for _ in range(3):
        bb("healthcheck", "run", "hc-sp")
    health = state(bb, "hc-sp")["Health"]
    assert (health["Status"], health["FailingStreak"], len(health["Log"])) == ("starting", 0, 3)


def test_image_healthcheck_is_used_tuned_or_disabled(bb, tmp_path):
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nHEALTHCHECK --interval=1h --retries=4 CMD test -e /etc/passwd\n")
    bb("build", "-q", "-t", "hc-image", str(context), check=True)
    bb("run", "-d", "--name", "hc-img", "hc-image", "sleep", "1000", check=True)
    assert bb("healthcheck", "run", "hc-img").stdout == "healthy\n"
    bb("run", "-d", "--name", "hc-tuned", "--health-retries", "1", "hc-image", "sleep", "1000", check=True)
    config = json.loads(bb("inspect", "hc-tuned", check=True).stdout)[0]["Config"]["Healthcheck"]
    assert config["Test"] == ["CMD-SHELL", "test -e /etc/passwd"] and config["Retries"] == 1
    bb("run", "-d", "--name", "hc-off", "--no-healthcheck", "hc-image", "sleep", "1000", check=True)
    assert "Health" not in state(bb, "hc-off")
    assert not _status(bb, "hc-off").endswith(")")
    off = bb("healthcheck", "run", "hc-off")
    assert off.returncode == 1 and off.error_lines == ["Error: container hc-off has no defined healthcheck"]


def _unhealthy_soon(action):
    return ["--health-cmd", "false", "--health-interval", "100ms", "--health-retries", "1",
            "--health-on-failure", action, "--stop-timeout", "1"]


def test_on_failure_kill(bb):
    bb("run", "-d", "--name", "hc-kill", *_unhealthy_soon("kill"), "busybox", "sleep", "1000", check=True)
    assert eventually(lambda: state(bb, "hc-kill")["Status"] == "exited")
    final = state(bb, "hc-kill")
    assert (final["ExitCode"], final["Health"]["Status"], final["RestartCount"]) == (137, "unhealthy", 0)


def test_on_failure_kill_then_the_restart_policy(bb):
    bb("run", "-d", "--name", "hc-kr", *_unhealthy_soon("kill"), "--restart", "on-failure:1", "busybox",
       "sleep", "1000", check=True)
    assert eventually(lambda: (s := state(bb, "hc-kr"))["RestartCount"] == 1 and s["Status"] == "exited")


def test_on_failure_stop_is_not_restarted(bb):
    bb("run", "-d", "--name", "hc-stop", *_unhealthy_soon("stop"), "--restart", "always", "busybox",
       "sleep", "1000", check=True)
    assert eventually(lambda: state(bb, "hc-stop")["Status"] == "exited")
    final = state(bb, "hc-stop")
    assert (final["RestartCount"], final["Restarting"]) == (0, False)


def test_on_failure_restart_restarts_without_a_policy(bb):
    bb("run", "-d", "--name", "hc-rs", *_unhealthy_soon("restart"), "busybox", "sleep", "1000", check=True)
    assert eventually(lambda: state(bb, "hc-rs")["RestartCount"] >= 1)


@pytest.mark.parametrize("flags, message", [
    (["--health-interval", "0"], "--health-interval cannot be 0"),
    (["--health-timeout", "0s"], "--health-timeout cannot be 0"),
    (["--health-interval", "soon"], 'invalid argument "soon" for "--health-interval" flag'),
    (["--health-retries", "-1"], "--health-retries cannot be negative"),
    (["--health-on-failure", "reboot"], "Invalid value for '--health-on-failure'"),
    (["--no-healthcheck", "--health-cmd", "true"], "--no-healthcheck conflicts with --health-* options"),
])
def test_bad_health_flags_are_one_line_and_125(bb, flags, message):
    for verb in ("run", "create"):
        result = bb(verb, *flags, "busybox", "true")
        assert result.returncode == 125, result.stderr
        assert message in result.stderr, result.stderr
        assert len([line for line in result.error_lines if not line.startswith("See ")]) == 1, result.stderr
    assert bb("ps", "-aq", check=True).stdout == ""


def test_ps_filters_by_health(bb):
    bb("run", "-d", "--name", "hf-good", "--health-cmd", "true", *HOUR, "busybox", "sleep", "1000", check=True)
    bb("run", "-d", "--name", "hf-wait", "--health-cmd", "true", *HOUR, "busybox", "sleep", "1000", check=True)
    bb("run", "-d", "--name", "hf-none", "busybox", "sleep", "1000", check=True)
    bb("healthcheck", "run", "hf-good", check=True)

    def names(value):
        return bb("ps", "--filter", f"health={value}", "--format", "{{.Names}}", check=True).stdout.split()

    assert (names("healthy"), names("starting"), names("none"), names("unhealthy")) == \
        (["hf-good"], ["hf-wait"], ["hf-none"], [])
    bad = bb("ps", "--filter", "health=great")
    assert bad.returncode != 0 and bad.error_lines == ["Error: Unrecognised filter value for health: great"]


def _probers(cid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    argv = handle.read().decode(errors="replace").split("\0")
            except OSError:
                continue
            if any(a.endswith("healthloop.py") for a in argv) and cid in argv:
                found.append(int(entry))
    return found


def test_the_prober_is_the_bare_loop_and_ends_with_the_container(bb):
    bb("run", "-d", "--name", "hc-end", "--health-cmd", "true", *HOUR, "busybox", "sleep", "1000", check=True)
    cid = json.loads(bb("inspect", "hc-end", check=True).stdout)[0]["Id"]
    probers = _probers(cid)
    assert len(probers) == 1
    with open(f"/proc/{probers[0]}/cmdline", "rb") as handle:
        assert b"\0-I\0-S\0" in handle.read()  # no site, no pallet until a probe is due
    bb("stop", "-t", "0", "hc-end", check=True)
    assert eventually(lambda: not _probers(cid))


def _record_file(pallet, name):
    cid = json.loads(pallet("inspect", name, check=True).stdout)[0]["Id"]
    return json.loads((pallet.root / "containers" / cid / "container.json").read_text())


def test_the_start_interval_paces_the_probes_of_the_start_period(bb):
    # The interval is an hour: every probe the log shows ran at the start interval, in the start period.
    bb("run", "-d", "--name", "hc-si", "--health-cmd", "echo probe >> /tmp/probes; test -e /tmp/ok", *HOUR,
       "--health-start-period", "1h", "--health-start-interval", "100ms", "--health-retries", "1",
       "busybox", "sleep", "1000", check=True)
    assert eventually(lambda: len(state(bb, "hc-si")["Health"]["Log"]) == 5, timeout=120)
    health = state(bb, "hc-si")["Health"]
    # failures in the start period do not count: still starting, no streak, five failed probes recorded
    assert (health["Status"], health["FailingStreak"]) == ("starting", 0)
    assert [entry["ExitCode"] for entry in health["Log"]] == [1] * 5
    starts = [datetime.fromisoformat(entry["Start"].replace("Z", "+00:00")).timestamp() for entry in health["Log"]]
    assert all(0 < later - earlier < 600 for earlier, later in zip(starts, starts[1:])), starts  # not the hour
    ran = int(bb("exec", "hc-si", "sh", "-c", "wc -l < /tmp/probes", check=True).stdout)
    assert ran >= 5
    # a pass ends the start period: from then on the hour's interval applies, so the probes stop
    bb("exec", "hc-si", "touch", "/tmp/ok", check=True)
    assert eventually(lambda: state(bb, "hc-si")["Health"]["Status"] == "healthy", timeout=120)
    after_pass = int(bb("exec", "hc-si", "sh", "-c", "wc -l < /tmp/probes", check=True).stdout)
    time.sleep(2)   # at the start interval, some 20 more probes would run meanwhile
    assert int(bb("exec", "hc-si", "sh", "-c", "wc -l < /tmp/probes", check=True).stdout) == after_pass


def test_on_failure_restart_backs_off_as_a_restart_policy_does(bb):
    bb("run", "-d", "--name", "hc-bo", *_unhealthy_soon("restart"), "busybox", "sleep", "1000", check=True)
    assert eventually(lambda: state(bb, "hc-bo")["RestartCount"] >= 3, timeout=180)
    saved = _record_file(bb, "hc-bo")
    k = saved["restart_count"]
    # 100 ms before the first restart, doubled before each next one (the record's delay is the last one
    # waited, or the next one once the exit that will be restarted is recorded)
    assert saved["restart_delay"] in (pytest.approx(0.1 * 2 ** (k - 1)), pytest.approx(0.1 * 2 ** k)), saved
    shown = bb("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "container=hc-bo",
               "--format", "{{.Action}}", check=True).stdout.split("\n")
    assert shown.count("restart") >= 3 and "health_status: unhealthy" in shown
    bb("stop", "-t", "0", "hc-bo", check=True)
    stopped = state(bb, "hc-bo")["RestartCount"]
    time.sleep(1.5)
    final = state(bb, "hc-bo")
    assert (final["Status"], final["RestartCount"], final["Restarting"]) == ("exited", stopped, False)
