"""docker transport: OCI distribution v2 registries (docker://HOST/REPO:TAG).

Pull: manifest (index resolved for the platform), config, then the missing layer blobs in
parallel threads; each layer is unpacked as soon as it and the ones below it are stored.
Push: blobs the registry lacks (cross-repo mount when the image came from another
repository of the same registry), then the manifest.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Transport
from pallet.kernel.errors import PalletError
from pallet.kernel.images import manifest as mf
from pallet.kernel.images import reference as refs
from pallet.kernel.images.blobs import sha256_digest
from pallet.kernel.images.progress import Quiet

PARALLEL_DOWNLOADS = 4


MAX_CONFIG = 8 << 20   # bytes of an image config (it is parsed in memory)

class _Download:
    """One layer download that the unpacker may follow while it is written (tail of a growing temp file)."""

    def __init__(self, store, digest: str):
        self.store, self.digest = store, digest
        self.cond = threading.Condition()
        self.path: str | None = None
        self.written = 0
        self.finished = False
        self.error: BaseException | None = None

    def opened(self, path: str) -> None:
        with self.cond:
            self.path = path
            self.cond.notify_all()

    def advanced(self, amount: int) -> None:
        with self.cond:
            self.written += amount
            self.cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            if self.finished:
                return
            self.finished, self.error = True, error
            self.cond.notify_all()

    def reader(self):
        return _Follow(self)


class _Follow:
    """Reads what a :class:`_Download` has written so far; EOF only once the blob was verified."""

    def __init__(self, download: _Download):
        self.download = download
        self.handle = None
        self.offset = 0

    def read(self, n: int = -1) -> bytes:
        d = self.download
        with d.cond:
            while True:
                if d.error is not None:
                    raise d.error
                if self.handle is None and d.path is not None:
                    try:
                        # Opened before the rename, the handle keeps reading the same file afterwards.
                        self.handle = open(d.path, "rb") if not d.finished else d.store.blobs.open(d.digest)
                    except FileNotFoundError:   # renamed or removed just now: finish() follows
                        while not d.finished:
                            d.cond.wait()
                        continue
                available = d.written - self.offset
                if self.handle is not None and available > 0:
                    break
                if d.finished and self.handle is not None:
                    return b""
                d.cond.wait()
        data = self.handle.read(available if n < 0 else min(n, available))
        self.offset += len(data)
        return data

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


class DockerTransport(Transport):
    description = "OCI distribution v2 registries (docker://HOST/REPO:TAG)"

    @classmethod
    def probe(cls, home=None, options=None):
        import importlib.util
        if importlib.util.find_spec("httpx") is None:
            return Availability.no("the httpx Python package is not installed")
        return Availability.ok()

    def _client(self, ref, insecure: bool = False):
        """A client for ``ref``'s registry; ``options["credentials"]`` (host -> (user, password), what an API
        client sent) wins over the auth files."""
        from pallet.kernel.images.registry import RegistryClient
        credentials = (self.options.get("credentials") or {}).get(ref.domain)
        return RegistryClient(self.context.config, ref.domain,
                              tls_verify=self.options.get("tls_verify", True) and not insecure,
                              credentials=credentials)

    # --- reading ------------------------------------------------------------------------
    def _fetch_manifest(self, client, ref) -> tuple[bytes, str, bytes | None, str | None]:
        """(manifest bytes, digest, index bytes or None, index digest or None), every digest checked."""
        from pallet.kernel.images.registry import RegistryError

        data, content_type = client.get_manifest(ref.path, ref.reference, mf.ACCEPT)
        digest = sha256_digest(data)
        if ref.digest and digest != ref.digest:
            raise RegistryError(f"manifest digest mismatch: asked for {ref.digest}, registry sent {digest}")
        media_type = mf.media_type_of(data, content_type)
        if media_type not in mf.INDEXES:
            return data, digest, None, None
        entry = mf.select_platform(mf.parse_index(data), mf.parse_platform(self.options.get("platform")))
        child, child_type = client.get_manifest(ref.path, entry.digest, mf.ACCEPT)
        if sha256_digest(child) != entry.digest:
            raise RegistryError(f"manifest digest mismatch: index lists {entry.digest}, registry sent "
                              f"{sha256_digest(child)}")
        return child, entry.digest, data, digest

    def resolve(self, location: str) -> str:
        ref = refs.parse(location)
        client = self._client(ref)
        try:
            data, _ = client.get_manifest(ref.path, ref.reference, mf.ACCEPT)
            return sha256_digest(data)
        finally:
            client.close()

    def list_tags(self, location: str) -> list[str]:
        ref = refs.parse(location, default_tag=False)
        client = self._client(ref)
        try:
            return client.list_tags(ref.path)
        finally:
            client.close()

    def pull(self, location: str, store, progress=None) -> str:
        progress = progress or Quiet()
        typed = refs.parse(location, default_tag=False)
        ref = refs.parse(location)
        if typed.tag is None and typed.digest is None:
            progress.message(f"Using default tag: {ref.tag}")
        from pallet.kernel.images.mirrors import sources
        from pallet.kernel.images.registry import RegistryError

        for source in sources(self.context.config, ref):
            try:
                return self._pull_from(source, ref, store, progress)
            except RegistryError:
                if not source.mirror:
                    raise
        raise AssertionError("the registry itself is always the last source")

    def _pull_from(self, source, ref, store, progress) -> str:
        """Pull ``ref`` reading from ``source`` (a mirror or the registry); it is stored under ``ref``'s name."""
        client = self._client(source.ref, source.insecure)
        try:
            with store.transaction() as txn:
                manifest_bytes, manifest_digest, index_bytes, index_digest = self._fetch_manifest(client,
                                                                                                   source.ref)
                # After the manifest, as Docker: an unknown image or refused credentials fail before any output.
                progress.message(f"{ref.reference}: Pulling from {ref.path}")
                manifest = mf.parse_manifest(manifest_bytes)
                present = store.blobs.has(manifest_digest) and all(store.blobs.has(d.digest) for d in manifest.layers)
                if ref.tag:   # Docker's "up to date": the tag already named this image, not just its blobs are here
                    present = present and store.tags().get(str(ref)) == manifest.config.digest
                if index_bytes is not None:
                    txn.put_bytes(index_bytes, index_digest)
                txn.put_bytes(manifest_bytes, manifest_digest)
                if not txn.has_blob(manifest.config.digest):
                    if manifest.config.size > MAX_CONFIG:   # read into memory later: capped like a manifest
                        raise PalletError(f"image config {manifest.config.digest} is too large: "
                                          f"{manifest.config.size} bytes (limit {MAX_CONFIG})")
                    self._download(client, source.ref, txn, manifest.config, None)
                futures = self._start_downloads(client, source.ref, txn, manifest.layers, progress)
                try:
                    record = store.add_image(txn, manifest_digest, [ref] if ref.tag else [], index_digest,
                                             [ref.name], ready=lambda i: self._ready(futures[i], manifest.layers[i]),
                                             progress=progress)
                    for future in futures:
                        if future is not None:
                            future[0].result()
                finally:
                    self._cancel(futures)
        finally:
            client.close()
        progress.message(f"Digest: {index_digest or manifest_digest}")
        status = "Image is up to date for" if present else "Downloaded newer image for"
        progress.message(f"Status: {status} {ref.familiar()}")
        return record.id

    def _start_downloads(self, client, ref, txn, layers, progress) -> list:
        executor = ThreadPoolExecutor(max_workers=PARALLEL_DOWNLOADS, thread_name_prefix="pull")
        self._executor, self._stop = executor, threading.Event()
        futures = []
        for layer in layers:
            key = layer.digest.split(":", 1)[1][:12]
            if txn.has_blob(layer.digest):
                progress.finish(key, "Already exists")
                futures.append(None)
            else:
                progress.start(key, layer.size, "Pulling fs layer")
                download = _Download(txn.store, layer.digest)
                futures.append((executor.submit(self._download, client, ref, txn, layer, progress, download),
                                download))
        executor.shutdown(wait=False)
        return futures

    @staticmethod
    def _ready(future, descriptor):
        """None when the layer's blob is stored; else a stream following its download (when its compression
        can be decoded in-process: plain, gzip, zstd with the ``zstandard`` package)."""
        if future is None:
            return None
        task, download = future
        from pallet.kernel.images.layers import streamable

        if task.done() or not streamable(mf.LAYER_COMPRESSION.get(descriptor.media_type)):
            task.result()
            return None
        return download.reader()

    def _cancel(self, futures) -> None:
        self._stop.set()
        for future in futures:
            if future is not None:
                future[0].cancel()
                future[1].finish(PalletError("pull cancelled"))
        self._executor.shutdown(wait=True)

    def _download(self, client, ref, txn, descriptor, progress, download=None) -> None:
        try:
            self._fetch(client, ref, txn, descriptor, progress, download)
        except BaseException as exc:
            if download is not None:
                download.finish(exc)
            raise
        if download is not None:
            download.finish()

    def _fetch(self, client, ref, txn, descriptor, progress, download) -> None:
        key = descriptor.digest.split(":", 1)[1][:12]
        response = client.download_blob(ref.path, descriptor.digest)
        stop = getattr(self, "_stop", None)

        def chunks():
            # As the socket delivers them (~64 KiB): httpx re-chunking to 1 MiB joins pieces over and over,
            # 169 -> 81 ms for one 25 MB blob here.
            for chunk in response.iter_raw():
                if stop is not None and stop.is_set():
                    raise PalletError("pull interrupted")
                yield chunk

        try:
            def advanced(n):
                if download is not None:
                    download.advanced(n)
                if progress:
                    progress.advance(key, n)

            txn.ingest(chunks(), descriptor.digest, descriptor.size, advanced,
                       download.opened if download is not None else None)
        finally:
            response.close()
        if progress:
            progress.finish(key, "Download complete")

    # --- writing ------------------------------------------------------------------------
    def push(self, image_id: str, location: str, store, progress=None) -> str:
        progress = progress or Quiet()
        ref = refs.parse(location)
        record = store.load(image_id)
        manifest_bytes = store.blobs.read(record.manifest_digest)
        manifest = mf.parse_manifest(manifest_bytes)
        progress.message(f"The push refers to repository [{ref.name}]")
        sources = [refs.parse(e.split("@")[0], default_tag=False) for e in record.repo_digests]
        mount_from = next((s.path for s in sources if s.domain == ref.domain and s.path != ref.path), None)
        scope = f"repository:{ref.path}:pull,push" + (f" repository:{mount_from}:pull" if mount_from else "")
        client = self._client(ref)
        try:
            for descriptor in [*manifest.layers, manifest.config]:
                self._push_blob(client, ref, store, descriptor, scope, mount_from, progress)
            pushed = client.put_manifest(ref.path, ref.reference, manifest_bytes, manifest.media_type, scope)
        finally:
            client.close()
        if pushed and pushed != record.manifest_digest:
            raise PalletError(f"registry stored the manifest as {pushed}, expected {record.manifest_digest}")
        store.add_repo_digest(record.id, f"{ref.name}@{record.manifest_digest}")
        progress.message(f"{ref.reference}: digest: {record.manifest_digest} size: {len(manifest_bytes)}")
        return record.manifest_digest

    def _push_blob(self, client, ref, store, descriptor, scope, mount_from, progress) -> None:
        key = descriptor.digest.split(":", 1)[1][:12]
        if client.has_blob(ref.path, descriptor.digest, scope):
            progress.finish(key, "Layer already exists")
            return
        if mount_from and client.mount_blob(ref.path, descriptor.digest, mount_from, scope):
            progress.finish(key, f"Mounted from {mount_from}")
            return
        progress.start(key, descriptor.size, "Pushing")
        with store.blobs.open(descriptor.digest) as source:
            client.upload_blob(ref.path, descriptor.digest, source, descriptor.size, scope,
                               lambda n: progress.advance(key, n))
        progress.finish(key, "Pushed")


@hookimpl
def pallet_register_transports(register):
    register("docker", DockerTransport)
