"""``pallet events``: the on-disk journal every command and monitor writes (kernel/events.py)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time

from tests.conftest import REPO


def _events(bb, *args):
    result = bb("events", "--since", "1h", "--until", "0s", "--format", "json", *args, check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_container_lifecycle_events_in_order_after_the_commands_exited(bb):
    bb("run", "--name", "ev-a", "--label", "tier=web", "busybox", "sh", "-c", "exit 3")
    bb("rm", "ev-a", check=True)
    got = _events(bb, "--filter", "container=ev-a")
    assert [e["Action"] for e in got] == ["create", "start", "die", "destroy"]
    die = got[2]
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["name"] == "ev-a"
    assert die["Actor"]["Attributes"]["tier"] == "web"
    assert die["Type"] == "container" and die["from"] == "busybox"
    assert [e["timeNano"] for e in got] == sorted(e["timeNano"] for e in got)


def test_filters_combine_and_text_format_is_dockers(bb):
    bb("run", "-d", "--name", "ev-b", "--label", "tier=db", "busybox", "sleep", "60", check=True)
    bb("exec", "ev-b", "true", check=True)
    bb("stop", "-t", "1", "ev-b", check=True)
    bb("volume", "create", "ev-vol", check=True)
    bb("volume", "rm", "ev-vol", check=True)
    actions = [e["Action"] for e in _events(bb, "--filter", "container=ev-b")]
    assert actions[:2] == ["create", "start"]
    assert "exec_create: true" in actions and "exec_start: true" in actions and "exec_die" in actions
    assert actions[-3:] == ["kill", "die", "stop"]
    assert [e["Action"] for e in _events(bb, "--filter", "event=die", "--filter", "label=tier=db")] == ["die"]
    assert [e["Action"] for e in _events(bb, "--filter", "event=die", "--filter", "label=tier=nope")] == []
    assert [e["Action"] for e in _events(bb, "--filter", "volume=ev-vol")] == ["create", "destroy"]
    assert all(e["Type"] == "volume" for e in _events(bb, "--filter", "type=volume"))
    text = bb("events", "--since", "1h", "--until", "0s", "--filter", "event=die", check=True).stdout.splitlines()
    assert len(text) == 1
    stamp, kind, action, ident, rest = text[0].split(" ", 4)
    assert kind == "container" and action == "die" and len(ident) == 64
    assert "exitCode=" in rest and "name=ev-b" in rest and "tier=db" in rest
    assert stamp[19] == "." and len(stamp.split(".")[1]) == 9 + 6  # nanoseconds and +HH:MM


def test_since_until_window(bb):
    bb("volume", "create", "ev-early", check=True)
    middle = time.time()
    while time.time() == middle:
        pass
    bb("volume", "create", "ev-late", check=True)
    names = [e["Actor"]["ID"] for e in _events(bb)]
    assert names[-2:] == ["ev-early", "ev-late"]
    after = bb("events", "--since", repr(middle), "--until", "0s", "--format", "{{.Actor.ID}}", check=True)
    assert after.stdout.split() == ["ev-late"]
    before = bb("events", "--since", "1h", "--until", repr(middle), "--format", "{{.Actor.ID}}", check=True)
    assert "ev-late" not in before.stdout.split() and "ev-early" in before.stdout.split()
    for name in ("ev-early", "ev-late"):
        bb("volume", "rm", name, check=True)


def test_follow_streams_new_events(bb):
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root),
           "events", "--filter", "type=volume", "--format", "json"]
    follower = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=bb.env, cwd=str(REPO))
    try:
        ready = time.monotonic() + 60  # the follower needs to be reading before the event is made
        bb("volume", "create", "ev-follow", check=True)
        lines = []
        while len(lines) < 1 and time.monotonic() < ready:
            if select.select([follower.stdout], [], [], 1)[0]:
                lines.append(json.loads(follower.stdout.readline()))
            else:
                bb("volume", "rm", "ev-follow", check=True)
                bb("volume", "create", "ev-follow", check=True)
        assert lines and lines[0]["Actor"]["ID"] == "ev-follow" and lines[0]["Type"] == "volume"
    finally:
        follower.terminate()
        follower.wait(timeout=30)
        bb("volume", "rm", "-f", "ev-follow")


def test_bad_input_is_one_line(bb):
    for args, message in ((["--filter", "colour=red"], 'invalid filter "colour"'),
                          (["--filter", "event"], "bad format of filter"),
                          (["--since", "yesterday"], 'invalid time "yesterday"')):
        result = bb("events", "--until", "0s", *args)
        assert result.returncode == 2, result.stderr
        assert len(result.error_lines) == 1 and message in result.stderr


def test_image_and_network_events(bb):
    bb("image", "tag", "busybox", "ev-copy:1", check=True)
    bb("image", "rm", "ev-copy:1", check=True)
    bb("network", "create", "--internal", "ev-net", check=True)
    bb("network", "rm", "ev-net", check=True)
    images = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in _events(bb, "--filter", "type=image")]
    assert [a for a in images if a[1] == "ev-copy:1"] == [("tag", "ev-copy:1"), ("untag", "ev-copy:1")]
    networks = [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in _events(bb, "--filter", "network=ev-net")]
    assert networks == [("create", "ev-net"), ("destroy", "ev-net")]
