"""Events the audit found untested: oom, pull, push, delete, build, network connect/disconnect, volume
mount/unmount, Docker's ``image=`` filter, and the journal's bound (the oldest events go first)."""

from __future__ import annotations

import json
import time

from pallet.kernel import events
from tests.services.conftest import state


def _events(pallet, *args):
    result = pallet("events", "--since", "0", "--until", str(int(time.time()) + 1), "--format", "json", *args,
                    check=True)
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_container_over_its_memory_limit_gives_oom_then_die(bb):
    result = bb("run", "--name", "ev-oom", "-m", "32m", "--memory-swap", "32m", "busybox",
                "dd", "if=/dev/zero", "of=/dev/null", "bs=100M", "count=1")
    assert result.returncode == 137, result.stderr
    assert state(bb, "ev-oom")["OOMKilled"] is True
    got = [(e["Action"], e["Actor"]["Attributes"].get("exitCode")) for e in _events(bb, "--filter", "container=ev-oom")]
    assert got[-2:] == [("oom", None), ("die", "137")], got
    # a container that stays within its limit has no oom event
    bb("run", "--name", "ev-fine", "-m", "32m", "busybox", "true", check=True)
    assert "oom" not in [e["Action"] for e in _events(bb, "--filter", "container=ev-fine")]


def test_push_pull_delete_and_build_are_image_events(bb, tmp_path):
    layout = tmp_path / "layout"
    bb("push", "busybox", f"oci:{layout}:bb", check=True)
    bb("pull", f"oci:{layout}:bb", check=True)
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    built = bb("build", "-q", "-t", "ev-built:1", str(context), check=True).stdout.strip()
    bb("rmi", "ev-built:1", check=True)
    got = [(e["Action"], e["Actor"]["ID"], e["Actor"]["Attributes"]) for e in _events(bb, "--filter", "type=image")]
    actions = [action for action, _id, _attrs in got]
    for expected in ("push", "pull", "build", "untag", "delete"):
        assert expected in actions, got
    assert actions.index("push") < actions.index("pull") < actions.index("build") < actions.index("delete")
    push = next(attrs for action, _id, attrs in got if action == "push")
    assert push["name"] == f"oci:{layout}:bb"
    pull = next(attrs for action, _id, attrs in got if action == "pull")
    assert pull["id"] == json.loads(bb("image", "inspect", "busybox", check=True).stdout)[0]["Id"]
    build = next((ident, attrs) for action, ident, attrs in got if action == "build")
    assert build[0].removeprefix("sha256:").startswith(built.removeprefix("sha256:")[:12])
    assert build[1]["name"] == "ev-built:1"
    delete = next((ident, attrs) for action, ident, attrs in got if action == "delete")
    assert delete[0] == build[0]
    shown = bb("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "event=delete",
               "--format", "{{.Type}} {{.Action}}", check=True).stdout.splitlines()
    assert shown == ["image delete"]


def test_network_connect_and_disconnect_and_volume_mount_and_unmount(bb):
    # a container on "none" has no sandbox to connect: it starts on one internal network, joins another
    bb("network", "create", "--internal", "ev-base", check=True)
    bb("network", "create", "--internal", "ev-net", check=True)
    bb("volume", "create", "ev-data", check=True)
    bb("run", "-d", "--name", "ev-c", "--network", "ev-base", "-v", "ev-data:/data", "busybox", "sleep", "1000",
       check=True)
    cid = json.loads(bb("inspect", "ev-c", check=True).stdout)[0]["Id"]
    bb("network", "connect", "ev-net", "ev-c", check=True)
    bb("network", "disconnect", "ev-net", "ev-c", check=True)
    bb("stop", "-t", "0", "ev-c", check=True)
    network = [(e["Action"], e["Actor"]["Attributes"].get("container")) for e in _events(bb, "--filter", "network=ev-net")]
    assert network == [("create", None), ("connect", cid), ("disconnect", cid)], network
    volume = [(e["Action"], e["Actor"]["Attributes"].get("container")) for e in _events(bb, "--filter", "volume=ev-data")]
    assert volume == [("create", None), ("mount", cid), ("unmount", cid)], volume
    # container=ID also finds the network and volume events that name the container
    actions = [(e["Type"], e["Action"]) for e in _events(bb, "--filter", f"container={cid}")]
    assert ("network", "connect") in actions and ("volume", "mount") in actions
    bb("rm", "ev-c", check=True)
    bb("network", "rm", "ev-net", "ev-base", check=True)
    bb("volume", "rm", "ev-data", check=True)


def test_the_image_filter_matches_names_with_and_without_the_tag(bb):
    bb("image", "tag", "busybox", "ev-img:1", check=True)
    bb("run", "--name", "ev-tagged", "ev-img:1", "true", check=True)
    bb("run", "--name", "ev-plain", "busybox", "true", check=True)

    def seen(value):
        return {(e["Type"], e["Action"], e["Actor"]["Attributes"].get("name")) for e in _events(bb, "--filter", f"image={value}")}

    tagged = seen("ev-img:1")
    assert ("image", "tag", "ev-img:1") in tagged
    assert {("container", a, "ev-tagged") for a in ("create", "start", "die")} <= tagged
    assert not any(name == "ev-plain" for _t, _a, name in tagged)
    assert seen("ev-img") == tagged                                    # the tag stripped, as Docker's stripTag
    assert seen("ev-img:2") == set()
    plain = seen("busybox")
    assert ("container", "start", "ev-plain") in plain and not any(name == "ev-tagged" for _t, _a, name in plain)
    image_id = json.loads(bb("image", "inspect", "ev-img:1", check=True).stdout)[0]["Id"]
    bb("rmi", "ev-img:1", check=True)
    by_id = seen(image_id.removeprefix("sha256:")[:12])
    assert ("image", "tag", "ev-img:1") in by_id or ("image", "untag", "ev-img:1") in by_id


def test_the_journal_is_bounded_and_drops_the_oldest_events(monkeypatch, pallet):
    bound = 16 * 1024   # the real bound is 8 MiB; the rotation is the same code
    monkeypatch.setattr(events, "MAX_BYTES", bound)
    root = pallet.root
    written = [events.emit(root, "volume", "create", f"vol-{n:05d}", {"driver": "local"}) for n in range(600)]
    line = len(json.dumps(written[-1], separators=(",", ":"))) + 1
    files = sorted((root / "events").glob("journal*.jsonl"))
    assert [p.name for p in files] == ["journal.1.jsonl", "journal.jsonl"]
    assert sum(p.stat().st_size for p in files) <= 2 * bound + line
    kept = [e["Actor"]["ID"] for e in events.read(root)]
    # a contiguous tail: the newest event is last, the oldest are gone, nothing in between is lost
    assert kept[-1] == "vol-00599" and "vol-00000" not in kept
    first = int(kept[0].split("-")[1])
    assert kept == [f"vol-{n:05d}" for n in range(first, 600)]
    assert len(kept) >= bound // (2 * line)
    # the CLI reads the same bounded journal
    shown = pallet("events", "--since", "0", "--until", str(int(time.time()) + 1), "--format", "{{.Actor.ID}}",
                   check=True).stdout.split()
    assert shown == kept
