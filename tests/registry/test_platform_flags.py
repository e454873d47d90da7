"""Docker 28's image flags against a real registry: ``--platform`` on pull/push/save/load/history/rmi/import,
``images --tree`` over a two-platform index, ``push -a`` and ``--disable-content-trust``."""

from __future__ import annotations

import json
import subprocess
import urllib.request

from tests.registry.conftest import layer_tar, push_with_skopeo, skopeo, umoci_image
from tests.registry.test_docker_transport import _put_index


def _two_platform_index(registry, tmp_path) -> str:
    amd = umoci_image(tmp_path, [layer_tar({"arch": b"amd64\n"})], tag="amd")
    arm = umoci_image(tmp_path, [layer_tar({"arch": b"arm64\n"})], tag="arm")
    subprocess.run(["umoci", "config", "--image", f"{amd.split(':')[1]}:arm", "--architecture", "arm64"], check=True)
    push_with_skopeo(amd, registry, "multi/img:amd")
    push_with_skopeo(arm, registry, "multi/img:arm")
    raws = [(arch, skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/multi/img:{arch[:3]}")
             .stdout.encode()) for arch in ("amd64", "arm64")]
    _put_index(registry, "multi/img", raws)
    return f"{registry.host}/multi/img"


def _tree(rpallet) -> list[str]:
    lines = rpallet("images", "--tree", check=True).stdout.splitlines()
    assert lines[:3] == ["WARNING: This is an experimental feature. The output may change and shouldn't be depended "
                         "on.", " " * 61 + " Info ->  U In Use ", ""]
    return [line.split() for line in lines[3:] if line]


def test_tree_lists_each_platform_of_the_index_and_which_are_here(registry, rpallet, tmp_path):
    name = _two_platform_index(registry, tmp_path)
    rpallet("pull", "--disable-content-trust", name, check=True)
    amd = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    rows = _tree(rpallet)
    assert rows[0] == ["IMAGE", "ID", "DISK", "USAGE", "CONTENT", "SIZE", "EXTRA"]
    assert rows[1][:2] == [f"{name}:latest"[:28] + "…", amd["Id"][7:19]]   # 80 columns leave the name 29
    assert rows[2][:3] == ["├─", "linux/amd64", amd["Descriptor"]["digest"][7:19]]
    assert rows[3][:2] + rows[3][3:] == ["└─", "linux/arm64", "0B", "0B"]   # in the index, not pulled
    assert rows[1][2:] == rows[2][3:] and rows[2][3] != "0B"

    rpallet("create", "--name", "user", name, check=True)
    rpallet("pull", "--platform", "linux/arm64", name, check=True)   # the tag moves; amd64 stays, untagged
    arm = json.loads(rpallet("image", "inspect", name, check=True).stdout)[0]
    rows = _tree(rpallet)
    assert len(rows) == 4   # the untagged amd64 record shows under the index only
    assert rows[1][:2] == [f"{name}:latest"[:28] + "…", arm["Id"][7:19]] and rows[1][-1] == "U"
    assert rows[2][-1] == "U" and rows[3][1] == "linux/arm64" and rows[3][-1] != "U" and rows[3][3] != "0B"
    refused = rpallet("images", "--tree", "-q")
    assert (refused.returncode, refused.stderr) == (2, "Error: --quiet is not yet supported with --tree\n")


def test_platform_selects_or_refuses_with_dockers_errors(registry, rpallet, tmp_path):
    name = _two_platform_index(registry, tmp_path)
    missing = rpallet("pull", "--platform", "linux/s390x", name)
    assert missing.error_lines == ["Error: no matching manifest for linux/s390x in the manifest list entries "
                                   "(available: linux/amd64, linux/arm64)"]
    rpallet("pull", "--platform", "linux/arm64", name, check=True)
    wrong = (f"image with reference {name} was found but its platform (linux/arm64) does not match the specified "
             "platform (linux/amd64)")
    for args in (["history", "--platform", "linux/amd64", name], ["rmi", "--platform", "linux/amd64", name],
                 ["push", "--platform", "linux/amd64", name, f"{registry.host}/copy/img:arm"]):
        result = rpallet(*args)
        assert (result.returncode, result.error_lines) == (1, [f"Error: {wrong}"]), args
    assert rpallet("history", "-q", "--platform", "Linux/ARM64", name).returncode == 0
    two = rpallet("rmi", "--platform", "linux/arm64", "--platform", "linux/amd64", name)
    assert two.error_lines == ["Error: multiple platforms are not supported"]
    unsaved = rpallet("save", "--platform", "linux/amd64", "-o", str(tmp_path / "x.tar"), name)
    assert unsaved.error_lines == ["Error: no suitable export target found for platform linux/amd64"]

    rpallet("save", "--platform", "linux/arm64", "-o", str(tmp_path / "arm.tar"), name, check=True)
    rpallet("rmi", "--platform", "linux/arm64", name, check=True)
    skipped = rpallet("load", "--platform", "linux/amd64", "-i", str(tmp_path / "arm.tar"), check=True)
    assert skipped.stdout == "" and rpallet("images", "-q", name).stdout == ""   # Docker skips other platforms
    loaded = rpallet("load", "--platform", "linux/arm64", "-i", str(tmp_path / "arm.tar"), check=True)
    assert loaded.stdout == f"Loaded image: {name}:latest\n"

    imported = rpallet("import", "--platform", "linux/arm/v7", str(tmp_path / "arm.tar"), "imported", check=True)
    doc = json.loads(rpallet("image", "inspect", imported.stdout.strip(), check=True).stdout)[0]
    assert (doc["Os"], doc["Architecture"], doc["Variant"]) == ("linux", "arm", "v7")
    bad = rpallet("pull", "--platform", "linux/", name)
    assert bad.returncode == 2 and "unknown operating system or architecture" in bad.stderr


def test_push_all_tags_pushes_every_tag_of_the_repository(registry, rpallet):
    rpallet("image", "build-busybox", check=True)
    repo = f"{registry.host}/every/bb"
    for tag in ("one", "two"):
        rpallet("tag", "busybox", f"{repo}:{tag}", check=True)
    rpallet("tag", "busybox", f"{registry.host}/other/bb:three", check=True)
    rpallet("push", "-a", "-q", "--disable-content-trust=true", repo, check=True)
    listed = json.loads(urllib.request.urlopen(f"http://{registry.host}/v2/every/bb/tags/list").read())
    assert sorted(listed["tags"]) == ["one", "two"]
    assert rpallet("push", "-a", f"{repo}:one").error_lines == ["Error: tag can't be used with --all-tags/-a"]
    nothing = rpallet("push", "--all-tags", f"{registry.host}/none/bb")
    assert nothing.error_lines == [f"Error: An image does not exist locally with the tag: {registry.host}/none/bb"]
    notary = rpallet("push", "--disable-content-trust=false", f"{repo}:one")
    assert notary.returncode == 2 and "Docker Content Trust (Notary) is not supported" in notary.stderr
