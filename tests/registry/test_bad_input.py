"""Bad input: every failure is one clear error, a non-zero exit, and a store exactly as it was before."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest

from tests.images.conftest import snapshot
from tests.registry.conftest import layer_tar


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _upload(registry, repo: str, data: bytes) -> str:
    digest = _digest(data)
    start = urllib.request.Request(f"http://{registry.host}/v2/{repo}/blobs/uploads/", method="POST")
    location = urllib.request.urlopen(start).headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry.host}{location}"
    sep = "&" if "?" in location else "?"
    put = urllib.request.Request(f"{location}{sep}digest={digest}", method="PUT", data=data,
                                 headers={"Content-Type": "application/octet-stream"})
    assert urllib.request.urlopen(put).status == 201
    return digest


def push_raw(registry, repo: str, tag: str, layers: list[tuple[bytes, bytes, str]]) -> dict:
    """Push an image whose layers are (blob, uncompressed tar, media type); return the digests used."""
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [_digest(raw) for _, raw, _ in layers]}}
    config_bytes = json.dumps(config).encode()
    descriptors = [{"mediaType": media, "digest": _upload(registry, repo, blob), "size": len(blob)}
                   for blob, _, media in layers]
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": _upload(registry, repo, config_bytes), "size": len(config_bytes)},
                "layers": descriptors}
    put = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/{tag}", method="PUT",
                                 data=json.dumps(manifest).encode(),
                                 headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert urllib.request.urlopen(put).status == 201
    return {"layers": [d["digest"] for d in descriptors], "config": manifest["config"]["digest"]}


def blob_file(registry, digest: str) -> Path:
    hex_part = digest.split(":")[1]
    return registry.storage / "docker/registry/v2/blobs/sha256" / hex_part[:2] / hex_part / "data"


GOOD = layer_tar({"good.txt": b"good\n"})
TAR = "application/vnd.oci.image.layer.v1.tar"
GZ = "application/vnd.oci.image.layer.v1.tar+gzip"


@pytest.fixture(params=["vfs", "overlay2"])
def populated(request, rpallet):
    """A store (on each driver) that already holds busybox, so a failed pull must leave existing data alone too."""
    rpallet.env["PALLET_STORAGE_DRIVER"] = request.param
    rpallet("image", "build-busybox", check=True)
    return rpallet


def _fails_cleanly(p, name: str, expect: str) -> None:
    before = snapshot(p.root)
    result = p("pull", name)
    assert result.returncode == 1, result.stdout
    assert len(result.error_lines) == 1 and result.error_lines[0].startswith("Error: "), result.stderr
    assert expect in result.stderr
    assert "Traceback" not in result.stderr and "Status:" not in result.stdout
    assert name not in result.stdout.splitlines()
    assert snapshot(p.root) == before


def test_blob_with_wrong_digest(registry, populated):
    digests = push_raw(registry, "bad/digest", "t", [(GOOD, GOOD, TAR), (layer_tar({"x": b"x" * 100}),) * 2 + (TAR,)])
    path = blob_file(registry, digests["layers"][1])
    data = bytearray(path.read_bytes())
    data[600] ^= 0xFF
    path.write_bytes(bytes(data))
    _fails_cleanly(populated, f"{registry.host}/bad/digest:t", "digest mismatch")


def test_truncated_blob(registry, populated):
    digests = push_raw(registry, "bad/short", "t", [(GOOD, GOOD, TAR)])
    path = blob_file(registry, digests["layers"][0])
    path.write_bytes(path.read_bytes()[:700])
    _fails_cleanly(populated, f"{registry.host}/bad/short:t", "truncated")


# One layer is unpacked alone; two on overlay2 are unpacked at once (the parallel path), whose failure
# must read the same.
LEAD = pytest.mark.parametrize("lead", [[], [(GOOD, GOOD, TAR)]], ids=["one-layer", "second-layer"])


@LEAD
def test_truncated_gzip_layer_with_matching_digest(registry, populated, lead):
    raw = layer_tar({"big.bin": bytes(range(256)) * 400})
    cut = gzip.compress(raw)[:-200]
    push_raw(registry, "bad/gzip", "t", [*lead, (cut, raw, GZ)])
    _fails_cleanly(populated, f"{registry.host}/bad/gzip:t", "layer is truncated")


@LEAD
def test_layer_not_matching_its_diff_id(registry, populated, lead):
    other = layer_tar({"other.txt": b"not what the config says\n"})
    config_says = layer_tar({"good.txt": b"good\n"})
    push_raw(registry, "bad/diffid", "t", [*lead, (other, config_says, TAR)])
    _fails_cleanly(populated, f"{registry.host}/bad/diffid:t", "does not match its diff id")


def test_manifest_references_missing_blob(registry, populated):
    digests = push_raw(registry, "bad/missing", "t", [(GOOD, GOOD, TAR)])
    blob_file(registry, digests["layers"][0]).unlink()
    _fails_cleanly(populated, f"{registry.host}/bad/missing:t", "missing")


def _evil_tar(build) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        build(tar)
    return buffer.getvalue()


def _file(tar, name: str, data: bytes = b"pwned\n") -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _symlink(tar, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


@pytest.mark.parametrize("kind, build, expect", [
    ("traversal", lambda t, out: _file(t, "../../../../../../.." + str(out)), '".." components are refused'),
    ("absolute", lambda t, out: _file(t, str(out)), "absolute paths are refused"),
    ("symlink", lambda t, out: (_symlink(t, "escape", "../" * 30 + str(out.parent).lstrip("/")),
                                _file(t, f"escape/{out.name}")),
     "leads outside the layer"),
])
def test_malicious_layer_is_refused_and_rolled_back(registry, populated, tmp_path, kind, build, expect):
    outside = tmp_path / f"outside-{kind}"
    evil = _evil_tar(lambda tar: build(tar, outside))
    push_raw(registry, f"bad/{kind}", "t", [(GOOD, GOOD, TAR), (evil, evil, TAR)])
    _fails_cleanly(populated, f"{registry.host}/bad/{kind}:t", expect)
    assert not outside.exists()


class _Faulty(http.server.BaseHTTPRequestHandler):
    """A broken registry: HTML where JSON belongs, 500s for blobs."""

    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": "sha256:" + "1" * 64, "size": 2}, "layers": []}).encode()

    def log_message(self, *args):
        pass

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        html = b"<html><body><h1>Welcome to nginx!</h1></body></html>"
        if self.path == "/v2/":
            self._send(200, b"{}", "application/json")
        elif self.path.endswith("/manifests/html"):
            self._send(200, html, "text/html")
        elif self.path.endswith("/manifests/oops"):
            self._send(500, html, "text/html")
        elif "/manifests/" in self.path:
            self._send(200, self.manifest, "application/vnd.oci.image.manifest.v1+json")
        else:
            self._send(500, b'{"errors":[{"code":"UNKNOWN","message":"disk on fire"}]}', "application/json")


@pytest.fixture
def faulty():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Faulty)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("tag, expect", [
    ("html", "manifest is not valid JSON (starts with '<html>"),
    ("oops", "returned HTTP 500 for manifest"),
    ("blob500", "returned HTTP 500 for blob sha256:1111"),
])
def test_broken_registry_responses(faulty, populated, tag, expect):
    _fails_cleanly(populated, f"{faulty}/x/y:{tag}", expect)


def test_unreachable_registry(populated):
    from tests.registry.conftest import free_port
    _fails_cleanly(populated, f"127.0.0.1:{free_port()}/x/y:z", "cannot reach registry")


def test_oci_layout_with_missing_blob(populated, tmp_path):
    out = tmp_path / "layout"
    populated("push", "busybox", f"oci:{out}:t", check=True)
    index = json.loads((out / "index.json").read_text())
    manifest = json.loads((out / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_bytes())
    (out / "blobs/sha256" / manifest["layers"][0]["digest"].split(":")[1]).unlink()
    other = tmp_path / "other"
    other.mkdir()
    from tests.conftest import Pallet
    fresh = Pallet(other / "root", other / "run", env={"PALLET_STORAGE_DRIVER": "vfs"})
    (other / "keep.tar").write_bytes(GOOD)
    fresh("import", str(other / "keep.tar"), "keep:me", check=True)
    before = snapshot(fresh.root)
    result = fresh("pull", f"oci:{out}:t")
    assert result.returncode == 1 and "lacks blob" in result.stderr
    assert snapshot(fresh.root) == before


def test_zstd_layer_is_pulled(registry, rpallet, tmp_path):
    import subprocess
    raw = layer_tar({"z.txt": b"zstd layer\n"})
    packed = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True).stdout
    push_raw(registry, "ok/zstd", "t", [(packed, raw, "application/vnd.oci.image.layer.v1.tar+zstd")])
    name = f"{registry.host}/ok/zstd:t"
    rpallet("pull", name, check=True)
    doc = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    assert open(doc["GraphDriver"]["Data"]["Dir"] + "/z.txt").read() == "zstd layer\n"
