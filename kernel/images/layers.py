"""Layer helpers: chain ids, decompressing a stored blob into an uncompressed tar stream, hashing readers.

Decompression runs in a ``gzip -dc`` / ``zstd -dc`` child so it uses the second core while
Python extracts the tar (measured in bench/bench_pull.py: faster than zlib in-process on
this 2-core machine). ``PALLET_GZIP=zlib`` forces the in-process decoder.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

from kernel.errors import PalletError


def chain_ids(diff_ids: list[str]) -> list[str]:
    """OCI image-spec ChainID: ChainID(L0) = DiffID(L0); ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))."""
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

    def __init__(self, source: BinaryIO):
        self.source = source
        self.hasher = hashlib.sha256()
        self.count = 0

    def read(self, n: int = -1) -> bytes:
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


class _ZlibReader:
    """Streaming gzip decoder (handles concatenated members) used when no gzip binary is wanted."""

    def __init__(self, source: BinaryIO):
        self.source = source
        self.decoder = zlib.decompressobj(wbits=31)
        self.buffer = b""
        self.eof = False

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.buffer) < n):
            chunk = self.source.read(1 << 20)
            if not chunk:
                if not self.decoder.eof:
                    raise PalletError("layer is truncated: unexpected end of gzip stream")
                self.eof = True
                break
            self.buffer += self._feed(chunk)
        if n < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def _feed(self, chunk: bytes) -> bytes:
        try:
            out = self.decoder.decompress(chunk)
            while self.decoder.eof and self.decoder.unused_data:
                rest = self.decoder.unused_data
                self.decoder = zlib.decompressobj(wbits=31)
                out += self.decoder.decompress(rest)
        except zlib.error as exc:
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
def uncompressed(path: Path, compression: str | None) -> Iterator[BinaryIO]:
    """Yield a readable uncompressed stream of the blob at ``path``; a decoder failure raises PalletError."""
    if compression is None:
        with open(path, "rb") as handle:
            yield handle
        return
    tool = {"gzip": "gzip", "zstd": "zstd"}.get(compression)
    if tool is None:
        raise PalletError(f'unsupported layer compression "{compression}"')
    if compression == "gzip" and (os.environ.get("PALLET_GZIP") == "zlib" or not shutil.which("gzip")):
        with open(path, "rb") as handle:
            yield _ZlibReader(handle)
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
