"""Pulled layers reach every storage driver the same way: whiteouts, symlinks, content, on vfs and overlay2."""

from __future__ import annotations

import os

import pytest

from pallet.kernel.config import Config
from pallet.kernel.engine import Engine
from pallet.kernel.images import ImageStore
from tests.conftest import Pallet
from tests.registry.conftest import layer_tar, push_with_skopeo, umoci_image  # noqa: F401


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


def _special_layer() -> bytes:
    import io
    import tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data")
        info.type, info.mode = tarfile.DIRTYPE, 0o750
        info.uid, info.gid = 1000, 1001
        tar.addfile(info)
        info = tarfile.TarInfo("data/owned")
        data = b"owned\n"
        info.size, info.mode, info.uid, info.gid = len(data), 0o4755, 1000, 1001
        info.pax_headers = {"SCHILY.xattr.user.pallet": "yes"}
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("data/hard")
        link.type, link.linkname = tarfile.LNKTYPE, "data/owned"
        tar.addfile(link)
    return buffer.getvalue()


def test_ownership_modes_hardlinks_and_xattrs_survive(registry, rpallet, tmp_path):
    source = umoci_image(tmp_path, [_special_layer()])
    push_with_skopeo(source, registry, "special/img:t")
    name = f"{registry.host}/special/img:t"
    rpallet("pull", name, check=True)
    import json
    rootfs = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]["GraphDriver"]["Data"]["Dir"]
    owned = os.stat(f"{rootfs}/data/owned")
    assert (owned.st_uid, owned.st_gid, owned.st_mode & 0o7777) == (1000, 1001, 0o4755)
    assert os.stat(f"{rootfs}/data").st_mode & 0o7777 == 0o750
    assert os.stat(f"{rootfs}/data/hard").st_ino == owned.st_ino
    try:
        assert os.getxattr(f"{rootfs}/data/owned", "user.pallet") == b"yes"
    except OSError as exc:  # a filesystem without user xattrs: the content must still be there
        assert exc.errno in (95,), exc
