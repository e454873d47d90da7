"""save/load and the oci:, docker-archive:, dir: transports, each checked against skopeo."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import REPO, Pallet
from tests.registry.conftest import layer_tar, skopeo, umoci_image


def _busybox(p) -> dict:
    p("image", "build-busybox", check=True)
    return json.loads(p("image", "inspect", "busybox", check=True).stdout)[0]


def test_save_is_read_by_skopeo(rpallet, tmp_path):
    ours = _busybox(rpallet)
    archive = tmp_path / "bb.tar"
    rpallet("save", "-o", str(archive), "busybox", check=True)
    inspected = json.loads(skopeo("inspect", f"docker-archive:{archive}").stdout)
    assert inspected["Layers"] == [] or len(inspected["Layers"]) == 1
    config = json.loads(skopeo("inspect", "--config", f"docker-archive:{archive}").stdout)
    assert config["rootfs"]["diff_ids"] == ours["RootFS"]["Layers"]
    assert config["config"]["Cmd"] == ["sh"]
    skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'layout'}:bb")
    assert json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]


def test_skopeo_docker_archive_loads(rpallet, tmp_path):
    source = umoci_image(tmp_path, [layer_tar({"etc/motd": b"from skopeo\n"})])
    archive = tmp_path / "img.tar"
    skopeo("copy", source, f"docker-archive:{archive}:test/img:t")
    out = rpallet("load", "-i", str(archive), check=True).stdout
    assert out.strip() == "Loaded image: test/img:t"
    doc = json.loads(rpallet("image", "inspect", "test/img:t", check=True).stdout)[0]
    assert open(doc["GraphDriver"]["Data"]["Dir"] + "/etc/motd").read() == "from skopeo\n"
    # The same archive through the transport, naming the image to take.
    other = Pallet(tmp_path / "root2", tmp_path / "run2", env={"PALLET_STORAGE_DRIVER": "vfs"})
    other("pull", f"docker-archive:{archive}:test/img:t", check=True)
    assert json.loads(other("image", "inspect", "test/img:t", check=True).stdout)[0]["Id"] == doc["Id"]


def test_save_pipe_load_into_another_root(rpallet, tmp_path):
    ours = _busybox(rpallet)
    other = Pallet(tmp_path / "root2", tmp_path / "run2", env={"PALLET_STORAGE_DRIVER": "vfs"})
    base = [sys.executable, "-m", "pallet.kernel.cli"]
    save = subprocess.Popen(base + ["--root", str(rpallet.root), "save", "busybox"], stdout=subprocess.PIPE,
                            cwd=REPO, env=rpallet.env)
    loaded = subprocess.run(base + ["--root", str(other.root), "load"], stdin=save.stdout, capture_output=True,
                            text=True, cwd=REPO, env=other.env)
    save.stdout.close()
    assert save.wait() == 0 and loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "Loaded image: busybox:latest"
    theirs = json.loads(other("image", "inspect", "busybox", check=True).stdout)[0]
    assert theirs["Id"] == ours["Id"] and theirs["RootFS"] == ours["RootFS"]


def test_oci_archive_round_trip(rpallet, tmp_path):
    ours = _busybox(rpallet)
    archive = tmp_path / "bb-oci.tar"
    rpallet("save", "--format", "oci-archive", "-o", str(archive), "busybox", check=True)
    inspected = json.loads(skopeo("inspect", f"oci-archive:{archive}:busybox:latest").stdout)
    assert inspected["Digest"] == ours["Descriptor"]["digest"]
    other = Pallet(tmp_path / "root2", tmp_path / "run2", env={"PALLET_STORAGE_DRIVER": "vfs"})
    assert other("load", "-i", str(archive), check=True).stdout.strip() == "Loaded image: busybox:latest"
    assert json.loads(other("image", "inspect", "busybox", check=True).stdout)[0]["Id"] == ours["Id"]


def test_oci_layout_push_and_pull(rpallet, tmp_path):
    ours = _busybox(rpallet)
    layout = tmp_path / "out"
    rpallet("push", "busybox", f"oci:{layout}:v1", check=True)
    inspected = json.loads(skopeo("inspect", f"oci:{layout}:v1").stdout)
    assert inspected["Digest"] == ours["Descriptor"]["digest"]
    source = umoci_image(tmp_path, [layer_tar({"from-umoci": b"yes\n"})], tag="u1")
    rpallet("pull", source, check=True)
    doc = json.loads(rpallet("image", "inspect", "localhost/layout:u1", check=True).stdout)[0]
    assert open(doc["GraphDriver"]["Data"]["Dir"] + "/from-umoci").read() == "yes\n"
    missing = rpallet("pull", f"oci:{tmp_path / 'layout'}:nosuch")
    assert missing.returncode == 1 and 'no image tagged "nosuch"' in missing.stderr


def test_dir_transport_both_ways(rpallet, tmp_path):
    ours = _busybox(rpallet)
    out = tmp_path / "dir-out"
    rpallet("push", "busybox", f"dir:{out}", check=True)
    assert json.loads(skopeo("inspect", f"dir:{out}").stdout)["Digest"] == ours["Descriptor"]["digest"]
    source = umoci_image(tmp_path, [layer_tar({"d.txt": b"dir\n"})])
    skopeo("copy", source, f"dir:{tmp_path / 'fromskopeo'}")
    rpallet("pull", f"dir:{tmp_path / 'fromskopeo'}", check=True)
    doc = json.loads(rpallet("image", "inspect", "localhost/fromskopeo:latest", check=True).stdout)[0]
    assert open(doc["GraphDriver"]["Data"]["Dir"] + "/d.txt").read() == "dir\n"


def test_save_several_images_sharing_layers(rpallet, tmp_path):
    import tarfile
    ours = _busybox(rpallet)
    tarball = tmp_path / "root.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(__file__, arcname="extra.py")
    rpallet("import", str(tarball), "other:1", check=True)
    rpallet("tag", "busybox", "second:name", check=True)
    archive = tmp_path / "many.tar"
    rpallet("save", "-o", str(archive), "busybox", "second:name", "other:1", check=True)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert sum(name.endswith("/layer.tar") for name in names) == 2     # busybox's layer once, other's once
    assert [entry["RepoTags"] for entry in manifest] == [["busybox:latest"], ["second:name"], ["other:1"]]
    other = Pallet(tmp_path / "root2", tmp_path / "run2", env={"PALLET_STORAGE_DRIVER": "vfs"})
    lines = other("load", "-i", str(archive), check=True).stdout.splitlines()
    assert lines == ["Loaded image: busybox:latest", "Loaded image: second:name", "Loaded image: other:1"]
    assert json.loads(other("image", "inspect", "second:name", check=True).stdout)[0]["Id"] == ours["Id"]
