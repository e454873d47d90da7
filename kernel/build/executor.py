"""Doing a build step's work: RUN in a container through the lifecycle, file copies in a scratch layer,
and turning either's changes into a reproducible layer blob.

Scratch layers are named ``bld-…`` (never 64 hex, so the image store's sweep leaves them to us);
everything a build makes is listed in a journal under ``<run root>/build`` so that the next build
removes what a ``kill -9`` of this one left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
import tempfile
import threading
import time
from pathlib import Path

from pallet.kernel import procs
from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import atomic_write_json

LABEL = "pallet.build.id"
TAIL_LINES = 10


class Journal:
    """What one build holds (scratch layers, containers, temp dirs), on disk until the build ends."""

    def __init__(self, engine, build_id: str):
        self.engine, self.build_id = engine, build_id
        self.path = Path(engine.run_root) / "build" / f"{build_id}.json"
        self.lock = threading.Lock()
        self.items = {"pid": os.getpid(), "start": procs.start_time(os.getpid()), "layers": [], "containers": [],
                      "dirs": []}
        self._write()

    def _write(self) -> None:
        atomic_write_json(self.path, self.items, durable=False)

    def add(self, kind: str, value: str) -> None:
        with self.lock:
            self.items[kind].append(value)
            self._write()

    def drop(self, kind: str, value: str) -> None:
        with self.lock:
            with contextlib.suppress(ValueError):
                self.items[kind].remove(value)
            self._write()

    def scratch_dir(self) -> Path:
        """A private temp directory for this build (downloads), removed with the build."""
        path = self.path.with_suffix(".scratch")
        if not path.is_dir():
            path.mkdir(parents=True, mode=0o700)
            self.add("dirs", str(path))
        return path

    def close(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def clean_stale(engine) -> int:
    """Remove what builds killed before their own clean-up left (their builder process is gone)."""
    directory = Path(engine.run_root) / "build"
    cleaned = 0
    for path in directory.glob("*.json") if directory.is_dir() else ():
        try:
            items = json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            continue
        if procs.alive(items.get("pid", 0), items.get("start", 0)):
            continue
        engine.plugins.load("security", "runtime")  # removing its containers goes through the runtime
        release_items(engine, items)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        cleaned += 1
    return cleaned


def release_items(engine, items: dict) -> None:
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    import shutil

    store = ContainerStore(engine)
    for cid in items.get("containers", []):
        with contextlib.suppress(PalletError, FileNotFoundError):
            lifecycle.remove(engine, store.load(cid), force=True)
    for layer in items.get("layers", []):
        with contextlib.suppress(Exception):
            engine.storage.put(layer)
        with contextlib.suppress(Exception):
            engine.storage.remove(layer)
    for directory in items.get("dirs", []):
        shutil.rmtree(directory, ignore_errors=True)


class Workspace:
    """A mounted read-write layer over a chain, for steps that edit files without a container."""

    def __init__(self, engine, journal: Journal, parent: str | None):
        self.engine, self.journal, self.parent = engine, journal, parent
        self.id = "bld-" + os.urandom(12).hex()
        journal.add("layers", self.id)
        engine.storage.create_rw(self.id, parent)
        self.mounted = False
        self.root = Path(engine.storage.get(self.id))
        self.mounted = True

    def unmount(self) -> None:
        if self.mounted:
            self.engine.storage.put(self.id)
            self.mounted = False

    def close(self) -> None:
        try:
            self.unmount()
        finally:
            self.engine.storage.remove(self.id)
            self.journal.drop("layers", self.id)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def normalized_layer(chunks, clamp: int, drop=frozenset()):
    """Rewrite a diff tar: times clamped to ``clamp``, owner names dropped, the mount-point
    stubs in ``drop`` left out when they are empty. Returns a rewound temp file and whether it has entries."""
    from pallet.kernel.storage.archive import ChunkReader

    out = tempfile.TemporaryFile()
    empty = True
    with tarfile.open(fileobj=ChunkReader(chunks), mode="r|") as source, \
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as target:
        for member in source:
            if member.name.rstrip("/") in drop and (member.isdir() or (member.isreg() and not member.size)):
                continue
            empty = False
            member.uname = member.gname = ""
            member.mtime = int(min(member.mtime, clamp))
            member.pax_headers = {k: v for k, v in member.pax_headers.items()
                                  if k.startswith("SCHILY.xattr.") or k in ("path", "linkpath")}
            data = source.extractfile(member) if member.isreg() else None
            target.addfile(member, data)
    out.seek(0)
    return out, not empty


def wait_container(pid: int) -> int:
    """Reap one container process by pid, never with ``waitpid(-1)``: stages run in threads, and the
    runtime (and subprocesses elsewhere) wait for their own children, whose exits must not be taken."""
    while True:
        try:
            _got, status = os.waitpid(pid, 0)
            return procs.exit_code_from_status(status)
        except InterruptedError:
            continue
        except ChildProcessError:  # not (yet) re-parented to us: wait for it to end, its code is lost
            while procs.alive(pid, 0):
                time.sleep(0.02)
            return 255


def run_container(engine, journal: Journal, request, image_config: dict, top_layer: str | None,
                  on_output) -> tuple[str, int, list[str]]:
    """Create and run one build container to its end; return (container id, exit code, last output lines).

    The container stays (stopped) so the caller can take its diff; it is in the journal until removed.
    """
    from pallet.kernel import lifecycle

    record = lifecycle.create_on(engine, request, "", image_config, lambda: top_layer)
    journal.add("containers", record.id)
    tail: list[str] = []
    bundle = lifecycle.prepare(engine, record)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            pid = lifecycle.start_process(engine, record, bundle, (devnull, out_w, out_w))
        except PalletError as exc:
            lifecycle.release(engine, record)
            code = lifecycle.start_error_code(exc)
            return record.id, code if code is not None else 126, [str(exc)]
        finally:
            os.close(out_w)
        pending = b""
        while True:
            data = os.read(out_r, 65536)
            if not data:
                break
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                tail = (tail + [text])[-TAIL_LINES:]
                on_output(text)
        if pending:
            text = pending.decode(errors="replace")
            tail = (tail + [text])[-TAIL_LINES:]
            on_output(text)
        code = wait_container(pid)
    finally:
        os.close(out_r)
        os.close(devnull)
    from pallet.kernel.containers import ContainerStore

    lifecycle.finish(engine, ContainerStore(engine).load(record.id), code)
    return record.id, code, tail


def remove_container(engine, journal: Journal, cid: str) -> None:
    from pallet.kernel import lifecycle
    from pallet.kernel.containers import ContainerStore

    with contextlib.suppress(PalletError):
        lifecycle.remove(engine, ContainerStore(engine).load(cid), force=True)
    journal.drop("containers", cid)
