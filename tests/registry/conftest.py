"""Real peers for registry tests: Debian's docker-registry on a loopback port, test images made with umoci + skopeo."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import Pallet

REGISTRY = "/usr/bin/docker-registry"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Registry:
    port: int
    log: Path
    storage: Path
    user: str = ""
    password: str = ""
    tokens: object = None      # the TokenServer of a token-auth registry

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self, pattern: str) -> list[str]:
        """Access-log lines whose request matches ``pattern`` (e.g. ``GET /v2/x/blobs/``)."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines if re.search('"' + pattern, line)]


def _wait_ready(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            return
        except urllib.error.HTTPError:
            return  # 401 from an auth-protected registry: it is up
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("docker-registry did not start within 20 s")


def start_registry(tmp: Path, auth_yaml: str = "", extra_files=None):
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = tmp / "storage"
    log = tmp / "registry.log"
    config = tmp / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: false\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: pallet-test-{os.getpid()}\n"
        + auth_yaml)
    handle = open(log, "wb")
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=handle, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_ready(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        handle.close()
        raise
    return proc, handle, Registry(port, log, storage)


def stop_registry(proc, handle) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    handle.close()


@pytest.fixture
def registry(tmp_path):
    proc, handle, reg = start_registry(tmp_path / "registry")
    try:
        yield reg
    finally:
        stop_registry(proc, handle)


@pytest.fixture
def auth_registry(tmp_path):
    """A registry with htpasswd (bcrypt) basic auth: user ``tester``, password ``s3cret``."""
    htpasswd = tmp_path / "htpasswd"
    entry = subprocess.run(["htpasswd", "-Bbn", "tester", "s3cret"], capture_output=True, text=True, check=True)
    htpasswd.write_text(entry.stdout)
    auth = f"auth:\n  htpasswd:\n    realm: pallet-test\n    path: {htpasswd}\n"
    proc, handle, reg = start_registry(tmp_path / "registry", auth)
    reg.user, reg.password = "tester", "s3cret"
    try:
        yield reg
    finally:
        stop_registry(proc, handle)


@pytest.fixture
def rpallet(tmp_path) -> Pallet:
    """pallet on the vfs driver with a private auth file (never the user's real credentials)."""
    return Pallet(tmp_path / "root", tmp_path / "run", env={
        "PALLET_STORAGE_DRIVER": "vfs", "PALLET_AUTH_FILE": str(tmp_path / "auth.json"),
        "DOCKER_CONFIG": str(tmp_path / "docker-config")})


def layer_tar(files: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(name).parent) for name in files} - {"."})
        for name in dirs:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buffer.getvalue()


def umoci_image(workdir: Path, layers: list[bytes], tag: str = "t", cmd: str = "/bin/true") -> str:
    """An OCI layout built by umoci from uncompressed layer tars; returns ``oci:PATH:TAG``."""
    layout = workdir / "layout"
    if not layout.exists():
        subprocess.run(["umoci", "init", "--layout", str(layout)], check=True, capture_output=True)
    subprocess.run(["umoci", "new", "--image", f"{layout}:{tag}"], check=True, capture_output=True)
    for index, data in enumerate(layers):
        tar = workdir / f"layer-{tag}-{index}.tar"
        tar.write_bytes(data)
        subprocess.run(["umoci", "raw", "add-layer", "--image", f"{layout}:{tag}", str(tar)], check=True,
                       capture_output=True)
    subprocess.run(["umoci", "config", "--image", f"{layout}:{tag}", "--config.cmd", cmd,
                    "--config.env", "FROM_UMOCI=1"], check=True, capture_output=True)
    return f"oci:{layout}:{tag}"


def skopeo(*args: str) -> subprocess.CompletedProcess:
    cmd = ["skopeo", "--insecure-policy", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {proc.stderr}")
    return proc


def pull_killed_at(p: Pallet, name: str, marker: str = "Pull complete") -> list[str]:
    """Run ``pallet pull NAME`` and ``kill -9`` it at the first output line containing ``marker``;
    return the lines it printed up to there."""
    import signal
    import sys

    from tests.conftest import REPO
    argv = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(p.root), "--run-root", str(p.run_root),
            "pull", name]
    proc = subprocess.Popen(argv, cwd=REPO, env=p.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    return seen


def push_with_skopeo(source: str, registry: Registry, name: str, *extra: str) -> None:
    creds = ["--dest-creds", f"{registry.user}:{registry.password}"] if registry.user else []
    skopeo("copy", "--dest-tls-verify=false", *creds, *extra, source, f"docker://{registry.host}/{name}")


# --- Bearer token auth: the real registry verifies JWTs a small token server signs -------

def _b64url(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry JWTs (RS256, x5c header) to ``tester``/``s3cret``; signs with the openssl command."""

    def __init__(self, workdir: Path, service: str, issuer: str):
        self.key = workdir / "token-key.pem"
        self.cert = workdir / "token-cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(self.key),
                        "-out", str(self.cert), "-days", "1", "-subj", "/CN=pallet-test-token"],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        import base64
        self.x5c = base64.b64encode(der).decode()
        self.service, self.issuer = service, issuer
        self.issued: list[str] = []
        self.refused = 0

    def token(self, scopes: list[str]) -> str:
        import json as _json
        now = int(time.time())
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else (scope, "", "")
            access.append({"type": kind, "name": name, "actions": actions.split(",") if actions else []})
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": "tester", "aud": self.service, "exp": now + 300, "nbf": now - 10,
                  "iat": now, "jti": os.urandom(8).hex(), "access": access}
        signing_input = f"{_b64url(_json.dumps(header).encode())}.{_b64url(_json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        self.issued.extend(scopes)
        return f"{signing_input}.{_b64url(signature)}"

    def serve(self):
        import base64
        import http.server
        import json as _json
        import threading
        from urllib.parse import parse_qs, urlparse

        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                query = parse_qs(urlparse(self.path).query)
                given = self.headers.get("Authorization", "")
                expected = "Basic " + base64.b64encode(b"tester:s3cret").decode()
                if given != expected or query.get("service") != [owner.service]:
                    owner.refused += 1
                    body, code = b'{"details":"incorrect username or password"}', 401
                else:
                    token = owner.token(query.get("scope", []))
                    body, code = _json.dumps({"token": token, "access_token": token, "expires_in": 300}).encode(), 200
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server


@pytest.fixture
def token_registry(tmp_path):
    """The real registry with ``auth: token`` trusting a token server started here."""
    workdir = tmp_path / "token"
    workdir.mkdir()
    tokens = TokenServer(workdir, "pallet-test-registry", "pallet-test-issuer")
    server = tokens.serve()
    realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    auth = (f"auth:\n  token:\n    realm: {realm}\n    service: {tokens.service}\n    issuer: {tokens.issuer}\n"
            f"    rootcertbundle: {tokens.cert}\n")
    try:
        proc, handle, reg = start_registry(tmp_path / "registry", auth)
        reg.user, reg.password = "tester", "s3cret"
        reg.tokens = tokens
        try:
            yield reg
        finally:
            stop_registry(proc, handle)
    finally:
        server.shutdown()
        server.server_close()
