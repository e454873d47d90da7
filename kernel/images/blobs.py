"""Content-addressed blobs (``blobs/sha256/<hex>``): a blob becomes visible only after its digest matched."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

from pallet.kernel import faults
from pallet.kernel.errors import PalletError
from pallet.kernel.fsutil import fsync_dir

CHUNK = 1 << 20


class DigestMismatch(PalletError):
    """Content did not hash to the digest it was announced with."""


def sha256_digest(data: bytes) -> str:
    import hashlib  # here, not at the top: OpenSSL's load is ~3 ms of every command
    return "sha256:" + hashlib.sha256(data).hexdigest()


def split_digest(digest: str) -> tuple[str, str]:
    algorithm, _, hex_part = digest.partition(":")
    if algorithm != "sha256" or len(hex_part) != 64 or any(c not in "0123456789abcdef" for c in hex_part):
        raise PalletError(f'unsupported or malformed digest "{digest}"')
    return algorithm, hex_part


class BlobStore:
    """Blobs under ``root/blobs/sha256``; temporary files under ``root/tmp`` on the same filesystem."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.dir = self.root / "blobs" / "sha256"
        self.tmp = self.root / "tmp"

    def path(self, digest: str) -> Path:
        return self.dir / split_digest(digest)[1]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def read(self, digest: str) -> bytes:
        try:
            return self.path(digest).read_bytes()
        except FileNotFoundError:
            raise PalletError(f"blob {digest} is missing from the image store") from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise PalletError(f"blob {digest} is missing from the image store") from None

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def digests(self) -> set[str]:
        if not self.dir.is_dir():
            return set()
        return {"sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64}

    def put_bytes(self, data: bytes, expected: str | None = None) -> str:
        return self.ingest([data], expected, len(data) if expected else None)

    def ingest(self, chunks: Iterable[bytes], expected: str | None = None, size: int | None = None,
               on_chunk: Callable[[int], None] | None = None, on_open: Callable[[str], None] | None = None) -> str:
        """Write ``chunks`` to a temp file, check size and digest, then rename into place; return the digest.

        With ``expected`` None the digest is computed and the blob stored under it (for
        content pallet produced itself). ``on_open(temp_path)`` lets a reader follow the
        file while it is written (each chunk is flushed before ``on_chunk`` reports it).
        """
        tmp, digest = self.stage(chunks, expected, size, on_chunk, on_open)
        try:
            self.adopt(tmp, digest)
            return digest
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def stage(self, chunks: Iterable[bytes], expected: str | None = None, size: int | None = None,
              on_chunk: Callable[[int], None] | None = None,
              on_open: Callable[[str], None] | None = None) -> tuple[str, str]:
        """Write and verify ``chunks`` into a temp file (synced) but do not publish it: ``(temp path, digest)``.

        Needs no store lock (a commit compresses its layer here, then locks only for :meth:`adopt`);
        the temp name carries the pid, so the debris of a killed writer is swept by name.
        """
        if expected:
            split_digest(expected)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix=f"blob-{os.getpid()}-")   # the pid: for sweeping
        if on_open:
            on_open(tmp)
        import hashlib  # here, not at the top: OpenSSL's load is ~3 ms of every command
        try:
            hasher = hashlib.sha256()
            written = 0
            with os.fdopen(fd, "wb") as handle:
                for chunk in chunks:
                    if size is not None and written + len(chunk) > size:
                        # Stop at the first byte past the declared size: a server streaming
                        # more than it announced must not fill the disk before the refusal.
                        raise DigestMismatch(f"blob {expected or 'being written'} is oversized: more than the "
                                             f"{size} bytes declared")
                    hasher.update(chunk)
                    handle.write(chunk)
                    if on_open:
                        handle.flush()
                    written += len(chunk)
                    if on_chunk:
                        on_chunk(len(chunk))
                handle.flush()
                os.fsync(handle.fileno())
            digest = "sha256:" + hasher.hexdigest()
            if size is not None and written != size:
                raise DigestMismatch(f"blob {expected or digest} is truncated or oversized: "
                                     f"got {written} bytes, expected {size}")
            if expected and digest != expected:
                raise DigestMismatch(f"digest mismatch: expected {expected}, got {digest}")
            os.chmod(tmp, 0o644)
            return tmp, digest
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def adopt(self, tmp: str, digest: str) -> None:
        """Publish a temp file from :meth:`stage` as blob ``digest`` (a rename; the caller holds the lock)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        faults.point("blob.before-rename")
        os.replace(tmp, self.path(digest))
        fsync_dir(self.dir)

    def ingest_file(self, source: BinaryIO, expected: str | None = None, size: int | None = None,
                    on_chunk: Callable[[int], None] | None = None) -> str:
        return self.ingest(iter(lambda: source.read(CHUNK), b""), expected, size, on_chunk)

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()
