"""Crash debris (defect 7): ``system df`` shows what killed commands left, ``system prune`` and
``image prune`` remove it and count its bytes; a running command's temp files are never touched."""

from __future__ import annotations

import json

from pallet.kernel.humanize import parse_bytes


def _df(bb) -> dict[str, dict]:
    lines = bb("system", "df", "--format", "{{json .}}", check=True).stdout.splitlines()
    return {row["Type"]: row for row in map(json.loads, lines)}


def _bytes(text: str) -> int:
    """``2.14MB (100%)`` -> bytes (decimal units, as df and prune print them)."""
    amount = text.split()[0]
    for unit, scale in (("kB", 10 ** 3), ("MB", 10 ** 6), ("GB", 10 ** 9), ("B", 1)):
        if amount.endswith(unit):
            return int(float(amount[: -len(unit)]) * scale)
    return parse_bytes(amount)


def _reclaimed(result) -> int:
    line = [line for line in result.stdout.splitlines() if line.startswith("Total reclaimed space: ")][-1]
    return _bytes(line.removeprefix("Total reclaimed space: "))


def _killed_load(bb, tmp_path, point: str) -> None:
    archive = tmp_path / "bb.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    bb("rmi", "busybox", check=True)
    killed = bb("load", "-i", str(archive), env={"PALLET_FAULT": f"{point}:kill"})
    assert killed.returncode == -9, killed.stderr


def test_a_fresh_root_has_an_empty_debris_row(bb):
    row = _df(bb)["Debris"]
    assert (row["TotalCount"], row["Active"], row["Size"], row["Reclaimable"]) == (0, 0, "0B", "0B")
    assert bb("system", "df", check=True).stdout.splitlines()[-1].split() == ["Debris", "0", "0", "0B", "0B"]


def test_df_shows_a_killed_loads_layer_and_blobs_and_system_prune_reclaims_them(bb, tmp_path):
    _killed_load(bb, tmp_path, "layer.before-record")
    row = _df(bb)["Debris"]
    # The unpacked layer (~2 MB of busybox) and its blobs, none of them in progress.
    assert row["TotalCount"] >= 3 and row["Active"] == 0, row
    assert row["Reclaimable"].endswith("(100%)") and _bytes(row["Size"]) > 3_000_000, row
    verbose = bb("system", "df", "-v", check=True).stdout
    table = verbose[verbose.index("Debris space usage:"):]
    assert "layer added by an interrupted transaction" in table
    assert "journal of an interrupted transaction" in table
    pruned = bb("system", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert "(layer added by an interrupted transaction)" in pruned.stdout
    # The reclaimed bytes are the debris df showed (to df's 3 significant digits).
    assert abs(_reclaimed(pruned) - _bytes(row["Size"])) <= _bytes(row["Size"]) // 100, pruned.stdout
    assert _df(bb)["Debris"]["TotalCount"] == 0
    assert bb("system", "check").returncode == 0
    bb("load", "-i", str(tmp_path / "bb.tar"), check=True)
    assert bb("run", "--rm", "busybox", "true").returncode == 0


def test_a_killed_writes_temp_blob_is_debris_and_image_prune_counts_it(bb, tmp_path):
    _killed_load(bb, tmp_path, "blob.before-rename")
    temps = list((bb.root / "images" / "tmp").iterdir())
    assert len(temps) == 1 and temps[0].name.startswith("blob-")
    temps_size = temps[0].stat().st_size
    row = _df(bb)["Debris"]
    assert row["TotalCount"] >= 1 and row["Active"] == 0 and row["Reclaimable"] != "0B", row
    pruned = bb("image", "prune", "-f")
    assert pruned.returncode == 0, pruned.stderr
    assert f"deleted: {temps[0]} (temporary file of an interrupted write)" in pruned.stdout
    assert _reclaimed(pruned) >= temps_size
    assert not temps[0].exists() and _df(bb)["Debris"]["TotalCount"] == 0


def test_a_running_commits_staged_blob_is_active_and_prune_leaves_it(bb, hold):
    bb("run", "--name", "src", "busybox", "sh", "-c", "head -c 300000 /dev/urandom > /data", check=True)
    held = hold(bb, "commit.layer-staged", "commit", "src", "committed:1")
    held.wait_paused()
    row = _df(bb)["Debris"]
    assert row["Active"] >= 1 and row["Reclaimable"].startswith("0B") and _bytes(row["Size"]) >= 300_000, row
    pruned = bb("system", "prune", "-f")
    assert pruned.returncode == 0 and "temporary file" not in pruned.stdout, pruned.stdout
    code, _out, err = held.release()
    assert code == 0, err
    assert bb("run", "--rm", "committed:1", "sh", "-c", "test $(wc -c < /data) = 300000").returncode == 0
    assert _df(bb)["Debris"]["TotalCount"] == 0
    bb("rmi", "committed:1", check=True)


def test_a_killed_save_leaves_a_temp_file_beside_the_target_that_the_next_save_removes(bb, tmp_path):
    target = tmp_path / "out" / "bb.tar"
    target.parent.mkdir()
    killed = bb("save", "-o", str(target), "busybox", env={"PALLET_FAULT": "save.before-rename:kill"})
    assert killed.returncode == -9, killed.stderr
    leftovers = [p.name for p in target.parent.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".bb.tar.") and leftovers[0].endswith(".tmp")
    bb("save", "-o", str(target), "busybox", check=True)
    assert [p.name for p in target.parent.iterdir()] == ["bb.tar"]
