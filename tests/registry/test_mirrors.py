"""Registry mirrors against real docker-registry peers on loopback: Docker Hub short names served by a
mirror (no internet is reached), per-registry mirrors with fallback to the registry, blocked prefixes."""

from __future__ import annotations

import contextlib

import pytest

from tests.containers.conftest import bb  # noqa: F401  (a private root holding busybox:latest)
from tests.registry.conftest import free_port, start_registry, stop_registry


@contextlib.contextmanager
def registries(tmp_path, *names):
    started = []
    try:
        for name in names:
            started.append(start_registry(tmp_path / name))
        yield [reg for _proc, _handle, reg in started]
    finally:
        for proc, handle, _reg in started:
            stop_registry(proc, handle)


def configure(pallet, text: str) -> None:
    """Append ``text`` to the root's pallet.toml (the fixture's network settings stay)."""
    path = pallet.root.parent / "pallet.toml"
    path.write_text(path.read_text() + "\n" + text)


def test_short_names_pull_through_the_docker_hub_mirrors_in_order(bb, tmp_path):  # noqa: F811
    with registries(tmp_path, "mirror") as (mirror,):
        for name in ("library/busybox:latest", "library/alpine:3.10"):
            bb("push", "busybox", f"{mirror.host}/{name}", check=True)
        dead = f"http://127.0.0.1:{free_port()}"   # nothing listens there: the next mirror is tried
        configure(bb, f'[registries]\nmirrors = ["{dead}", "http://{mirror.host}"]\n')
        bb("rmi", "busybox", check=True)
        pulled = bb("pull", "busybox")
        assert pulled.returncode == 0, pulled.stderr
        assert "Status: Downloaded newer image for busybox:latest" in pulled.stdout
        assert pulled.stdout.strip().endswith("docker.io/library/busybox:latest")
        alpine = bb("pull", "alpine:3.10")
        assert alpine.returncode == 0, alpine.stderr
        assert mirror.requests(r"GET /v2/library/alpine/manifests/3.10")
        assert bb("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split() == ["alpine:3.10", "busybox:latest"]
        digests = bb("image", "inspect", "-f", "{{json .RepoDigests}}", "alpine:3.10").stdout
        assert "docker.io/library/alpine@sha256:" in digests and mirror.host not in digests   # its own name
        run = bb("run", "--rm", "alpine:3.10", "echo", "from-the-mirror")
        assert (run.returncode, run.stdout) == (0, "from-the-mirror\n"), run.stderr


def test_per_registry_mirrors_fall_back_to_the_registry_and_blocked_prefixes_refuse(bb, tmp_path):  # noqa: F811
    with registries(tmp_path, "primary", "mirror") as (primary, mirror):
        bb("push", "busybox", f"{primary.host}/team/app:1", check=True)
        bb("push", "busybox", f"{primary.host}/team/only-primary:1", check=True)
        bb("push", "busybox", f"{mirror.host}/team-mirror/app:1", check=True)
        configure(bb, f'[[registries.registry]]\nprefix = "{primary.host}/team"\n'
                      f'[[registries.registry.mirror]]\nlocation = "{mirror.host}/team-mirror"\n'
                      f'[[registries.registry]]\nprefix = "{primary.host}/blocked"\nblocked = true\n')
        before = len(primary.requests(r"GET /v2/team/app/manifests/1"))
        assert bb("pull", f"{primary.host}/team/app:1").returncode == 0
        assert mirror.requests(r"GET /v2/team-mirror/app/manifests/1")
        assert len(primary.requests(r"GET /v2/team/app/manifests/1")) == before   # the mirror had it
        fallback = bb("pull", f"{primary.host}/team/only-primary:1")
        assert fallback.returncode == 0, fallback.stderr
        assert mirror.requests(r"GET /v2/team-mirror/only-primary/manifests/1")   # tried first: 404
        assert primary.requests(r"GET /v2/team/only-primary/manifests/1")
        blocked = bb("pull", f"{primary.host}/blocked/x:1")
        assert blocked.returncode == 1
        assert blocked.error_lines == [f"Error: registry {primary.host}/blocked is blocked in "
                                       f"{bb.root.parent / 'pallet.toml'}: {primary.host}/blocked/x:1 is not pulled"]


def test_a_bad_mirror_setting_is_one_clear_line(bb):  # noqa: F811
    configure(bb, '[registries]\nmirrors = ["127.0.0.1:5000"]\n')
    result = bb("pull", "alpine:3.10")
    assert result.returncode == 2
    assert result.error_lines == [f'Error: invalid registry mirror "127.0.0.1:5000" in {bb.root.parent / "pallet.toml"}: '
                                  "expected http:// or https:// and a host"]
