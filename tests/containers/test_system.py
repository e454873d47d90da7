"""``system df``/``system prune``, ``inspect`` falling back to images, and the same bundle under runc."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.containers.conftest import container_ids, record


def test_system_df_counts_images_containers_and_volumes(bb):
    bb("run", "-d", "--name", "live", "busybox", "sleep", "100", check=True)
    bb("run", "--name", "dead", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /blob", check=True)
    rows = {row["Type"]: row for row in map(json.loads, bb("system", "df", "--format", "{{json .}}").stdout.split("\n")[:-1])}
    assert rows["Images"]["TotalCount"] == 1 and rows["Images"]["Active"] == 1
    assert rows["Containers"]["TotalCount"] == 2 and rows["Containers"]["Active"] == 1
    assert rows["Containers"]["Reclaimable"].startswith("10") and rows["Containers"]["Reclaimable"].endswith("kB (100%)")
    table = bb("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


def test_system_prune_removes_stopped_containers_and_keeps_running_ones(bb):
    bb("run", "-d", "--name", "live", "busybox", "sleep", "100", check=True)
    bb("run", "--name", "dead", "busybox", "true", check=True)
    result = bb("system", "prune", "-f")
    assert result.returncode == 0, result.stderr
    assert "Deleted Containers:" in result.stdout
    assert bb("ps", "-a", "--format", "{{.Names}}").stdout == "live\n"
    assert len(container_ids(bb.root)) == 1
    assert bb("image", "inspect", "busybox").returncode == 0  # in use by "live": kept


def test_inspect_falls_back_to_images_and_reports_unknown_objects(bb):
    bb("create", "--name", "c1", "busybox", "true", check=True)
    both = json.loads(bb("inspect", "c1", "busybox").stdout)
    assert both[0]["Name"] == "/c1" and both[1]["Id"].startswith("sha256:")
    missing = bb("inspect", "nothing-here")
    assert missing.returncode == 1 and "No such object: nothing-here" in missing.stderr


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_the_same_bundle_runs_under_runc(bb):
    script = "echo $$ $(hostname) $(grep -E '^(CapEff|Seccomp):' /proc/self/status | cut -f2 | tr '\\n' ' ')"
    ours = bb("run", "--name", "mine", "busybox", "sh", "-c", script)
    theirs = bb("run", "--name", "theirs", "--runtime", "runc", "busybox", "sh", "-c", script)
    assert ours.returncode == theirs.returncode == 0, theirs.stderr
    for result, name in ((ours, "mine"), (theirs, "theirs")):
        assert result.stdout.split() == ["1", record(bb, name)["Id"][:12], "00000000a80425fb", "2"]
    bb("run", "-d", "--name", "rd", "--runtime", "runc", "busybox", "sleep", "100", check=True)
    assert bb("exec", "rd", "echo", "via-runc").stdout == "via-runc\n"
    assert bb("rm", "-f", "rd").returncode == 0


def test_system_prune_filter_label_removes_only_what_carries_the_label(bb):
    bb("create", "--name", "tagged", "--label", "env=ci", "busybox", "true", check=True)
    bb("create", "--name", "other", "--label", "env=prod", "busybox", "true", check=True)
    bb("network", "create", "--label", "env=ci", "ci-net", check=True)
    bb("network", "create", "plain-net", check=True)
    bb("volume", "create", "--label", "env=ci", check=True)   # anonymous: --volumes prunes those
    bb("volume", "create", check=True)
    result = bb("system", "prune", "-f", "--volumes", "--filter", "label=env=ci")
    assert result.returncode == 0, result.stderr
    assert bb("ps", "-a", "--format", "{{.Names}}").stdout == "other\n"
    assert bb("network", "ls", "-q", "--filter", "name=ci-net").stdout == ""
    assert bb("network", "ls", "-q", "--filter", "name=plain-net").stdout != ""
    assert [json.loads(line)["Labels"] for line in bb("volume", "ls", "--format", "json").stdout.splitlines()] == [""]
    assert bb("image", "inspect", "busybox").returncode == 0
    bad = bb("system", "prune", "-f", "--filter", "color=red")
    assert (bad.returncode, bad.error_lines) == (2, ["Error: invalid filter 'color'"])
    volumes = bb("system", "prune", "-f", "--volumes", "--filter", "until=1h")
    assert volumes.error_lines == ["Error: invalid filter 'until' for volumes: prune volumes without it"]


def test_system_prune_filter_until_keeps_what_is_newer(bb):
    bb("create", "--name", "fresh", "busybox", "true", check=True)
    kept = bb("system", "prune", "-f", "--filter", "until=1h")
    assert kept.returncode == 0, kept.stderr
    assert bb("ps", "-a", "--format", "{{.Names}}").stdout == "fresh\n"   # created within the hour
    gone = bb("system", "prune", "-f", "--filter", f"until={time.time() + 5:.0f}")
    assert gone.returncode == 0 and bb("ps", "-aq").stdout == ""
