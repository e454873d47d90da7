"""Making images locally: a layer from a tar stream, commit / import, and the embedded busybox image."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

from pallet.kernel import faults
from pallet.kernel.errors import NotFound, PalletError
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.records import ImageRecord

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUSYBOX = Path("/bin/busybox")


def layer_from_tar(txn, stream: BinaryIO) -> tuple[mf.Descriptor, str]:
    """Store an uncompressed tar stream as a gzip layer blob; return its descriptor and diff id."""
    staged = stage_layer(txn.store, stream)
    return publish_layer(txn, staged)


class StagedLayer:
    """A gzip layer blob written and verified but not yet in the store: ``tmp`` is renamed in by ``publish_layer``."""

    def __init__(self, tmp: str, digest: str, size: int, diff_id: str):
        self.tmp, self.digest, self.size, self.diff_id = tmp, digest, size, diff_id

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)


def stage_layer(store, stream: BinaryIO) -> StagedLayer:
    """Compress an uncompressed tar stream into a staged blob; needs no store lock (the slow part of a commit)."""
    diff_hash = hashlib.sha256()
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)

    def chunks():
        while True:
            data = stream.read(1 << 20)
            if not data:
                break
            diff_hash.update(data)
            out = compressor.compress(data)
            if out:
                yield out
        yield compressor.flush()

    tmp, digest = store.blobs.stage(chunks())
    return StagedLayer(tmp, digest, os.stat(tmp).st_size, "sha256:" + diff_hash.hexdigest())


def publish_layer(txn, staged: StagedLayer) -> tuple[mf.Descriptor, str]:
    """Rename a staged layer blob into the store (under the transaction's lock); its descriptor and diff id."""
    try:
        txn.adopt(staged.tmp, staged.digest)
    except FileNotFoundError:
        # ``system check --repair`` reports and removes temp files, a live writer's included.
        raise PalletError("the layer staged by this commit was removed meanwhile; commit again") from None
    finally:
        staged.discard()
    return mf.Descriptor(mf.OCI_LAYER_GZIP, staged.digest, staged.size), staged.diff_id


def base_config(created: str, platform: str = "") -> dict:
    """A parentless image's config; ``platform`` (``os[/arch[/variant]]``) instead of the host's."""
    plat = mf.host_platform()
    if platform:
        parts = platform.split("/")
        plat = {"os": parts[0], "architecture": parts[1] if len(parts) > 1 else plat["architecture"]}
        if len(parts) > 2:
            plat["variant"] = parts[2]
    return {**plat, "created": created, "config": {"Env": [DEFAULT_PATH]},
            "rootfs": {"type": "layers", "diff_ids": []}, "history": []}


DOCKER_MEDIA = {mf.OCI_LAYER_GZIP: mf.DOCKER_LAYER_GZIP, mf.OCI_LAYER: mf.DOCKER_LAYER}


def store_image(store, txn, config: dict, layers: list[mf.Descriptor], names: list[str],
                media: str = "oci") -> ImageRecord:
    """Write config and manifest blobs for ``layers`` and register the image under ``names``.

    ``media="docker"`` writes Docker schema-2 media types (manifest, config, layers) instead of OCI's.
    """
    config_bytes = json.dumps(config, separators=(",", ":")).encode()
    config_digest = txn.put_bytes(config_bytes)
    if media == "docker":
        layers = [mf.Descriptor(DOCKER_MEDIA.get(d.media_type, d.media_type), d.digest, d.size, d.platform,
                                d.annotations) for d in layers]
        manifest = mf.build_manifest(mf.Descriptor(mf.DOCKER_CONFIG, config_digest, len(config_bytes)), layers,
                                     mf.DOCKER_MANIFEST)
    else:
        manifest = mf.build_manifest(mf.Descriptor(mf.OCI_CONFIG, config_digest, len(config_bytes)), layers)
    manifest_digest = txn.put_bytes(manifest)
    return store.add_image(txn, manifest_digest, [refs.parse(name) for name in names])


def commit(store, stream: BinaryIO | None, parent: ImageRecord | None, config: dict | None,
           history_comment: str = "", tags: list[str] = (), created_by: str = "", author: str = "",
           platform: str = "") -> str:
    """A new image: ``parent``'s layers plus ``stream`` (an uncompressed tar, or None for no new layer).

    ``config`` replaces the runtime config (``Env``, ``Cmd`` …) when given, else the
    parent's is kept. Returns the new image id.
    """
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    document = copy.deepcopy(parent.config) if parent else base_config(created, platform)
    document["created"] = created
    if author:
        document["author"] = author
    if config is not None:
        document["config"] = config
    # The container's diff is read and compressed before the lock: a long commit must not block
    # every pull and rmi. The lock is taken only to publish the blob, config, manifest and record.
    staged = stage_layer(store, stream) if stream is not None else None
    try:
        faults.point("commit.layer-staged")
        with store.transaction() as txn:
            layers = _parent_layers(store, parent)
            entry = {"created": created, "created_by": created_by}
            if history_comment:
                entry["comment"] = history_comment
            if staged is not None:
                descriptor, diff_id = publish_layer(txn, staged)
                layers = [*layers, descriptor]
                document.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(diff_id)
            else:
                entry["empty_layer"] = True
            document.setdefault("history", []).append(entry)
            faults.point("commit.before-publish")
            return store_image(store, txn, document, layers, list(tags)).id
    finally:
        if staged is not None:
            staged.discard()


def _parent_layers(store, parent: ImageRecord | None) -> list[mf.Descriptor]:
    """The parent's layer descriptors, read under the lock (it may have been removed while the layer was staged)."""
    if parent is None:
        return []
    # Read the record again: a pull or load of the same image (same config, so the same id) may
    # have recorded it under another manifest meanwhile, and the blob sweep removed the old one.
    try:
        current = store.load(parent.id)
    except NotFound:
        raise PalletError(f"image {parent.id[7:19]} was removed during the commit") from None
    if not store.blobs.has(current.manifest_digest):
        raise PalletError(f"image {parent.id[7:19]} was removed during the commit")
    return mf.parse_manifest(store.blobs.read(current.manifest_digest)).layers


class _Peek:
    """A stream whose first bytes were read to sniff compression."""

    def __init__(self, head: bytes, rest: BinaryIO):
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            data, self.head = (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            return data
        return self.rest.read(n)


def maybe_decompress(stream: BinaryIO) -> BinaryIO:
    """Accept a rootfs tarball compressed with gzip (as ``docker import`` does)."""
    from pallet.kernel.images.layers import _ZlibReader
    head = stream.read(4)
    peek = _Peek(head, stream)
    if head[:2] == b"\x1f\x8b":
        return _ZlibReader(peek)
    if head == b"\x28\xb5\x2f\xfd":
        raise PalletError("zstd-compressed tarballs are not supported by import; decompress it first")
    return peek


# --- busybox ----------------------------------------------------------------------------

def busybox_tar(binary: Path = BUSYBOX) -> tuple[bytes, str, float]:
    """A deterministic root filesystem tar: busybox, an applet symlink per applet, passwd/group."""
    if not binary.is_file():
        raise PalletError(f"{binary} not found: install Debian's busybox-static")
    listing = subprocess.run([str(binary), "--list-full"], capture_output=True, text=True)
    if listing.returncode != 0 or not listing.stdout.strip():
        raise PalletError(f"{binary} --list-full failed; is it busybox-static?")
    version = subprocess.run([str(binary)], capture_output=True, text=True).stdout.splitlines()[:1]
    mtime = int(binary.stat().st_mtime)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, kind=tarfile.DIRTYPE, mode=0o755, data=b"", target=""):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.size = kind, mode, mtime, len(data)
            info.linkname = target
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        dirs = ["bin", "dev", "etc", "home", "proc", "root", "sbin", "sys", "tmp", "usr", "usr/bin",
                "usr/sbin", "var", "var/spool", "var/spool/mail", "var/www"]
        for name in dirs:
            add(name, mode=0o1777 if name == "tmp" else (0o700 if name == "root" else 0o755))
        add("bin/busybox", tarfile.REGTYPE, 0o755, binary.read_bytes())
        add("etc/passwd", tarfile.REGTYPE, 0o644,
            b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")
        add("etc/group", tarfile.REGTYPE, 0o644, b"root:x:0:\nnobody:x:65534:\n")
        seen = set()
        for path in sorted(listing.stdout.split()):
            path = path.strip("/")
            if path in seen or path == "bin/busybox" or "/" not in path or path.split("/")[0] not in dirs:
                continue
            seen.add(path)
            target = "busybox" if path.startswith("bin/") and path.count("/") == 1 else "../" * path.count("/") + "bin/busybox"
            add(path, tarfile.SYMTYPE, 0o777, target=target)
    return buffer.getvalue(), (version[0] if version else "busybox"), mtime


def build_busybox(store, tag: str = "busybox:latest", binary: Path = BUSYBOX) -> ImageRecord:
    data, version, mtime = busybox_tar(binary)
    created = datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = base_config(created)
    config["config"] = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
    with store.transaction() as txn:
        descriptor, diff_id = layer_from_tar(txn, io.BytesIO(data))
        config["rootfs"]["diff_ids"] = [diff_id]
        config["history"] = [{"created": created,
                              "created_by": f"pallet image build-busybox ({binary}, {version.strip()})"}]
        return store_image(store, txn, config, [descriptor], [tag])


def parse_change(instruction: str, config: dict) -> None:
    """Apply one Dockerfile-style ``--change`` (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR, VOLUME, STOPSIGNAL)."""
    keyword, _, rest = instruction.strip().partition(" ")
    keyword, rest = keyword.upper(), rest.strip()
    if not rest:
        raise PalletError(f'invalid --change "{instruction}": missing value')

    def command(value: str) -> list[str]:
        if value.startswith("["):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                raise PalletError(f'invalid --change "{instruction}": bad JSON array') from None
            if not isinstance(parsed, list) or not all(isinstance(x, str) for x in parsed):
                raise PalletError(f'invalid --change "{instruction}": expected a JSON array of strings')
            return parsed
        return ["/bin/sh", "-c", value]

    if keyword in ("CMD", "ENTRYPOINT"):
        config["Cmd" if keyword == "CMD" else "Entrypoint"] = command(rest)
    elif keyword == "ENV":
        key, sep, value = rest.partition("=")
        if not sep:
            key, _, value = rest.partition(" ")
        env = [e for e in config.get("Env") or [] if not e.startswith(key + "=")]
        config["Env"] = [*env, f"{key}={value.strip()}"]
    elif keyword == "EXPOSE":
        for port in rest.split():
            config.setdefault("ExposedPorts", {})[port if "/" in port else f"{port}/tcp"] = {}
    elif keyword == "LABEL":
        key, _, value = rest.partition("=")
        config.setdefault("Labels", {})[key.strip()] = value.strip().strip('"')
    elif keyword == "USER":
        config["User"] = rest
    elif keyword == "WORKDIR":
        config["WorkingDir"] = rest
    elif keyword == "VOLUME":
        paths = command(rest) if rest.startswith("[") else rest.split()
        for path in paths:
            config.setdefault("Volumes", {})[path] = {}
    elif keyword == "STOPSIGNAL":
        config["StopSignal"] = rest
    else:
        raise PalletError(f'invalid --change "{instruction}": unsupported instruction {keyword}')

