"""Defect 5: a registry cannot fill the disk or the memory: a blob is refused at the first byte past
its declared size, a manifest past the distribution spec's 4 MiB."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading

import pytest

CONFIG = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/true"]},
                     "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "2" * 64]}}).encode()
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
LAYER_DIGEST = "sha256:" + "3" * 64
FLOOD = 256 << 20      # what the liar would send for a blob announced as 100 bytes
CHUNK = 64 << 10


def _manifest() -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                  "digest": CONFIG_DIGEST, "size": len(CONFIG)},
                       "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": LAYER_DIGEST, "size": 100}]}).encode()


class _Liar(http.server.BaseHTTPRequestHandler):
    sent = {"flood": 0}

    def log_message(self, *args):
        pass

    def _head(self, code: int, kind: str, length: int | None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()

    def _stream(self, total: int, key: str | None = None) -> None:
        try:
            while total > 0:
                self.wfile.write(b"\0" * min(CHUNK, total))
                total -= CHUNK
                if key:
                    self.sent[key] += CHUNK
        except OSError:
            pass   # the client hung up: what we want

    def do_GET(self):
        manifest_type = "application/vnd.oci.image.manifest.v1+json"
        if self.path == "/v2/":
            self._head(200, "application/json", 2)
            self.wfile.write(b"{}")
        elif self.path.endswith("/manifests/huge"):
            self._head(200, manifest_type, None)    # no length announced: the cap must still hold
            self._stream(64 << 20)
        elif "/manifests/" in self.path:
            body = _manifest()
            self._head(200, manifest_type, len(body))
            self.wfile.write(body)
        elif self.path.endswith(CONFIG_DIGEST):
            self._head(200, "application/octet-stream", len(CONFIG))
            self.wfile.write(CONFIG)
        else:
            self._head(200, "application/octet-stream", None)
            self._stream(FLOOD, "flood")


@pytest.fixture
def liar():
    _Liar.sent["flood"] = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Liar)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _tmp_size(bb) -> int:
    tmp = bb.root / "images" / "tmp"
    return sum(p.stat().st_size for p in tmp.iterdir()) if tmp.is_dir() else 0


def test_blob_longer_than_declared_is_cut_at_the_first_extra_byte(bb, liar):
    result = bb("pull", f"{liar}/x/y:t")
    assert result.returncode == 1
    assert len(result.error_lines) == 1 and "oversized: more than the 100 bytes declared" in result.stderr, \
        result.stderr
    assert _tmp_size(bb) == 0
    # The client stopped reading at once: the server got rid of a few socket buffers, not 256 MiB.
    assert _Liar.sent["flood"] < 32 << 20
    assert bb("system", "check").returncode == 0


def test_manifest_over_4_mib_is_refused(bb, liar):
    result = bb("pull", f"{liar}/x/y:huge")
    assert result.returncode == 1
    assert result.error_lines == [f"Error: manifest x/y:huge from {liar} is too large: more than 4194304 bytes"]
