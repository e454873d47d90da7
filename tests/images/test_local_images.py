"""Images made locally: build-busybox, images/inspect/history/tag/rmi/import, and what lands in the store."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from types import SimpleNamespace

from pallet.kernel.containers import ContainerRecord, ContainerStore, new_container_id
from tests.images.conftest import snapshot


def build(p):
    result = p("image", "build-busybox", "-q", check=True)
    return result.stdout.strip()


def test_build_busybox_lists_with_docker_columns(vpallet):
    image_id = build(vpallet)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    lines = vpallet("images", check=True).stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    cells = re.split(r"\s{3,}", lines[1])
    assert cells[:3] == ["busybox", "latest", image_id[7:19]]
    assert cells[3].endswith("ago") and re.fullmatch(r"[\d.]+MB", cells[4])
    # Deterministic: building again gives the same image and no second row.
    assert build(vpallet) == image_id
    assert len(vpallet("images", check=True).stdout.splitlines()) == 2


def test_busybox_rootfs_has_applets_and_users(vpallet):
    build(vpallet)
    doc = json.loads(vpallet("image", "inspect", "busybox", check=True).stdout)[0]
    assert doc["Config"]["Cmd"] == ["sh"]
    assert any(e.startswith("PATH=") for e in doc["Config"]["Env"])
    rootfs = doc["GraphDriver"]["Data"]["Dir"]
    assert os.readlink(f"{rootfs}/bin/sh") == "busybox"
    assert os.readlink(f"{rootfs}/bin/echo") == "busybox"
    assert os.access(f"{rootfs}/bin/busybox", os.X_OK)
    assert open(f"{rootfs}/etc/passwd").read().startswith("root:x:0:0:")
    assert "root:x:0:" in open(f"{rootfs}/etc/group").read()
    assert oct(os.stat(f"{rootfs}/tmp").st_mode & 0o7777) == "0o1777"


def test_inspect_format_and_history(vpallet):
    image_id = build(vpallet)
    assert vpallet("image", "inspect", "--format", "{{.Id}} {{.Os}}", "busybox", check=True).stdout.strip() == \
        f"{image_id} linux"
    history = vpallet("history", "busybox", check=True).stdout.splitlines()
    assert history[0].split()[:3] == ["IMAGE", "CREATED", "CREATED"]
    assert history[1].startswith(image_id[7:19]) and "build-busybox" in history[1]


def test_tag_then_rmi_untags_before_deleting(vpallet):
    image_id = build(vpallet)
    vpallet("tag", "busybox", "localhost:5000/mine:v1", check=True)
    assert "localhost:5000/mine" in vpallet("images", check=True).stdout
    out = vpallet("rmi", "localhost:5000/mine:v1", check=True).stdout
    assert out.strip() == "Untagged: localhost:5000/mine:v1"
    assert vpallet("image", "inspect", image_id[7:19], check=True)
    assert vpallet("image", "ls", "-q", check=True).stdout.split() == [image_id[7:19]]


def test_rmi_removes_layers_and_blobs(vpallet):
    before = snapshot(vpallet.root)
    build(vpallet)
    out = vpallet("rmi", "busybox", check=True).stdout
    assert "Untagged: busybox:latest" in out and "Deleted: sha256:" in out
    assert not os.listdir(vpallet.root / "vfs" / "dir")
    assert not os.listdir(vpallet.root / "images" / "blobs" / "sha256")
    after = snapshot(vpallet.root)
    # The events journal (pallet events) keeps the build and the rmi, by design.
    leftovers = {k: v for k, v in after.items()
                 if v != "dir" and k not in before and k != "storage-driver" and not k.startswith("events/")}
    assert leftovers == {"images/tags.json": leftovers.get("images/tags.json")}
    assert json.loads((vpallet.root / "images" / "tags.json").read_text()) == {}


def test_rmi_refuses_an_image_a_container_uses_unless_forced(vpallet):
    image_id = build(vpallet)
    containers = ContainerStore(SimpleNamespace(root=vpallet.root, run_root=vpallet.run_root))
    containers.add(ContainerRecord(id=new_container_id(), name="user1", image_id=image_id, image_ref="busybox"))
    refused = vpallet("rmi", "busybox")
    assert refused.returncode == 1
    assert refused.error_lines == [refused.error_lines[0]] and "is using its referenced image" in refused.stderr
    assert "busybox" in vpallet("images", check=True).stdout
    forced = vpallet("rmi", "-f", "busybox", check=True)
    assert "Untagged: busybox:latest" in forced.stdout
    # Forced: untagged, but kept (dangling) with its layers for the container.
    assert vpallet("images", "-f", "dangling=true", "-q", check=True).stdout.strip() == image_id[7:19]
    assert os.listdir(vpallet.root / "vfs" / "dir")


def test_unknown_image_is_one_line_error(vpallet):
    result = vpallet("image", "inspect", "nosuch")
    assert result.returncode == 1
    assert result.error_lines == ["Error: No such image: nosuch"]


def _rootfs_tar() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("hello.txt")
        data = b"hello from import\n"
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_import_from_stdin_with_changes(vpallet, tmp_path):
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(_rootfs_tar())
    result = vpallet("import", "-c", 'CMD ["/hello"]', "-c", "ENV A=b", "-c", "EXPOSE 80", "-m", "imported",
                     str(tarball), "imported:v1", check=True)
    image_id = result.stdout.strip()
    doc = json.loads(vpallet("image", "inspect", "imported:v1", check=True).stdout)[0]
    assert doc["Id"] == image_id
    assert doc["Config"]["Cmd"] == ["/hello"] and "A=b" in doc["Config"]["Env"]
    assert doc["Config"]["ExposedPorts"] == {"80/tcp": {}}
    assert doc["Comment"] == "imported"
    assert open(doc["GraphDriver"]["Data"]["Dir"] + "/hello.txt").read() == "hello from import\n"
    bad = vpallet("import", "-c", "FROM x", str(tarball))
    assert bad.returncode == 1 and "unsupported instruction FROM" in bad.stderr


def test_prune_removes_dangling_only(vpallet, tmp_path):
    tarball = tmp_path / "rootfs.tar.gz"
    tarball.write_bytes(_rootfs_tar())
    dangling = vpallet("import", str(tarball), check=True).stdout.strip()
    build(vpallet)
    out = vpallet("image", "prune", "-f", check=True).stdout
    assert f"deleted: {dangling}" in out and "Total reclaimed space:" in out
    assert vpallet("images", "--format", "{{.Repository}}", check=True).stdout.split() == ["busybox"]


def test_import_from_stdin(vpallet):
    import subprocess
    import sys

    from tests.conftest import REPO
    proc = subprocess.run([sys.executable, "-m", "pallet.kernel.cli", "--root", str(vpallet.root), "import", "-",
                           "fromstdin:1"], input=_rootfs_tar(), capture_output=True, env=vpallet.env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert vpallet("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split() == ["fromstdin:1"]


def test_load_of_something_else_is_one_line_error(vpallet, tmp_path):
    junk = tmp_path / "junk"
    junk.write_text("not a tar\n")
    result = vpallet("load", "-i", str(junk))
    assert result.returncode == 1
    assert result.error_lines == [f"Error: invalid archive: {junk} is not a tar archive"]


def test_import_of_a_malicious_tarball_changes_nothing(vpallet, tmp_path):
    build(vpallet)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../../escaped")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"bad"))
    evil = tmp_path / "evil.tar"
    evil.write_bytes(buffer.getvalue())
    before = snapshot(vpallet.root)
    result = vpallet("import", str(evil), "evil:1")
    assert result.returncode == 1 and len(result.error_lines) == 1
    assert '".." components are refused' in result.stderr
    assert snapshot(vpallet.root) == before
    assert not (vpallet.root.parent / "escaped").exists()


def test_every_busybox_applet_link_resolves_to_the_binary():
    import io
    import posixpath
    import tarfile

    from pallet.kernel.images.build import busybox_tar

    data, _version, _mtime = busybox_tar()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        links = [m for m in tar.getmembers() if m.issym()]
    assert {"usr/sbin/httpd", "sbin/ip", "usr/bin/env", "bin/sh"} <= {m.name for m in links}
    for member in links:
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(member.name), member.linkname))
        assert resolved == "bin/busybox", f"{member.name} -> {member.linkname}"
