"""Layer helpers: chain ids, decompressing a stored blob into an uncompressed tar stream, hashing readers.

gzip is inflated in a helper thread (the decoders drop the GIL, so it runs beside the tar
extraction) by the fastest decoder installed: ``isal`` (ISA-L, about 3x zlib here), then
``zlib_ng``, then the standard ``zlib`` (about 3x faster than a ``gzip -dc`` child, which
``PALLET_GZIP=gzip-command`` still selects; ``PALLET_GZIP=zlib`` forces the standard one).
zstd layers are decoded by the ``zstandard`` package when installed (streamable while they
download), else through a ``zstd -dc`` child. The optional decoders are the ``fast-pull``
extra of pyproject.toml.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from pallet.kernel.errors import PalletError


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image-spec ChainID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
    import hashlib  # here, not at the top: OpenSSL's load is ~3 ms of every command
    result: list[str] = []
    for diff_id in diff_ids:
        if not result:
            result.append(diff_id)
        else:
            result.append("sha256:" + hashlib.sha256(f"{result[-1]} {diff_id}".encode()).hexdigest())
    return result


def layer_id(chain_id: str) -> str:
    """The storage driver's id for a layer: the chain id's 64 hex characters."""
    return chain_id.split(":", 1)[1]


class HashingReader:
    """Read-through wrapper counting and hashing every byte handed out."""

    def __init__(self, source: BinaryIO, stop=None):
        self.source = source
        import hashlib  # here, not at the top: OpenSSL's load is ~3 ms of every command
        self.hasher = hashlib.sha256()
        self.count = 0
        self.stop = stop   # a threading.Event: set, the next read raises (a parallel pull failed elsewhere)

    def read(self, n: int = -1) -> bytes:
        if self.stop is not None and self.stop.is_set():
            raise PalletError("pull cancelled")
        data = self.source.read(n)
        self.hasher.update(data)
        self.count += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def readable(self) -> bool:
        return True

    def drain(self) -> None:
        """Consume what the tar reader left (end-of-archive padding) so the digest covers the whole stream."""
        while self.read(1 << 20):
            pass

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()


def gzip_decoder():
    """``(name, module)``: the fastest installed zlib-compatible module (``decompressobj(wbits=31)``)."""
    choice = os.environ.get("PALLET_GZIP", "")
    if choice != "zlib":
        for name, module in (("isal", "isal.isal_zlib"), ("zlib-ng", "zlib_ng.zlib_ng")):
            if choice in ("", name):
                try:
                    return name, importlib.import_module(module)
                except ImportError:
                    continue
    return "zlib", zlib


def zstd_module():
    """The ``zstandard`` module, or None when it is not installed (the ``zstd`` command is used then)."""
    try:
        return importlib.import_module("zstandard")
    except ImportError:
        return None


def streamable(compression: str | None) -> bool:
    """Whether a layer of this compression can be unpacked while its blob still downloads."""
    return compression in (None, "gzip") or (compression == "zstd" and zstd_module() is not None)


class _ZlibReader:
    """Streaming gzip decoder (handles concatenated members).

    With ``threaded`` the inflating runs in a helper thread: zlib releases the GIL, so it
    overlaps the tar extraction on another core.
    """

    def __init__(self, source: BinaryIO, threaded: bool = False):
        self.source = source
        self.zlib = gzip_decoder()[1]
        self.decoder = self.zlib.decompressobj(wbits=31)
        self.buffer = b""
        self.pos = 0
        self.eof = False
        self.queue = None
        if threaded:
            import queue
            import threading
            self.queue = queue.Queue(maxsize=16)
            self.stopped = False
            threading.Thread(target=self._produce, daemon=True, name="inflate").start()

    def _produce(self) -> None:
        while not self.stopped:
            try:
                data = self._next()
            except BaseException as exc:
                data = exc
            if not self._put(data) or data is None or isinstance(data, BaseException):
                return

    def _put(self, item) -> bool:
        """Hand ``item`` to the reader; False when the reader went away (close) before taking it."""
        import queue
        while not self.stopped:
            try:
                self.queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _next(self) -> bytes | None:
        """The next decompressed piece, or None at the end of the stream."""
        while True:
            chunk = self.source.read(1 << 20)
            if not chunk:
                if not self.decoder.eof:
                    raise PalletError("layer is truncated: unexpected end of gzip stream")
                return None
            out = self._feed(chunk)
            if out:
                return out

    def read(self, n: int = -1) -> bytes:
        # The buffer is consumed by offset: tar readers ask for 512-byte headers, and slicing
        # the rest of a megabyte off each time would copy it over and over.
        while not self.eof and (n < 0 or len(self.buffer) - self.pos < n):
            data = self.queue.get() if self.queue is not None else self._next()
            if isinstance(data, BaseException):
                self.eof = True
                raise data
            if data is None:
                self.eof = True
                break
            self.buffer = self.buffer[self.pos:] + data if self.pos < len(self.buffer) else data
            self.pos = 0
        end = len(self.buffer) if n < 0 else min(len(self.buffer), self.pos + n)
        data = self.buffer[self.pos:end]
        self.pos = end
        return data

    def close(self) -> None:
        if self.queue is not None:
            self.stopped = True

    def _feed(self, chunk: bytes) -> bytes:
        try:
            out = self.decoder.decompress(chunk)
            while self.decoder.eof and self.decoder.unused_data:
                rest = self.decoder.unused_data
                self.decoder = self.zlib.decompressobj(wbits=31)
                out += self.decoder.decompress(rest)
        except self.zlib.error as exc:
            raise PalletError(f"layer is not valid gzip: {exc}") from None
        return out


def detect_compression(path: Path) -> str | None:
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic[:2] == b"\x1f\x8b":
        return "gzip"
    if magic == b"\x28\xb5\x2f\xfd":
        return "zstd"
    return None


@contextlib.contextmanager
def uncompressed(path, compression: str | None) -> Iterator[BinaryIO]:
    """Yield a readable uncompressed stream of the blob at ``path`` (or an open stream); decoder failures raise PalletError."""
    if compression == "zstd" and zstd_module() is not None:
        with _zstd_stream(path) as reader:
            yield reader
        return
    if not isinstance(path, (str, Path)):
        if compression not in (None, "gzip"):
            raise PalletError(f"cannot stream {compression} layers")
        reader = path if compression is None else _ZlibReader(path, threaded=True)
        try:
            yield reader
        finally:
            if compression:
                reader.close()
        return
    if compression is None:
        with open(path, "rb") as handle:
            yield handle
        return
    tool = {"gzip": "gzip", "zstd": "zstd"}.get(compression)
    if tool is None:
        raise PalletError(f'unsupported layer compression "{compression}"')
    if compression == "gzip" and os.environ.get("PALLET_GZIP") != "gzip-command":
        with open(path, "rb") as handle:
            reader = _ZlibReader(handle, threaded=True)
            try:
                yield reader
            finally:
                reader.close()
        return
    if not shutil.which(tool):
        raise PalletError(f"{compression} layers need the {tool} command, which is not installed")
    with open(path, "rb") as source:
        proc = subprocess.Popen([tool, "-dc"], stdin=source, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=1 << 20)
    failure: BaseException | None = None
    try:
        yield proc.stdout
        # Read to the end so a truncated or corrupt tail is reported by the decoder.
        while proc.stdout.read(1 << 20):
            pass
    except BaseException as exc:
        failure = exc
    proc.stdout.close()
    err = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    code = proc.wait()
    # A decoder failure explains a tar error that follows from it; SIGPIPE only means we stopped reading.
    if code not in (0, -13) and not isinstance(failure, KeyboardInterrupt):
        detail = err.splitlines()[-1] if err else f"exit {code}"
        raise PalletError(f"layer is corrupt or truncated ({compression}: {detail})") from failure
    if failure is not None:
        raise failure


@contextlib.contextmanager
def _zstd_stream(source) -> Iterator[BinaryIO]:
    """A zstandard reader over a blob path or an open stream; decoder failures become PalletError."""
    zstandard = zstd_module()
    handle = open(source, "rb") if isinstance(source, (str, Path)) else source
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(handle, read_size=1 << 20, read_across_frames=True,
                                                            closefd=False)
        yield _ZstdErrors(reader, zstandard.ZstdError)
    finally:
        if handle is not source:
            handle.close()


class _ZstdErrors:
    """Pass reads through, turning the decoder's errors into one clear PalletError."""

    def __init__(self, reader, error):
        self.reader, self.error = reader, error

    def read(self, n: int = -1) -> bytes:
        try:
            return self.reader.read(n)
        except self.error as exc:
            raise PalletError(f"layer is corrupt or truncated (zstd: {exc})") from None
