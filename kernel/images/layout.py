"""OCI image layouts and skopeo-style ``dir:`` directories: reading into the store and writing out of it."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.fsutil import atomic_write, atomic_write_json
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.blobs import sha256_digest, split_digest

REF_NAME = "org.opencontainers.image.ref.name"
DIR_VERSION = b"Directory Transport Version: 1.1\n"


def split_location(location: str) -> tuple[Path, str | None]:
    """``/tmp/layout:tag`` -> (path, "tag"); a colon inside the last path component only counts as a tag."""
    path, sep, tag = location.rpartition(":")
    if sep and path and "/" not in tag:
        return Path(path), tag or None
    return Path(location), None


def image_name(tag: str | None, path: Path) -> refs.Reference:
    """What a pulled layout image is called: its ref.name if that is a full reference, else localhost/<dir>:<tag>."""
    if tag and ("/" in tag or ":" in tag):
        try:
            return refs.parse(tag)
        except PalletError:
            pass
    base = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.resolve().name.lower()).strip("._-")
    return refs.parse(f"localhost/{base or 'image'}:{tag or 'latest'}")


# --- OCI layout -------------------------------------------------------------------------

def read_oci(txn, path: Path, tag: str | None, platform: dict) -> tuple[str, str | None]:
    """Copy the image ``tag`` names in the layout at ``path`` into the store; return (manifest digest, index digest)."""
    if not (path / "oci-layout").is_file() or not (path / "index.json").is_file():
        raise NotFound(f"{path} is not an OCI image layout (no oci-layout / index.json)")
    entries = mf.parse_index((path / "index.json").read_bytes())
    if tag:
        entries = [e for e in entries if (e.annotations or {}).get(REF_NAME) == tag]
        if not entries:
            raise NotFound(f'no image tagged "{tag}" in OCI layout {path}')
    elif len(entries) != 1:
        raise PalletError(f"OCI layout {path} holds {len(entries)} images; name one as oci:{path}:TAG")
    entry = entries[0]
    index_digest = None
    if entry.media_type in mf.INDEXES:
        index_digest = _copy_blob(txn, path, entry)
        entry = mf.select_platform(mf.parse_index(txn.store.blobs.read(index_digest)), platform)
    manifest_digest = _copy_blob(txn, path, entry)
    manifest = mf.parse_manifest(txn.store.blobs.read(manifest_digest), entry.media_type)
    for descriptor in [manifest.config, *manifest.layers]:
        _copy_blob(txn, path, descriptor)
    return manifest_digest, index_digest


def _copy_blob(txn, path: Path, descriptor: mf.Descriptor) -> str:
    if txn.has_blob(descriptor.digest):
        return descriptor.digest
    algorithm, hex_part = split_digest(descriptor.digest)
    source = path / "blobs" / algorithm / hex_part
    try:
        with open(source, "rb") as handle:
            return txn.ingest_file(handle, descriptor.digest, descriptor.size)
    except FileNotFoundError:
        raise PalletError(f"OCI layout {path} lacks blob {descriptor.digest}") from None


def image_blobs(store, record) -> tuple[bytes, mf.Manifest]:
    data = store.blobs.read(record.manifest_digest)
    return data, mf.parse_manifest(data)


def write_oci(store, record, path: Path, tag: str | None) -> str:
    """Add ``record`` to the OCI layout at ``path`` (created if needed) under ``tag``; return its manifest digest."""
    data, manifest = image_blobs(store, record)
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "oci-layout").exists():
        atomic_write_json(path / "oci-layout", {"imageLayoutVersion": "1.0.0"})
    blob_dir = path / "blobs" / "sha256"
    blob_dir.mkdir(parents=True, exist_ok=True)
    for digest in [d.digest for d in manifest.layers] + [manifest.config.digest, record.manifest_digest]:
        target = blob_dir / split_digest(digest)[1]
        if not target.exists():
            tmp = target.with_name(target.name + ".tmp")
            shutil.copyfile(store.blobs.path(digest), tmp)
            os.replace(tmp, target)
    index_path = path / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"schemaVersion": 2, "manifests": []}
    index.setdefault("mediaType", mf.OCI_INDEX)
    entry = {"mediaType": manifest.media_type, "digest": record.manifest_digest, "size": len(data)}
    if tag:
        entry["annotations"] = {REF_NAME: tag}
        index["manifests"] = [m for m in index.get("manifests", [])
                              if (m.get("annotations") or {}).get(REF_NAME) != tag]
    index["manifests"].append(entry)
    atomic_write(index_path, json.dumps(index).encode())
    return record.manifest_digest


# --- dir: (skopeo's directory format) ---------------------------------------------------

def read_dir(txn, path: Path) -> str:
    try:
        data = (path / "manifest.json").read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path} holds no manifest.json") from None
    manifest_digest = txn.put_bytes(data)
    manifest = mf.parse_manifest(data)
    for descriptor in [manifest.config, *manifest.layers]:
        if txn.has_blob(descriptor.digest):
            continue
        try:
            with open(path / split_digest(descriptor.digest)[1], "rb") as handle:
                txn.ingest_file(handle, descriptor.digest, descriptor.size)
        except FileNotFoundError:
            raise PalletError(f"{path} lacks blob {descriptor.digest}") from None
    return manifest_digest


def write_dir(store, record, path: Path) -> str:
    data, manifest = image_blobs(store, record)
    path.mkdir(parents=True, exist_ok=True)
    for digest in [d.digest for d in manifest.layers] + [manifest.config.digest]:
        shutil.copyfile(store.blobs.path(digest), path / split_digest(digest)[1])
    atomic_write(path / "manifest.json", data)
    atomic_write(path / "version", DIR_VERSION)
    if sha256_digest(data) != record.manifest_digest:
        raise PalletError("stored manifest does not match its digest")
    return record.manifest_digest
