"""``pallet system check [--repair]``: each kind of damage is found, and --repair leaves a clean root."""

from __future__ import annotations

import hashlib
import json
import os


def _blob_dir(bb):
    return bb.root / "images" / "blobs" / "sha256"


def _layer_blob(bb) -> str:
    """The digest of busybox's (only) layer blob."""
    record = json.loads(next((bb.root / "images" / "records" / "layers").iterdir()).read_text())
    return record["blob"]


def _clean(bb) -> None:
    result = bb("system", "check")
    assert (result.returncode, result.stdout) == (0, "no problems found\n"), result.stdout + result.stderr


def _repaired(bb) -> str:
    result = bb("system", "check", "--repair")
    assert result.returncode == 0, result.stdout + result.stderr
    _clean(bb)
    return result.stdout


def test_a_fresh_root_is_clean(bb):
    _clean(bb)


def test_corrupt_layer_blob_is_found_and_repair_removes_it_and_its_image(bb):
    digest = _layer_blob(bb)
    path = _blob_dir(bb) / digest.split(":")[1]
    os.chmod(path, 0o644)
    with open(path, "ab") as handle:
        handle.write(b"x")
    result = bb("system", "check")
    assert result.returncode == 1
    assert f"blob\t{digest}\tcontent does not match its digest" in result.stdout
    assert f"layer blob {digest} is corrupt" in result.stdout
    assert result.error_lines[-1].startswith("Error: ") and "problem(s) found" in result.stderr
    out = _repaired(bb)
    assert f"removed blob {digest}" in out and "removed image sha256:" in out
    assert bb("images", "-q", check=True).stdout == ""


def test_orphan_blob_and_dangling_tag_are_found_and_repaired_and_a_stale_lease_swept(bb):
    data = b"nobody needs me"
    digest = hashlib.sha256(data).hexdigest()
    (_blob_dir(bb) / digest).write_bytes(data)
    tags_path = bb.root / "images" / "tags.json"
    tags = json.loads(tags_path.read_text())
    tags["docker.io/library/ghost:latest"] = "sha256:" + "0" * 64
    tags_path.write_text(json.dumps(tags))
    leases = bb.root / "images" / "leases"
    leases.mkdir(exist_ok=True)
    (leases / ("e" * 64)).write_text(json.dumps({"pid": 2 ** 22 + 1, "image": "x", "layers": []}))
    result = bb("system", "check")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f"blob\tsha256:{digest}\tno image or layer needs this blob (orphan) (15B)" in lines
    assert "tag\tdocker.io/library/ghost:latest\tnames image sha256:" + "0" * 64 + ", which does not exist" in lines
    # The lease of a dead process is swept by the next command that takes the store lock (this one).
    assert not (leases / ("e" * 64)).exists() and not any(line.startswith("lease") for line in lines)
    _repaired(bb)
    assert bb("run", "--rm", "busybox", "true").returncode == 0   # the real image survived the repair


def test_missing_layer_record_and_driver_layer_are_found(bb):
    layer_record = next((bb.root / "images" / "records" / "layers").iterdir())
    chain_id = "sha256:" + layer_record.name
    saved = layer_record.read_text()
    layer_record.unlink()
    result = bb("system", "check")
    assert result.returncode == 1
    assert f"layer record {chain_id} is missing" in result.stdout
    assert f"layer\t{chain_id}\tdriver layer with no record (orphan)" in result.stdout
    layer_record.write_text(saved)
    _clean(bb)


def test_crash_debris_is_found_with_its_size_and_a_live_writers_temp_file_is_left_alone(bb):
    tmp = bb.root / "images" / "tmp"
    tmp.mkdir(exist_ok=True)
    # A live writer's temp file (this test's pid) is its work in progress: neither reported nor
    # removed. A dead one's is swept by the next command that takes the store lock, this check included.
    live = f"blob-{os.getpid()}-abc"
    (tmp / live).write_bytes(b"y" * 1000)
    (tmp / "blob-4194305-abc").write_bytes(b"y" * 1000)
    half = bb.root / "overlay2" / ".tmp-deadbeef-4194305-0011"
    (half / "diff").mkdir(parents=True)
    (half / "diff" / "f").write_bytes(b"z" * 2000)
    busy = bb.root / "overlay2" / f".tmp-cafe-{os.getpid()}-0011"
    busy.mkdir()
    result = bb("system", "check")
    assert result.returncode == 1
    assert live not in result.stdout and busy.name not in result.stdout
    assert "blob-4194305-abc" not in result.stdout and not (tmp / "blob-4194305-abc").exists()
    assert f"debris\t{half}\thalf-made or half-removed layer (2kB)" in result.stdout
    _repaired(bb)
    assert not half.exists() and list(tmp.iterdir()) == [tmp / live] and busy.is_dir()
    (tmp / live).unlink()
    busy.rmdir()


def test_repair_leaves_a_paused_commits_staged_blob_and_the_commit_completes(bb, hold):
    bb("run", "--name", "src", "busybox", "sh", "-c", "head -c 200000 /dev/urandom > /data; md5sum /data > /sum",
       check=True)
    commit = hold(bb, "commit.layer-staged", "commit", "src", "staged:1")
    commit.wait_paused()                 # its layer blob is staged in images/tmp, outside the store lock
    staged = [p for p in (bb.root / "images" / "tmp").iterdir() if p.name.startswith("blob-")]
    assert len(staged) == 1
    repaired = bb("system", "check", "--repair")
    assert (repaired.returncode, repaired.stdout) == (0, "no problems found\n"), repaired.stdout + repaired.stderr
    assert staged[0].exists()
    code, _out, err = commit.release()
    assert code == 0, err
    ran = bb("run", "--rm", "staged:1", "md5sum", "-c", "/sum")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    _clean(bb)
    bb("rmi", "staged:1", check=True)
