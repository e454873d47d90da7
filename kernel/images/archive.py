"""``save`` / ``load``: the ``docker save`` tar format (manifest.json + repositories) and OCI archives."""

from __future__ import annotations

import contextlib
import io
import json
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path

from pallet.kernel import faults
from pallet.kernel.errors import PalletError
from pallet.kernel.images import layers as layerlib
from pallet.kernel.images import layout
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.blobs import split_digest


# --- save ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _output_tar(output: str | None, stream=None):
    """A streaming tar to ``output`` (renamed into place when complete), else to ``stream`` or stdout."""
    if output is None:
        with tarfile.open(fileobj=stream or sys.stdout.buffer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            yield tar
        return
    target = Path(output)
    _sweep_dead_outputs(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tarfile.open(tmp, mode="w", format=tarfile.PAX_FORMAT) as tar:
            yield tar
        faults.point("save.before-rename")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _sweep_dead_outputs(target: Path) -> None:
    """Remove the temp files that killed saves to ``target`` left beside it (named with their pid)."""
    from pallet.kernel.debris import alive

    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for name in os.listdir(target.parent):
            pid = name[len(prefix):-len(".tmp")] if name.startswith(prefix) and name.endswith(".tmp") else ""
            if pid.isdigit() and not alive(int(pid)):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(target.parent / name)


def _add_bytes(tar, name: str, data: bytes, mtime: float = 0) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, mtime
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def _tags_for(name: str, record) -> list[str]:
    """The tags written for an image named ``name`` on the command line (all its tags when named by id)."""
    if not refs.looks_like_id(name) or name in record.repo_tags:
        with contextlib.suppress(PalletError):
            ref = refs.parse(name)
            if ref.tag:
                return [ref.familiar()]
    return list(record.repo_tags)


def save(store, named_records, output: str | None, fmt: str = "docker-archive", stream=None) -> None:
    """Write ``[(name as asked, ImageRecord)]`` to the file ``output``, else to the binary ``stream`` (stdout)."""
    with _output_tar(output, stream) as tar:
        if fmt == "oci-archive":
            _save_oci(store, named_records, tar)
        else:
            _save_docker(store, named_records, tar)


def _save_docker(store, named_records, tar) -> None:
    manifest, repositories, written = [], {}, set()
    for name, record in named_records:
        diff_ids = mf.config_diff_ids(record.config)
        layer_paths = []
        for chain_id, diff_id in zip(record.layers, diff_ids):
            hex_id = diff_id.split(":", 1)[1]
            layer_paths.append(f"{hex_id}/layer.tar")
            if hex_id in written:
                continue
            written.add(hex_id)
            layer = store.layer(chain_id)
            _add_dir(tar, hex_id)
            _add_bytes(tar, f"{hex_id}/VERSION", b"1.0")
            _add_bytes(tar, f"{hex_id}/json", json.dumps({"id": hex_id}).encode())
            info = tarfile.TarInfo(f"{hex_id}/layer.tar")
            info.size, info.mode = layer.size, 0o644
            compression = mf.LAYER_COMPRESSION.get(layer.media_type)
            with layerlib.uncompressed(store.blobs.path(layer.blob), compression) as stream:
                tar.addfile(info, stream)
        config_name = record.id.split(":", 1)[1] + ".json"
        if config_name not in written:
            written.add(config_name)
            _add_bytes(tar, config_name, store.blobs.read(record.id))
        tags = _tags_for(name, record)
        manifest.append({"Config": config_name, "RepoTags": tags or None, "Layers": layer_paths})
        for tag in tags:
            repo, _, tag_name = tag.rpartition(":")
            if layer_paths:
                repositories.setdefault(repo, {})[tag_name] = layer_paths[-1].split("/")[0]
    _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    _add_bytes(tar, "repositories", json.dumps(repositories).encode())


def _save_oci(store, named_records, tar) -> None:
    _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    entries, written = [], set()
    for name, record in named_records:
        data, manifest = layout.image_blobs(store, record)
        for digest in [d.digest for d in manifest.layers] + [manifest.config.digest, record.manifest_digest]:
            if digest not in written:
                written.add(digest)
                tar.add(store.blobs.path(digest), arcname=f"blobs/sha256/{split_digest(digest)[1]}")
        entry = {"mediaType": manifest.media_type, "digest": record.manifest_digest, "size": len(data)}
        tags = _tags_for(name, record)
        for tag in tags or [None]:
            entries.append({**entry, "annotations": {layout.REF_NAME: tag}} if tag else entry)
    _add_bytes(tar, "index.json", json.dumps({"schemaVersion": 2, "mediaType": mf.OCI_INDEX,
                                              "manifests": entries}).encode())


# --- load ---------------------------------------------------------------------------------

@contextlib.contextmanager
def _input_file(store, source: str | None):
    """A seekable path for ``source`` (stdin is spooled to a temp file in the store)."""
    if source is not None:
        if not Path(source).is_file():
            raise PalletError(f"open {source}: no such file")
        yield Path(source)
        return
    if sys.stdin.isatty():
        raise PalletError("requested load from stdin, but stdin is empty (use -i FILE or redirect)")
    store.blobs.tmp.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=store.blobs.tmp, prefix=f"load-{os.getpid()}-")   # the pid: for sweeping
    try:
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(sys.stdin.buffer, handle, 1 << 20)
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def load(store, source: str | None, platform: str = "") -> list[str]:
    """Load every image in a docker-archive or oci-archive (only those of ``platform``, as ``os[/arch[/variant]]``,
    when given); return Docker's "Loaded image: …" lines."""
    with _input_file(store, source) as path:
        try:
            tar = tarfile.open(path, "r:*")
        except tarfile.TarError:
            raise PalletError(f"invalid archive: {source or 'stdin'} is not a tar archive") from None
        try:
            with tar:
                names = set(tar.getnames())
                if "manifest.json" in names:
                    return load_docker_archive(store, tar, None, platform)[0]
                if "index.json" in names and "oci-layout" in names:
                    return _load_oci_archive(store, tar, platform)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
            # A truncated or corrupt archive: the transaction rolled back what it had added.
            raise PalletError(f"invalid archive: {source or 'stdin'} is truncated or corrupt ({exc})") from None
    raise PalletError("invalid archive: neither a docker-archive (manifest.json) nor an OCI archive (index.json)")


def _member(tar, name: str):
    try:
        handle = tar.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise PalletError(f"invalid archive: {name} is missing or not a file")
    return handle


def load_docker_archive(store, tar, wanted: refs.Reference | None, platform: str = "") -> tuple[list[str], list[str]]:
    """Load the images of a docker-archive (only ``wanted`` if given, only those of ``platform`` if given: Docker
    skips the others); return (output lines, image ids)."""
    try:
        entries = json.loads(_member(tar, "manifest.json").read())
        assert isinstance(entries, list)
    except (ValueError, AssertionError):
        raise PalletError("invalid archive: manifest.json is not a JSON list") from None
    if not entries:
        raise PalletError("invalid archive: manifest.json lists no image")
    for index, entry in enumerate(entries):
        _check_entry(index, entry)
    lines, ids = [], []
    with store.transaction() as txn:
        for entry in entries:
            tags = [refs.parse(t) for t in entry.get("RepoTags") or []]
            if wanted is not None:
                if wanted.tag and wanted not in tags and len(entries) > 1:
                    continue
                tags = [wanted]
            config_bytes = _member(tar, entry["Config"]).read()
            if platform and not mf.platform_matches(mf.config_platform(mf.load_json(config_bytes, "image config")),
                                                    platform):
                continue
            config_digest = txn.put_bytes(config_bytes)
            descriptors = []
            for name in entry.get("Layers") or []:
                digest = txn.ingest_file(_member(tar, name))
                compression = layerlib.detect_compression(store.blobs.path(digest))
                media_type = {None: mf.DOCKER_LAYER, "gzip": mf.DOCKER_LAYER_GZIP, "zstd": mf.OCI_LAYER_ZSTD}[compression]
                descriptors.append(mf.Descriptor(media_type, digest, store.blobs.size(digest)))
            config = mf.Descriptor(mf.DOCKER_CONFIG, config_digest, len(config_bytes))
            manifest = mf.build_manifest(config, descriptors, mf.DOCKER_MANIFEST)
            record = store.add_image(txn, txn.put_bytes(manifest), tags)
            lines += [f"Loaded image: {t.familiar()}" for t in tags] or [f"Loaded image ID: {record.id}"]
            ids.append(record.id)
    if not ids and wanted is not None:
        raise PalletError(f"no image named {wanted} in the archive")
    return lines, ids


def _check_entry(index: int, entry) -> None:
    """A manifest.json entry must be ``{"Config": str, "RepoTags": [str], "Layers": [str]}``."""
    where = f"invalid archive: manifest.json entry {index}"
    if not isinstance(entry, dict):
        raise PalletError(f"{where} is not an object")
    if not isinstance(entry.get("Config"), str):
        raise PalletError(f"{where}: Config must be a file name")
    for key in ("RepoTags", "Layers"):
        value = entry.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise PalletError(f"{where}: {key} must be a list of strings")


def _load_oci_archive(store, tar, platform: str = "") -> list[str]:
    store.blobs.tmp.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(dir=store.blobs.tmp, prefix=f"oci-{os.getpid()}-"))
    try:
        for member in tar.getmembers():
            parts = member.name.strip("./").split("/")
            ok = parts in (["index.json"], ["oci-layout"]) or (
                len(parts) == 3 and parts[0] == "blobs" and parts[1] == "sha256" and len(parts[2]) == 64)
            if member.isfile() and ok:
                target = workdir.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                with open(target, "wb") as handle:
                    shutil.copyfileobj(tar.extractfile(member), handle, 1 << 20)
        try:
            index = json.loads((workdir / "index.json").read_text())
        except (OSError, ValueError):
            raise PalletError("invalid archive: index.json is not JSON") from None
        if not isinstance(index, dict) or not isinstance(index.get("manifests", []), list) or \
                not all(isinstance(e, dict) for e in index.get("manifests", [])):
            raise PalletError("invalid archive: index.json must be an object with a list of manifests")
        if not index.get("manifests"):
            raise PalletError("invalid archive: index.json lists no image")
        lines = []
        with store.transaction() as txn:
            for entry in index.get("manifests", []):
                tag = (entry.get("annotations") or {}).get(layout.REF_NAME)
                wanted = mf.parse_platform(platform) if platform else mf.host_platform()
                manifest_digest, index_digest = layout.read_oci(
                    txn, workdir, tag if tag else None, wanted) if tag else _only(txn, workdir, index, wanted)
                names = [refs.parse(tag)] if tag and _is_reference(tag) else []
                record = store.add_image(txn, manifest_digest, names, index_digest)
                lines += [f"Loaded image: {n.familiar()}" for n in names] or [f"Loaded image ID: {record.id}"]
        return lines
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _only(txn, workdir: Path, index: dict, platform: dict):
    if len(index.get("manifests", [])) != 1:
        raise PalletError("OCI archive entries without a ref.name annotation must be alone in the index")
    return layout.read_oci(txn, workdir, None, platform)


def _is_reference(text: str) -> bool:
    try:
        refs.parse(text)
    except PalletError:
        return False
    return ":" in text or "/" in text
