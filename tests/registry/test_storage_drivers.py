"""Pulled layers reach every storage driver the same way: whiteouts, symlinks, content, on vfs and overlay2."""

from __future__ import annotations

import os

import pytest

from kernel.config import Config
from kernel.engine import Engine
from kernel.images import ImageStore
from tests.conftest import Pallet
from tests.registry.conftest import layer_tar, push_with_skopeo, umoci_image


@pytest.mark.parametrize("driver", ["vfs", "overlay2"])
def test_pulled_image_mounts_with_whiteouts(registry, tmp_path, driver):
    source = umoci_image(tmp_path, [
        layer_tar({"app/keep.txt": b"keep\n", "app/gone.txt": b"gone\n", "old/x": b"x\n"}),
        layer_tar({"app/.wh.gone.txt": b"", "app/new.txt": b"new\n", "old/.wh..wh..opq": b"", "old/y": b"y\n"},
                  {"app/link": "keep.txt"}),
    ])
    push_with_skopeo(source, registry, f"wh/{driver}:t")
    p = Pallet(tmp_path / "root", tmp_path / "run", env={"PALLET_STORAGE_DRIVER": driver})
    name = f"{registry.host}/wh/{driver}:t"
    p("pull", "-q", name, check=True)
    engine = Engine(Config.load(str(p.root), str(p.run_root), str(tmp_path / "pallet.toml"), driver))
    store = ImageStore(engine)
    record = store.resolve(name)
    top = store.ensure_layers(record)
    assert top == record.layers[-1].split(":")[1]
    rootfs = engine.storage.get(top)
    try:
        assert sorted(os.listdir(rootfs / "app")) == ["keep.txt", "link", "new.txt"]
        assert (rootfs / "app" / "link").read_text() == "keep\n"
        assert sorted(os.listdir(rootfs / "old")) == ["y"]
    finally:
        engine.storage.put(top)
    p("rmi", name, check=True)
    assert engine.storage.layers() == []
