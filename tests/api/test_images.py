"""Images through the API: pull from a local registry with Docker's progress stream, list, tag, history, rmi."""

from __future__ import annotations

import pytest

from tests.registry.conftest import registry  # noqa: F401  (a docker-registry on loopback)


def test_docker_pull_from_a_local_registry_then_run_it(api, registry):  # noqa: F811
    pushed = api.pallet("push", "busybox", f"{registry.host}/lib/bb:1")
    assert pushed.returncode == 0, pushed.stderr
    result = api.docker("pull", f"{registry.host}/lib/bb:1")
    assert result.returncode == 0, result.stderr
    assert f"Status: Downloaded newer image for {registry.host}/lib/bb:1" in result.stdout
    run = api.docker("run", "--rm", f"{registry.host}/lib/bb:1", "echo", "pulled")
    assert (run.returncode, run.stdout) == (0, "pulled\n"), run.stderr
    assert f"{registry.host}/lib/bb:1" in api.pallet("images", "--format", "{{.Repository}}:{{.Tag}}").stdout


def test_docker_py_pull_streams_json_progress_and_errors(api, registry):  # noqa: F811
    import docker

    api.pallet("push", "busybox", f"{registry.host}/lib/bb:2", check=True)
    client = api.client()
    events = list(client.api.pull(f"{registry.host}/lib/bb", tag="2", stream=True, decode=True))
    assert events[-1] == {"status": f"Status: Downloaded newer image for {registry.host}/lib/bb:2"}
    assert any(e.get("id") and e.get("status") for e in events)
    with pytest.raises(docker.errors.NotFound) as failed:   # before any output: an error status, as Docker's
        client.api.pull(f"{registry.host}/lib/none", tag="x", stream=True, decode=True)
    assert failed.value.explanation == f"manifest unknown: {registry.host}/lib/none:x not found"


def test_images_list_tag_inspect_history_and_remove(api):
    assert api.docker("tag", "busybox", "mine/bb:v1").returncode == 0
    listed = api.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert sorted(listed) == ["busybox:latest", "mine/bb:v1"]
    image_id = api.docker("image", "inspect", "-f", "{{.Id}}", "mine/bb:v1").stdout.strip()
    assert image_id == api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout.strip()
    client = api.client()
    history = client.api.history("mine/bb:v1")
    assert history[0]["Id"] == image_id and "mine/bb:v1" in history[0]["Tags"]
    assert [sorted(i.tags) for i in client.images.list(name="mine/bb")] == [["busybox:latest", "mine/bb:v1"]]
    removed = api.docker("rmi", "mine/bb:v1")
    assert (removed.returncode, removed.stdout) == (0, "Untagged: mine/bb:v1\n")
    missing = api.docker("rmi", "nope:x")
    assert (missing.returncode, missing.stderr.strip()) == (1, "Error response from daemon: No such image: nope:x")
    assert api.request("GET", "/images/search?term=x")[0] == 501


def test_docker_pull_and_build_of_short_names_go_through_the_configured_mirror(bb, tmp_path):  # noqa: F811
    from tests.api.conftest import start_server, stop_server
    from tests.registry.conftest import start_registry, stop_registry

    proc, handle, mirror = start_registry(tmp_path / "mirror")
    try:
        bb("push", "busybox", f"{mirror.host}/library/alpine:3.10", check=True)
        config = bb.root.parent / "pallet.toml"
        config.write_text(config.read_text() + f'\n[registries]\nmirrors = ["http://{mirror.host}"]\n')
        server = start_server(bb, tmp_path / "api.sock")
        try:
            info = server.docker("info", "--format", "{{json .RegistryConfig.Mirrors}}")
            assert info.stdout.strip() == f'["http://{mirror.host}"]', info.stderr
            pulled = server.docker("pull", "alpine:3.10")
            assert pulled.returncode == 0, pulled.stderr
            assert "Status: Downloaded newer image for alpine:3.10" in pulled.stdout
            assert server.docker("rmi", "alpine:3.10").returncode == 0
            context = tmp_path / "ctx"
            context.mkdir()
            (context / "Dockerfile").write_text('FROM alpine:3.10\nCMD ["echo", "built-from-mirror"]\n')
            built = server.docker("build", "-t", "from-mirror:1", str(context))
            assert built.returncode == 0, built.stderr
            assert len(mirror.requests(r"GET /v2/library/alpine/manifests/3.10")) >= 2
            run = server.docker("run", "--rm", "from-mirror:1")
            assert (run.returncode, run.stdout) == (0, "built-from-mirror\n"), run.stderr
        finally:
            stop_server(server)
    finally:
        stop_registry(proc, handle)


def test_docker_images_tree_and_manifests_from_api_1_47_only(api):
    tree = api.docker("images", "--tree")
    assert tree.returncode == 0, tree.stderr
    lines = [line.split() for line in tree.stdout.splitlines()]
    assert ["busybox:latest"] == [row[0] for row in lines if row and row[0].startswith("busybox")]
    ours = api.pallet("image", "inspect", "-f", "{{.Descriptor.digest}}", "busybox", check=True).stdout.strip()
    variant = next(row for row in lines if row and row[0] == "└─")
    assert variant[1:3] == ["linux/amd64", ours.split(":")[1][:12]], tree.stdout
    status, _h, images = api.request("GET", "/v1.47/images/json?manifests=1")
    assert status == 200
    manifests = images[0]["Manifests"]
    assert [(m["ID"], m["Kind"], m["Available"], m["ImageData"]["Platform"]) for m in manifests] == [
        (ours, "image", True, {"os": "linux", "architecture": "amd64"})]
    assert manifests[0]["Size"]["Content"] > 0 and manifests[0]["ImageData"]["Size"]["Unpacked"] == images[0]["Size"]
    status, _h, older = api.request("GET", "/v1.44/images/json?manifests=1")   # ignored below 1.47, as Docker
    assert status == 200 and "Manifests" not in older[0]


def test_push_platform_is_checked_from_api_1_46_and_ignored_before(api, registry):  # noqa: F811
    api.pallet("tag", "busybox", f"{registry.host}/plat/bb:1", check=True)
    refused = api.docker("push", "--platform", "linux/arm64", f"{registry.host}/plat/bb:1")
    assert refused.returncode == 1
    assert "its platform (linux/amd64) does not match the specified platform (linux/arm64)" in refused.stderr
    assert not registry.requests("PUT /v2/plat/bb/manifests/")
    pushed = api.docker("push", "--platform", "linux/amd64", f"{registry.host}/plat/bb:1")
    assert pushed.returncode == 0, pushed.stderr
    assert registry.requests("PUT /v2/plat/bb/manifests/1")
    arm = '{"os":"linux","architecture":"arm64"}'
    status, _h, _body = api.request("POST", f"/v1.44/images/{registry.host}/plat/bb/push?tag=1&platform={arm}",
                                    headers={"X-Registry-Auth": "e30="})
    assert status == 200     # a 1.44 client's platform is ignored, as Docker's daemon ignores it
    status, _h, body = api.request("POST", f"/v1.47/images/{registry.host}/plat/bb/push?tag=1&platform=nonsense",
                                   headers={"X-Registry-Auth": "e30="})
    assert status == 400 and body["message"].startswith("failed to parse platform: ")
