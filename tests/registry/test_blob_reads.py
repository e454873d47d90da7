"""How a pull reads blobs: straight with ``http.client`` after redirects (credentials never follow a
redirect to another host), and through httpx — so through the proxy — when one is configured."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
from contextlib import contextmanager
from urllib.parse import urlsplit

from tests.registry.conftest import layer_tar, push_with_skopeo, umoci_image


@contextmanager
def serving(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _relay(handler, host: str, port: int, path: str, headers: dict) -> None:
    """Send the request on to HOST:PORT and the answer back, body included (GET and HEAD)."""
    upstream = http.client.HTTPConnection(host, port, timeout=30)
    try:
        upstream.request(handler.command, path, headers=headers)
        answer = upstream.getresponse()
        body = answer.read()
        handler.send_response(answer.status)
        for key, value in answer.getheaders():
            if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)
    finally:
        upstream.close()


def _pushed(registry, tmp_path, name: str) -> None:
    source = umoci_image(tmp_path, [layer_tar({"srv/one.txt": b"one\n"}), layer_tar({"srv/two.txt": b"two\n" * 5000})])
    push_with_skopeo(source, registry, name)


def test_blobs_behind_a_redirect_to_another_host_arrive_without_the_credentials(registry, rpallet, tmp_path):
    """A front that wants Basic auth answers the API itself and sends blob GETs to a storage host (as a
    registry on S3 or behind a CDN does); the storage host must never see the registry's credentials."""
    _pushed(registry, tmp_path, "test/redirected:t")
    reg_port = int(registry.host.rsplit(":", 1)[1])
    seen = {"front": [], "storage": []}

    class Storage(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen["storage"].append((self.path, self.headers.get("Authorization")))
            _relay(self, "127.0.0.1", reg_port, self.path, {})

    with serving(Storage) as storage_port:
        class Front(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                authorization = self.headers.get("Authorization") or ""
                seen["front"].append((self.path, authorization))
                if not authorization.startswith("Basic "):
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="front"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif "/blobs/" in self.path:
                    self.send_response(307)   # another host: localhost, not 127.0.0.1
                    self.send_header("Location", f"http://localhost:{storage_port}{self.path}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    _relay(self, "127.0.0.1", reg_port, self.path, {"Accept": self.headers.get("Accept", "*/*")})

            do_HEAD = do_GET

        with serving(Front) as front_port:
            front = f"127.0.0.1:{front_port}"
            (tmp_path / "auth.json").write_text(json.dumps(
                {"auths": {front: {"auth": base64.b64encode(b"tester:s3cret").decode()}}}))
            name = f"{front}/test/redirected:t"
            rpallet("pull", name, check=True)
            rootfs = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]["GraphDriver"]["Data"]["Dir"]
            assert open(f"{rootfs}/srv/two.txt").read() == "two\n" * 5000

    front_blobs = [path for path, authorization in seen["front"] if "/blobs/" in path]
    assert len(front_blobs) == 3 and all(a.startswith("Basic ") for p, a in seen["front"] if "/blobs/" in p)
    assert sorted(path for path, _ in seen["storage"]) == sorted(front_blobs)
    assert [authorization for _, authorization in seen["storage"]] == [None, None, None]


def test_with_a_proxy_configured_every_blob_goes_through_it(registry, rpallet, tmp_path):
    _pushed(registry, tmp_path, "test/proxied:t")
    relayed = []

    class Proxy(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            target = urlsplit(self.path)   # a proxy gets the absolute URL
            relayed.append(target.path)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "proxy-connection")}
            _relay(self, target.hostname, target.port, target.path + (f"?{target.query}" if target.query else ""),
                   headers)

        do_HEAD = do_GET

    with serving(Proxy) as proxy_port:
        env = {"http_proxy": f"http://127.0.0.1:{proxy_port}", "no_proxy": "", "NO_PROXY": ""}
        rpallet("pull", f"{registry.host}/test/proxied:t", env=env, check=True)
    assert len([path for path in relayed if "/blobs/sha256:" in path]) == 3, relayed
