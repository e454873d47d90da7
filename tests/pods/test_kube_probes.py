"""``httpGet`` and ``tcpSocket`` probes of ``kube play``, run from outside the container in the pod's network
namespace (busybox's httpd has no wget of its own to lean on): a path that exists keeps the container
healthy, a 404 or a port nobody listens on makes the liveness probe restart it."""

from __future__ import annotations

import json

from tests.pods.test_pods import SERVE, cli  # noqa: F401  (the fixture)
from tests.services.conftest import eventually

POD = """
apiVersion: v1
kind: Pod
metadata: {name: %(name)s}
spec:
  containers:
  - name: app
    image: busybox
    command: [sh, -c, "%(command)s"]
    ports: [{name: web, containerPort: 8080}]
    livenessProbe:
      %(probe)s
      periodSeconds: 1
      timeoutSeconds: 2
      failureThreshold: %(threshold)d
"""


def inspect(cli, name: str) -> dict:
    return json.loads(cli("inspect", name, check=True).stdout)[0]


def play(cli, name: str, probe: str, command: str = SERVE, threshold: int = 1) -> str:
    doc = POD % {"name": name, "command": command, "probe": probe, "threshold": threshold}
    cli("kube", "play", "-", input=doc, check=True)
    return doc


def health(cli, name: str) -> dict:
    return inspect(cli, name)["State"].get("Health") or {}


def test_an_http_get_probe_on_a_path_that_exists_keeps_the_container_healthy(cli):
    doc = play(cli, "hok", "httpGet: {path: /index.html, port: web, httpHeaders: [{name: X-Probe, value: on-1}]}")
    three = eventually(lambda: len([r for r in health(cli, "hok-app").get("Log", []) if r["ExitCode"] == 0]) >= 3)
    assert three, f"three passing probes: {health(cli, 'hok-app')}"
    state = inspect(cli, "hok-app")
    assert state["State"]["Health"]["Status"] == "healthy"
    assert all(r["ExitCode"] == 0 for r in state["State"]["Health"]["Log"]), state["State"]["Health"]
    assert "HTTP 200" in state["State"]["Health"]["Log"][-1]["Output"]
    assert state["RestartCount"] == 0
    assert state["Config"]["Healthcheck"]["Test"][:2] == ["HTTP-GET", "http://localhost:8080/index.html"]
    cli("kube", "down", "-", input=doc, check=True)


def test_an_http_get_probe_answered_404_restarts_the_container(cli):
    doc = play(cli, "h404", "httpGet: {path: /missing, port: 8080}")
    restarted = eventually(lambda: inspect(cli, "h404-app")["RestartCount"] >= 1, timeout=60)
    assert restarted, f"the 404 made the liveness probe fail: {health(cli, 'h404-app')}"
    failed = [r for r in health(cli, "h404-app")["Log"] if r["ExitCode"] != 0]
    assert failed and "HTTP 404" in failed[-1]["Output"], health(cli, "h404-app")
    cli("kube", "down", "-", input=doc, check=True)


def test_a_tcp_socket_probe_on_a_closed_port_restarts_the_container(cli):
    doc = play(cli, "tcp", "tcpSocket: {port: 9999}", command="exec sleep 300")
    restarted = eventually(lambda: inspect(cli, "tcp-app")["RestartCount"] >= 1, timeout=60)
    assert restarted, f"nothing listens on 9999, so the probe failed: {health(cli, 'tcp-app')}"
    assert "refused" in health(cli, "tcp-app")["Log"][-1]["Output"].lower() or \
        any("refused" in r["Output"].lower() for r in health(cli, "tcp-app")["Log"])
    cli("kube", "down", "-", input=doc, check=True)


def test_a_tcp_socket_probe_on_the_httpds_port_passes(cli):
    doc = play(cli, "tok", "tcpSocket: {port: web}", threshold=3)
    healthy = eventually(lambda: health(cli, "tok-app").get("Status") == "healthy")
    assert healthy, health(cli, "tok-app")
    assert inspect(cli, "tok-app")["RestartCount"] == 0
    cli("kube", "down", "-", input=doc, check=True)


def test_a_probe_on_an_unknown_named_port_is_an_error_naming_the_field(cli):
    doc = POD % {"name": "bad", "command": "true", "probe": "httpGet: {path: /, port: nope}", "threshold": 1}
    result = cli("kube", "play", "-", input=doc)
    assert result.returncode != 0
    assert "spec.containers[0].livenessProbe.httpGet.port" in result.stderr and "nope" in result.stderr
    assert "Traceback" not in result.stderr
    assert cli("ps", "-aq").stdout.strip() == ""


def test_http_get_sends_the_probes_headers_and_takes_a_redirect_as_a_pass():
    import http.server
    import threading

    from pallet.kernel.health import http_get

    seen = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            seen.update(self.headers)
            self.send_response(302 if self.path == "/moved" else 500)
            self.send_header("Location", "/elsewhere")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        code, output = http_get(f"http://127.0.0.1:{port}/moved", ["X-Probe: on-1", "Host: example.test"], 5)
        assert (code, output.splitlines()[0]) == (0, "HTTP 302 Found"), "3xx passes, not followed"
        assert seen["X-Probe"] == "on-1" and seen["Host"] == "example.test"
        code, output = http_get(f"http://127.0.0.1:{port}/broken", [], 5)
        assert code == 1 and output.startswith("HTTP 500")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
