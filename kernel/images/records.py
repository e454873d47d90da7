"""Records the image store keeps on disk: one per image, one per layer (by chain id), and the tag map."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.fsutil import atomic_write_json


@dataclass
class LayerRecord:
    """A layer known to the store. ``blob`` holds its content as ``media_type`` (maybe compressed)."""

    chain_id: str
    diff_id: str
    parent: str | None
    blob: str
    media_type: str
    compressed_size: int
    size: int


@dataclass
class ImageRecord:
    """An image: its id is the digest of its config (as Docker's).

    ``config`` is the whole OCI image config document (``architecture``, ``os``, ``created``,
    ``history``, ``rootfs`` and the runtime defaults under ``config``: ``config["config"]["Env"]``,
    ``Cmd``, ``Entrypoint``, ``WorkingDir``, ``User``, ``ExposedPorts``, ``Volumes``, ``Labels``,
    ``StopSignal``); ``runtime_config`` is that inner dict. ``layers`` are chain ids, bottom to top.
    """

    id: str
    manifest_digest: str
    manifest_media_type: str
    layers: list[str]
    created: str = ""
    size: int = 0
    repo_digests: list[str] = field(default_factory=list)
    index_digest: str | None = None
    added: str = ""
    repo_tags: list[str] = field(default_factory=list)   # filled from the tag map, not stored here
    config: dict = field(default_factory=dict)           # read from the config blob, not stored here

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def runtime_config(self) -> dict:
        return self.config.get("config") or {}

    @property
    def top_layer(self) -> str | None:
        return self.layers[-1].split(":", 1)[1] if self.layers else None


_IMAGE_STORED = [f.name for f in dataclasses.fields(ImageRecord) if f.name not in ("repo_tags", "config")]


def write_image(path: Path, record: ImageRecord) -> None:
    atomic_write_json(path, {name: getattr(record, name) for name in _IMAGE_STORED})


def read_image(path: Path) -> ImageRecord:
    data = json.loads(path.read_text())
    return ImageRecord(**{k: v for k, v in data.items() if k in _IMAGE_STORED})


def write_layer(path: Path, record: LayerRecord) -> None:
    atomic_write_json(path, dataclasses.asdict(record))


def read_layer(path: Path) -> LayerRecord:
    return LayerRecord(**json.loads(path.read_text()))
