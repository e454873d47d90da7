"""``-H tcp://`` with mutual TLS: the docker CLI with the CA's client certificate works; others are refused."""

from __future__ import annotations

import socket
import ssl
import subprocess
import sys
import time

from tests.conftest import REPO


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(directory):
    """A CA, a server certificate for 127.0.0.1, a client certificate from the CA and one from a stranger."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
             "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=directory)
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    (directory / "client.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "ext.cnf"), ("client", "client.cnf")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}-key.pem",
                 "-out", f"{name}.csr", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
                 "-days", "1", "-extfile", ext, "-out", f"{name}.pem", cwd=directory)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=stranger",
             "-keyout", "stranger-key.pem", "-out", "stranger.pem", cwd=directory)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tls_tcp_accepts_the_cas_clients_and_refuses_others(bb, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    _certificates(certs)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root), "serve",
         "-H", f"tcp://127.0.0.1:{port}", "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
         "--tlscert", str(certs / "server.pem"), "--tlskey", str(certs / "server-key.pem")],
        cwd=str(REPO), env=bb.env, stderr=subprocess.PIPE, text=True)
    try:
        while True:  # until it listens
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except ConnectionRefusedError:
                assert process.poll() is None, process.stderr.read()
                time.sleep(0.05)
        (certs / "key.pem").write_bytes((certs / "client-key.pem").read_bytes())
        (certs / "cert.pem").write_bytes((certs / "client.pem").read_bytes())
        env = {**bb.env, "DOCKER_HOST": f"tcp://127.0.0.1:{port}", "DOCKER_TLS_VERIFY": "1",
               "DOCKER_CERT_PATH": str(certs), "DOCKER_CONFIG": str(tmp_path / "docker-config")}
        result = subprocess.run(["docker", "version", "--format", "{{.Server.APIVersion}}"], capture_output=True,
                                text=True, env=env, timeout=60)
        assert (result.returncode, result.stdout) == (0, "1.47\n"), result.stderr
        for cert, key in (("stranger.pem", "stranger-key.pem"), (None, None)):
            context = ssl.create_default_context(cafile=str(certs / "ca.pem"))
            if cert:
                context.load_cert_chain(str(certs / cert), str(certs / key))
            refused = False
            try:
                with socket.create_connection(("127.0.0.1", port)) as raw:
                    with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                        tls.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
                        refused = tls.recv(100) == b""
            except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
                refused = True
            assert refused, f"a client with {cert or 'no certificate'} was served"
    finally:
        process.terminate()
        process.wait(60)
