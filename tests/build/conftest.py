"""Helpers for the builder's tests: a context directory from a dict, a build, the image's config and
flattened filesystem, and a check that a build left nothing behind."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest


def write_context(root: Path, files: dict) -> Path:
    """``{"a.txt": "text", "bin/x": ("data", 0o755), "link": ("->", "target"), "d/": None}``."""
    root.mkdir(parents=True, exist_ok=True)
    for name, value in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("/"):
            path.mkdir(exist_ok=True)
        elif isinstance(value, tuple) and value[0] == "->":
            os.symlink(value[1], path)
        elif isinstance(value, tuple):
            path.write_bytes(value[0].encode() if isinstance(value[0], str) else value[0])
            os.chmod(path, value[1])
        else:
            path.write_bytes(value.encode() if isinstance(value, str) else value)
    return root


class Builder:
    def __init__(self, pallet, tmp: Path):
        self.pallet, self.tmp = pallet, tmp
        self.count = 0

    def __call__(self, dockerfile: str, files: dict | None = None, *args, check: bool = True, input=None):
        self.count += 1
        context = write_context(self.tmp / f"ctx{self.count}", {"Dockerfile": dockerfile, **(files or {})})
        result = self.pallet("build", "--progress", "plain", *args, str(context), input=input)
        if check:
            assert result.returncode == 0, result.stderr
            result.image_id = result.stdout.strip().splitlines()[-1]
        return result

    def config(self, ref: str) -> dict:
        """The image config document (architecture, config, history, rootfs …)."""
        out = self.pallet("image", "inspect", ref, check=True).stdout
        inspected = json.loads(out)[0]
        return inspected

    def document(self, image_id: str) -> dict:
        hex_id = image_id.split(":", 1)[1]
        return json.loads((self.pallet.root / "images" / "blobs" / "sha256" / hex_id).read_text())

    def filesystem(self, ref: str) -> dict:
        """The flattened root filesystem of ``ref`` by path, with ``.data`` on regular files."""
        dest = self.tmp / f"fs{self.count}-{ref.replace('/', '_').replace(':', '_')}.tar"
        self.count += 1
        context = write_context(self.tmp / f"ctx{self.count}", {"Dockerfile": f"FROM {ref}\n"})
        self.pallet("build", "-q", "-o", f"type=tar,dest={dest}", str(context), check=True)
        return read_tar(dest.read_bytes())


class Entry:
    """A tar member (``mode``, ``uid``, ``linkname``, ``issym()`` …) with its content as ``data``."""

    def __init__(self, info: tarfile.TarInfo, data: bytes):
        self.info, self.data = info, data

    def __getattr__(self, name):
        return getattr(self.info, name)


def read_tar(data: bytes) -> dict[str, Entry]:
    result = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar:
            content = tar.extractfile(member).read() if member.isreg() else b""
            result[member.name.rstrip("/")] = Entry(member, content)
    return result


def assert_nothing_left(pallet) -> None:
    """No build container, scratch layer, mount or journal survives a build (even a failed one)."""
    assert pallet("ps", "-aq", check=True).stdout.strip() == ""
    journal = pallet.run_root / "build"
    assert not list(journal.glob("*.json")) and not list(journal.glob("*.scratch"))
    with open("/proc/self/mountinfo") as handle:
        mounts = [line for line in handle if str(pallet.root) in line or str(pallet.run_root) in line]
    assert mounts == []
    layers = pallet.root / "overlay2"
    if layers.is_dir():
        assert not [p.name for p in layers.iterdir() if p.name.startswith("bld-")]


@pytest.fixture
def build(pallet, tmp_path):
    pallet("image", "build-busybox", "-q", check=True)
    builder = Builder(pallet, tmp_path)
    yield builder
