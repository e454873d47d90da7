"""The end of a build: the image into the store (tagged only now), and ``-o`` exports of it.

Exports: ``type=oci`` / ``type=docker`` (an archive as ``pallet save`` writes), ``type=tar`` (the
flattened root filesystem as one tar) and ``type=local`` (that filesystem unpacked into a directory).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from pallet.kernel.errors import PalletError, UsageError
from pallet.kernel.images import build as imgbuild

EXPORT_TYPES = ("oci", "docker", "tar", "local", "image")


def parse_output(spec: str) -> dict:
    """``type=oci,dest=out.tar[,name=REF]`` (or a bare path: a local directory export, as Docker's ``-o DIR``)."""
    if spec == "-":  # Docker's -o -: the filesystem as a tar on stdout
        return {"type": "tar", "dest": "-"}
    if "=" not in spec:
        return {"type": "local", "dest": spec}
    fields = {}
    for item in spec.split(","):
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f'invalid output "{spec}": {item} is not KEY=VALUE')
        fields[key.strip()] = value
    if fields.get("type") not in EXPORT_TYPES:
        raise UsageError(f'invalid output "{spec}": type must be one of {", ".join(EXPORT_TYPES)}')
    if fields["type"] != "image" and not fields.get("dest"):
        raise UsageError(f'invalid output "{spec}": dest= is required for type={fields["type"]}')
    if fields["type"] == "local" and fields.get("dest") == "-":
        raise UsageError(f'invalid output "{spec}": type=local writes a directory, not stdout (type=tar does)')
    if fields.get("name"):
        from pallet.kernel.images import reference as refs

        if fields["type"] not in ("oci", "docker"):
            raise UsageError(f'invalid output "{spec}": name= is only for type=oci or type=docker')
        refs.parse(fields["name"])
    return fields


@dataclass
class BuildResult:
    image_id: str
    config: dict
    manifest_digest: str


def finish_image(engine, solver, state) -> BuildResult:
    from pallet.kernel.build.solver import final_config

    request = solver.request
    doc = final_config(state, request, solver.created)
    store = solver.store
    tags = list(request.tags)
    with store.transaction() as txn:
        record = imgbuild.store_image(store, txn, doc, _annotated(state), tags, request.format)
    for output in request.outputs:
        export(engine, store, record, output)
    return BuildResult(record.id, doc, record.manifest_digest)


def _annotated(state) -> list:
    """Layer descriptors, each layer this build made marked with its step key (``--cache-from`` reads it)."""
    from pallet.kernel.build.solver import CACHE_ANNOTATION
    from pallet.kernel.images import manifest as mf

    result = []
    for (descriptor, _diff_id), key in zip(state.layers, state.layer_keys):
        if key:
            descriptor = mf.Descriptor(descriptor.media_type, descriptor.digest, descriptor.size,
                                       annotations={CACHE_ANNOTATION: key})
        result.append(descriptor)
    return result


def export(engine, store, record, output: dict) -> None:
    kind, dest = output["type"], output.get("dest", "")
    if kind == "image":
        return
    if kind in ("oci", "docker"):
        from pallet.kernel.images import archive

        # by id: the archive names the image by all its tags (every -t); name= names it instead, as BuildKit's
        archive.save(store, [(output.get("name") or record.id, record)],
                     None if dest == "-" else dest, "oci-archive" if kind == "oci" else "docker-archive")
        return
    top = store.ensure_layers(record)
    layer_id = "bld-export-" + os.urandom(6).hex()
    engine.storage.create_rw(layer_id, top)
    try:
        root = Path(engine.storage.get(layer_id))
        try:
            if kind == "tar":
                _tar_tree(root, dest)
            else:
                Path(dest).mkdir(parents=True, exist_ok=True)
                shutil.copytree(root, dest, symlinks=True, dirs_exist_ok=True)
        finally:
            engine.storage.put(layer_id)
    finally:
        with contextlib.suppress(Exception):
            engine.storage.remove(layer_id)


def _tar_tree(root: Path, dest: str) -> None:
    import sys

    from pallet.kernel.storage import archive

    if dest == "-":
        writer, out = archive.TarWriter(), sys.stdout.buffer
        for name, path, st in archive.walk(str(root)):
            for chunk in writer.add(name, path, st):
                out.write(chunk)
        out.write(writer.end())
        out.flush()
        return
    target = Path(dest)
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        with open(tmp, "wb") as out:
            writer = archive.TarWriter()
            for name, path, st in archive.walk(str(root)):
                for chunk in writer.add(name, path, st):
                    out.write(chunk)
            out.write(writer.end())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    if not tarfile.is_tarfile(target):
        raise PalletError(f"export to {dest} failed")
