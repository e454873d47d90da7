"""docker-compose 1.29 (Debian's, on python3-docker) against pallet serve: up -d, ps, logs, exec, down -v."""

from __future__ import annotations

import shutil
import subprocess

import pytest

COMPOSE = shutil.which("docker-compose") or "/usr/bin/docker-compose"

PROJECT = """
version: "3.7"
services:
  db:
    image: busybox
    command: ["sh", "-c", "echo db-up; exec sleep 1000"]
    volumes:
      - data:/data
  web:
    image: busybox
    command: ["sh", "-c", "ping -c1 -W2 db && echo web-up; exec sleep 1000"]
    depends_on: [db]
    environment:
      ROLE: web
volumes:
  data:
"""


def test_compose_up_ps_logs_exec_down(api, tmp_path):
    if not shutil.which("docker-compose"):
        pytest.fail("docker-compose is missing: scripts/setup.sh installs Debian's docker-compose")
    (tmp_path / "docker-compose.yml").write_text(PROJECT)

    def compose(*args):
        return subprocess.run([COMPOSE, "-p", "ptest", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env=api.env)

    try:
        up = compose("up", "-d")
        assert up.returncode == 0, up.stderr
        ps = compose("ps", "--services", "--filter", "status=running")
        assert sorted(ps.stdout.split()) == ["db", "web"], ps.stderr
        logs = compose("logs", "--no-color", "web")
        while "web-up" not in logs.stdout and "packets received" not in logs.stdout:
            logs = compose("logs", "--no-color", "web")
        assert "1 packets received" in logs.stdout  # web found db by its service name
        executed = compose("exec", "-T", "web", "sh", "-c", "echo exec-$ROLE")
        assert (executed.returncode, executed.stdout) == (0, "exec-web\n"), executed.stderr
        assert api.pallet("volume", "ls", "-q").stdout.split() == ["ptest_data"]
    finally:
        down = compose("down", "-v")
    assert down.returncode == 0, down.stderr
    assert api.pallet("ps", "-a", "-q").stdout == "" and api.pallet("volume", "ls", "-q").stdout == ""
    assert "ptest_default" not in api.pallet("network", "ls").stdout


BUILT = """
version: "3.7"
services:
  app:
    build: ./app
    image: ptest2-app:latest
    ports: ["{port}:8080"]
    env_file: app.env
    networks: [front]
  worker:
    image: busybox
    command: ["sh", "-c", "echo worker-$$WORKER_ROLE; exec sleep 1000"]
    env_file: worker.env
    networks: [front]
    depends_on: [app]
networks:
  front:
"""


def test_compose_build_ports_env_files_user_network_and_scale(api, tmp_path):
    import socket
    import urllib.request

    with socket.socket() as probe:  # a free host port for the published one
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Dockerfile").write_text(
        'FROM busybox\nRUN mkdir /www\nCOPY index.html /www/index.html\n'
        'CMD ["sh", "-c", "echo greeting=$GREETING > /www/env.txt; exec httpd -f -p 8080 -h /www"]\n')
    (tmp_path / "app" / "index.html").write_text("built-by-compose\n")
    (tmp_path / "app.env").write_text("GREETING=hello-from-env-file\n")
    (tmp_path / "worker.env").write_text("WORKER_ROLE=batch\n")
    (tmp_path / "docker-compose.yml").write_text(BUILT.format(port=port))

    def compose(*args, timeout=300):
        return subprocess.run([COMPOSE, "-p", "ptest2", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=timeout, env=api.env)

    try:
        up = compose("up", "-d", "--build")
        assert up.returncode == 0, up.stderr
        assert "ptest2-app:latest" in api.pallet("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=30) as reply:
            assert reply.read() == b"built-by-compose\n"  # the published port reaches the built image
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/env.txt", timeout=30) as reply:
            assert reply.read() == b"greeting=hello-from-env-file\n"
        fetched = compose("exec", "-T", "worker", "sh", "-c",
                          "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc app 8080")
        assert "built-by-compose" in fetched.stdout, fetched.stderr  # service-name DNS on the user network
        logs = compose("logs", "--no-color", "worker")
        while "worker-" not in logs.stdout:
            logs = compose("logs", "--no-color", "worker")
        assert "worker-batch" in logs.stdout
        scaled = compose("up", "-d", "--no-build", "--scale", "worker=3")
        assert scaled.returncode == 0, scaled.stderr
        assert len(compose("ps", "-q", "worker").stdout.split()) == 3
        assert "ptest2_front" in api.pallet("network", "ls", "--format", "{{.Name}}").stdout
    finally:
        down = compose("down", "-v", "--rmi", "local")
    assert down.returncode == 0, down.stderr
    assert api.pallet("ps", "-a", "-q").stdout == ""
    assert "ptest2_front" not in api.pallet("network", "ls").stdout
