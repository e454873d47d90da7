"""The parallel pull pipeline (overlay2 fills the layers of a chain at once) against a real docker-registry.

A ``kill -9`` while several layers are being filled leaves nothing half-visible: the image is
not listed, every layer record names a complete driver layer (recorded in chain order), and the
next pull completes (redoing what the killed pull's journal rolls back) into a consistent store.
"""

from __future__ import annotations

import json
import os
import random

from pallet.kernel.config import Config
from pallet.kernel.engine import Engine
from pallet.kernel.images import ImageStore
from tests.conftest import Pallet
from tests.registry.conftest import layer_tar, pull_killed_at, push_with_skopeo, umoci_image

LAYERS = 5


def _overlay2(tmp_path) -> Pallet:
    return Pallet(tmp_path / "root", tmp_path / "run", env={
        "PALLET_STORAGE_DRIVER": "overlay2", "PALLET_AUTH_FILE": str(tmp_path / "auth.json"),
        "DOCKER_CONFIG": str(tmp_path / "docker-config")})


def _store(p: Pallet, tmp_path) -> ImageStore:
    return ImageStore(Engine(Config.load(str(p.root), str(p.run_root), str(tmp_path / "pallet.toml"), "overlay2")))


def _image(tmp_path, registry, name: str) -> str:
    rng = random.Random(11)
    # A small first layer, then large incompressible ones: the kill lands after layer 0 is recorded,
    # while later layers are still being filled.
    layers = [layer_tar({f"part{i}/data": rng.randbytes(200_000 if i == 0 else 12_000_000),
                         f"part{i}/small.txt": f"layer {i}\n".encode()}) for i in range(LAYERS)]
    push_with_skopeo(umoci_image(tmp_path, layers), registry, name)
    return f"{registry.host}/{name}"


def _assert_consistent(store: ImageStore) -> None:
    """Every layer record names a driver layer whose parent is recorded too (or it has none)."""
    for path in _records(store):
        record = store.layer("sha256:" + path.name)
        assert store.driver.exists(path.name), f"layer record {path.name} without its driver layer"
        if record.parent:
            assert store.layer_path(record.parent).exists(), f"layer {path.name} recorded before its parent"


def _records(store: ImageStore) -> list:
    """Layer records (a kill during a record's atomic write may leave its hidden temp file beside them)."""
    return [path for path in store.layers_dir.iterdir() if len(path.name) == 64] if store.layers_dir.is_dir() else []


def test_parallel_pull_unpacks_every_layer(registry, tmp_path):
    p = _overlay2(tmp_path)
    name = _image(tmp_path, registry, "par/full:t")
    out = p("pull", name, check=True).stdout
    assert out.count("Pull complete") == LAYERS
    store = _store(p, tmp_path)
    record = store.resolve(name)
    _assert_consistent(store)
    top = store.ensure_layers(record)
    rootfs = store.driver.get(top)
    try:
        assert sorted(os.listdir(rootfs)) == [f"part{i}" for i in range(LAYERS)]
        assert all((rootfs / f"part{i}" / "small.txt").read_text() == f"layer {i}\n" for i in range(LAYERS))
        assert (rootfs / "part3" / "data").stat().st_size == 12_000_000
    finally:
        store.driver.put(top)
    # Already present: nothing is downloaded or unpacked again.
    again = p("pull", name, check=True).stdout
    assert "Pull complete" not in again and "Image is up to date" in again
    p("rmi", name, check=True)
    assert store.driver.layers() == []


def test_kill_9_during_parallel_pull_then_pull_completes(registry, tmp_path):
    p = _overlay2(tmp_path)
    name = _image(tmp_path, registry, "par/kill:t")
    seen = pull_killed_at(p, name)
    assert any("Pull complete" in line for line in seen), seen
    # Several layers were being filled at once when the kill came.
    assert sum("Extracting" in line for line in seen) >= 2, seen
    assert p("images", "-q", check=True).stdout.split() == []
    assert p("image", "inspect", name).returncode == 1
    store = _store(p, tmp_path)
    _assert_consistent(store)
    recorded = {path.name for path in _records(store)}
    assert recorded and len(recorded) < LAYERS

    out = p("pull", name, check=True).stdout
    # The next pull either resumes (keeps the recorded layers) or, when it rolls back the killed
    # pull's transaction journal on taking the store lock, redoes them all; never anything between.
    assert out.count("Pull complete") in (LAYERS - len(recorded), LAYERS), out
    record = store.resolve(name)
    _assert_consistent(store)
    first_blob = store.layer(record.layers[0]).blob
    assert len(registry.requests(f"GET /v2/par/kill/blobs/{first_blob}")) <= 2
    doc = json.loads(p("image", "inspect", name, check=True).stdout)[0]
    assert len(doc["RootFS"]["Layers"]) == LAYERS
    top = store.ensure_layers(record)
    rootfs = store.driver.get(top)
    try:
        assert sorted(os.listdir(rootfs)) == [f"part{i}" for i in range(LAYERS)]
        assert all((rootfs / f"part{i}" / "data").stat().st_size == (200_000 if i == 0 else 12_000_000)
                   for i in range(LAYERS))
    finally:
        store.driver.put(top)
    p("rmi", name, check=True)
    p("image", "prune", "-f", check=True)
    assert store.driver.layers() == []
    assert not _records(store)
    assert not [n for n in os.listdir(store.blobs.tmp) if n.startswith("blob-")]
