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
