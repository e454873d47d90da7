"""docker:// against a real docker-registry: pull images skopeo pushed, push images skopeo reads back."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.request

from tests.registry.conftest import layer_tar, push_with_skopeo, skopeo, umoci_image


def test_pull_an_image_skopeo_pushed_and_unpack_it(registry, rpallet, tmp_path):
    source = umoci_image(tmp_path, [layer_tar({"srv/hello.txt": b"hello\n"}),
                                    layer_tar({"srv/more.txt": b"more\n"}, {"srv/link": "hello.txt"})])
    push_with_skopeo(source, registry, "test/img:t")
    name = f"{registry.host}/test/img:t"
    result = rpallet("pull", name, check=True)
    assert result.stdout.splitlines()[-1] == name
    assert "Pull complete" in result.stdout
    doc = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    assert doc["Config"]["Cmd"] == ["/bin/true"] and "FROM_UMOCI=1" in doc["Config"]["Env"]
    rootfs = doc["GraphDriver"]["Data"]["Dir"]
    assert open(f"{rootfs}/srv/hello.txt").read() == "hello\n"
    assert open(f"{rootfs}/srv/more.txt").read() == "more\n"
    assert os.readlink(f"{rootfs}/srv/link") == "hello.txt"
    remote = skopeo("inspect", "--tls-verify=false", f"docker://{name}").stdout
    assert doc["RepoDigests"] == [f"{registry.host}/test/img@{json.loads(remote)['Digest']}"]


def test_second_pull_downloads_no_layers(registry, rpallet, tmp_path):
    source = umoci_image(tmp_path, [layer_tar({"a": b"1"}), layer_tar({"b": b"2"}), layer_tar({"c": b"3"})])
    push_with_skopeo(source, registry, "test/again:t")
    name = f"{registry.host}/test/again:t"
    rpallet("pull", name, check=True)
    first = registry.requests("GET /v2/test/again/blobs/")
    assert len(first) == 4          # three layers and the config
    second = rpallet("pull", "--tls-verify=false", name, check=True)
    assert "Image is up to date" in second.stdout and second.stdout.count("Already exists") == 3
    assert registry.requests("GET /v2/test/again/blobs/") == first


def test_push_is_read_back_by_skopeo_with_the_same_digests(registry, rpallet, tmp_path):
    rpallet("image", "build-busybox", check=True)
    target = f"{registry.host}/pushed/busybox:1"
    rpallet("tag", "busybox", target, check=True)
    out = rpallet("push", target, check=True).stdout
    ours = json.loads(rpallet("image", "inspect", "busybox", check=True).stdout)[0]
    manifest_digest = ours["Descriptor"]["digest"]
    assert f"digest: {manifest_digest}" in out
    remote = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}").stdout)
    assert remote["Digest"] == manifest_digest
    config = json.loads(skopeo("inspect", "--config", "--tls-verify=false", f"docker://{target}").stdout)
    assert config["rootfs"]["diff_ids"] == ours["RootFS"]["Layers"]
    layout = tmp_path / "copy"
    skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{layout}:x")
    index = json.loads((layout / "index.json").read_text())
    assert index["manifests"][0]["digest"] == manifest_digest
    assert ours["Id"].split(":")[1] in os.listdir(layout / "blobs" / "sha256")
    # Pushing again uploads nothing.
    again = rpallet("push", target, check=True).stdout
    assert again.count("Layer already exists") == 2


def test_push_to_another_repository_mounts_blobs(registry, rpallet):
    rpallet("image", "build-busybox", check=True)
    first = f"{registry.host}/one/bb:latest"
    rpallet("tag", "busybox", first, check=True)
    rpallet("push", first, check=True)
    second = f"{registry.host}/two/bb:latest"
    rpallet("tag", "busybox", second, check=True)
    out = rpallet("push", second, check=True).stdout
    assert "Mounted from one/bb" in out
    assert registry.requests(r"POST /v2/two/bb/blobs/uploads/\?.*mount=")
    assert not registry.requests(r"PATCH /v2/two/bb/") and not registry.requests(r"PUT /v2/two/bb/blobs/")


def _put_index(registry, repo: str, entries: list[tuple[str, bytes]]) -> None:
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "size": len(raw),
         "digest": "sha256:" + hashlib.sha256(raw).hexdigest(), "platform": {"os": "linux", "architecture": arch}}
        for arch, raw in entries]}
    request = urllib.request.Request(f"http://{registry.host}/v2/{repo}/manifests/latest", method="PUT",
                                     data=json.dumps(index).encode(),
                                     headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert urllib.request.urlopen(request).status == 201


def test_manifest_list_resolves_for_host_or_platform(registry, rpallet, tmp_path):
    source_amd = umoci_image(tmp_path, [layer_tar({"arch": b"amd64\n"})], tag="amd")
    source_arm = umoci_image(tmp_path, [layer_tar({"arch": b"arm64\n"})], tag="arm")
    layout = source_amd.split(":")[1]
    import subprocess
    subprocess.run(["umoci", "config", "--image", f"{layout}:arm", "--architecture", "arm64"], check=True)
    push_with_skopeo(source_amd, registry, "multi/img:amd")
    push_with_skopeo(source_arm, registry, "multi/img:arm")
    raws = [(arch, skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/multi/img:{arch[:3]}")
             .stdout.encode()) for arch in ("amd64", "arm64")]
    _put_index(registry, "multi/img", raws)
    name = f"{registry.host}/multi/img"
    rpallet("pull", name, check=True)
    rootfs = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]["GraphDriver"]["Data"]["Dir"]
    assert open(f"{rootfs}/arch").read() == "amd64\n"
    rpallet("pull", "--platform", "linux/arm64", name, check=True)
    doc = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    assert doc["Architecture"] == "arm64"
    missing = rpallet("pull", "--platform", "linux/s390x", name)
    assert missing.returncode == 1 and missing.error_lines == [
        "Error: no matching manifest for linux/s390x in the manifest list entries (available: linux/amd64, linux/arm64)"]


def test_all_tags_and_unknown_tag(registry, rpallet, tmp_path):
    source = umoci_image(tmp_path, [layer_tar({"x": b"x"})])
    push_with_skopeo(source, registry, "tags/img:one")
    push_with_skopeo(source, registry, "tags/img:two")
    rpallet("pull", "-a", "-q", f"{registry.host}/tags/img", check=True)
    tags = rpallet("images", "--format", "{{.Tag}}", check=True).stdout.split()
    assert sorted(tags) == ["one", "two"]
    missing = rpallet("pull", f"{registry.host}/tags/img:three")
    assert missing.returncode == 1
    assert missing.error_lines == [f"Error: manifest unknown: {registry.host}/tags/img:three not found"]


def test_concurrent_pulls_of_one_image_share_the_store(registry, rpallet, tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO
    source = umoci_image(tmp_path, [layer_tar({f"f{i}": bytes(1000) * i for i in range(1, 30)}),
                                    layer_tar({"g": b"g"})])
    push_with_skopeo(source, registry, "conc/img:t")
    name = f"{registry.host}/conc/img:t"
    rpallet("image", "ls", check=True)
    argv = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(rpallet.root), "pull", "-q", name]
    procs = [subprocess.Popen(argv, cwd=REPO, env=rpallet.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    results = [(p.wait(), p.stderr.read().decode()) for p in procs]
    for p in procs:
        p.stdout.close()
        p.stderr.close()
    assert [code for code, _ in results] == [0, 0, 0], results
    listed = rpallet("images", "--digests", check=True).stdout.splitlines()
    assert len(listed) == 2 and "sha256:" in listed[1]
    # Blobs were fetched once: the other pulls waited for the store lock and found them.
    assert len(registry.requests("GET /v2/conc/img/blobs/")) == 3


def test_kill_9_during_pull_leaves_nothing_visible(registry, rpallet, tmp_path):
    import random

    from tests.registry.conftest import pull_killed_at
    rng = random.Random(7)
    # Small first layer, large later ones: the kill lands after layer 0 is recorded, before the image is.
    layers = [layer_tar({f"big{i}": rng.randbytes(1_000_000 if i == 0 else 15_000_000)}) for i in range(4)]
    push_with_skopeo(umoci_image(tmp_path, layers), registry, "kill/img:t")
    name = f"{registry.host}/kill/img:t"
    rpallet("image", "build-busybox", check=True)
    assert any("Pull complete" in line for line in pull_killed_at(rpallet, name))
    assert rpallet("images", "--format", "{{.Repository}}", check=True).stdout.split() == ["busybox"]
    assert rpallet("image", "inspect", name).returncode == 1
    # The next command that takes the store lock rolls the killed pull's journal back; prune finds the rest.
    rpallet("image", "prune", "-f", check=True)
    busybox = json.loads(rpallet("image", "inspect", "busybox", check=True).stdout)[0]
    layer_dirs = os.listdir(rpallet.root / "vfs" / "dir")
    assert layer_dirs == [busybox["GraphDriver"]["Data"]["Dir"].rsplit("/", 1)[1]]
    assert not [p for p in os.listdir(rpallet.root / "images" / "tmp") if p.startswith("blob-")]
    rpallet("pull", name, check=True)
    doc = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    assert sorted(os.listdir(doc["GraphDriver"]["Data"]["Dir"])) == ["big0", "big1", "big2", "big3"]
