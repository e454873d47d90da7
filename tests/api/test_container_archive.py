"""``docker cp`` both ways and docker-py's get/put_archive through ``/containers/{id}/archive``."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile

from pallet.kernel.api.container_archive import GO_DIR, GO_SYMLINK, go_mode


def _running(api, name: str) -> None:
    result = api.docker("run", "-d", "--name", name, "-v", "/vol", "busybox", "sh", "-c",
                        "mkdir -p /data/inner && echo data > /data/inner/y && ln -s /data/inner /lnk "
                        "&& touch /ready && exec sleep 100")
    assert result.returncode == 0, result.stderr
    while api.docker("exec", name, "test", "-e", "/ready").returncode != 0:
        pass


def test_docker_cp_out_of_a_container_files_dirs_contents_links_and_binds(api, tmp_path):
    _running(api, "arc-out")
    assert api.docker("cp", "arc-out:/data/inner/y", str(tmp_path / "y")).returncode == 0
    assert (tmp_path / "y").read_text() == "data\n"
    assert api.docker("cp", "arc-out:/data", str(tmp_path / "tree")).returncode == 0
    assert (tmp_path / "tree" / "inner" / "y").read_text() == "data\n"
    (tmp_path / "into").mkdir()
    assert api.docker("cp", "arc-out:/data/.", str(tmp_path / "into")).returncode == 0
    assert sorted(os.listdir(tmp_path / "into")) == ["inner"]
    assert api.docker("cp", "arc-out:/lnk", str(tmp_path / "link")).returncode == 0
    assert os.readlink(tmp_path / "link") == "/data/inner"
    assert api.docker("cp", "-L", "arc-out:/lnk", str(tmp_path / "followed")).returncode == 0
    assert (tmp_path / "followed" / "y").read_text() == "data\n"
    assert api.docker("cp", "arc-out:/etc/hostname", str(tmp_path / "hostname")).returncode == 0  # a bind mount
    assert (tmp_path / "hostname").read_text().strip() == api.docker("exec", "arc-out", "hostname").stdout.strip()
    missing = api.docker("cp", "arc-out:/nope", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert missing.stderr.strip() == "Error response from daemon: Could not find the file /nope in container arc-out"
    to_stdout = api.docker("cp", "arc-out:/data", "-")
    assert to_stdout.returncode == 0
    with tarfile.open(fileobj=io.BytesIO(to_stdout.stdout.encode())) as tar:
        assert tar.getnames() == ["data", "data/inner", "data/inner/y"]
    assert api.docker("rm", "-f", "arc-out").returncode == 0


def test_docker_cp_into_a_container_new_names_directories_volumes_and_refusals(api, tmp_path):
    _running(api, "arc-in")
    (tmp_path / "f.txt").write_text("host\n")
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "sub" / "x").write_text("deep\n")

    def inside(*command):
        return api.docker("exec", "arc-in", *command).stdout

    assert api.docker("cp", str(tmp_path / "f.txt"), "arc-in:/tmp/").returncode == 0
    assert inside("cat", "/tmp/f.txt") == "host\n"
    assert inside("stat", "-c", "%u:%g", "/tmp/f.txt") == "0:0\n"
    assert api.docker("cp", str(tmp_path / "f.txt"), "arc-in:/tmp/renamed").returncode == 0
    assert inside("cat", "/tmp/renamed") == "host\n"
    assert api.docker("cp", str(tmp_path / "d"), "arc-in:/tmp/d2").returncode == 0
    assert inside("cat", "/tmp/d2/sub/x") == "deep\n"
    assert api.docker("cp", str(tmp_path / "f.txt"), "arc-in:/lnk").returncode == 0  # a link to a directory
    assert inside("cat", "/data/inner/f.txt") == "host\n"
    assert api.docker("cp", str(tmp_path / "f.txt"), "arc-in:/vol/").returncode == 0  # an anonymous volume
    assert inside("cat", "/vol/f.txt") == "host\n"
    (tmp_path / "usr").write_text("not a directory\n")
    refused = api.docker("cp", str(tmp_path / "usr"), "arc-in:/")
    assert refused.returncode == 1
    assert 'cannot overwrite directory "/usr" with non-directory "/usr"' in refused.stderr
    assert api.docker("exec", "arc-in", "test", "-d", "/usr/bin").returncode == 0
    (tmp_path / "blocker" / "y").mkdir(parents=True)
    refused = api.docker("cp", str(tmp_path / "blocker" / "y"), "arc-in:/data/inner/")
    assert refused.returncode == 1 and "cannot overwrite non-directory" in refused.stderr
    assert inside("cat", "/data/inner/y") == "data\n"
    assert api.docker("rm", "-f", "arc-in").returncode == 0


def test_docker_py_archive_stat_get_and_put_on_a_stopped_container(api):
    client = api.client()
    container = client.containers.create("busybox", ["true"], name="arc-py")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size, info.uid, info.gid, info.mode = 3, 1234, 5678, 0o640
        tar.addfile(info, io.BytesIO(b"hi\n"))
    assert container.put_archive("/tmp", buffer.getvalue()) is True
    status, headers, body = api.request("PUT", "/containers/arc-py/archive?path=/tmp", b"definitely not a tar",
                                        {"Content-Type": "application/x-tar"})
    assert status == 400 and body["message"].startswith("invalid tar archive in the request body")
    stream, stat = container.get_archive("/tmp/hello.txt")
    assert (stat["name"], stat["size"], stat["mode"]) == ("hello.txt", 3, 0o640)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        member = tar.getmember("hello.txt")
        assert (member.uid, member.gid) == (0, 0)  # copied in as the container's root, as Docker does
        assert tar.extractfile(member).read() == b"hi\n"
    _stream, stat = container.get_archive("/bin")
    assert stat["mode"] & GO_DIR and stat["name"] == "bin"
    kept = api.request("PUT", "/containers/arc-py/archive?path=/tmp&copyUIDGID=1", buffer.getvalue(),
                       {"Content-Type": "application/x-tar"})
    assert kept[0] == 200
    with tarfile.open(fileobj=io.BytesIO(b"".join(container.get_archive("/tmp/hello.txt")[0]))) as tar:
        assert (tar.getmember("hello.txt").uid, tar.getmember("hello.txt").gid) == (1234, 5678)
    status, headers, _ = api.request("HEAD", "/containers/arc-py/archive?path=/bin/sh")
    assert status == 200
    link = json.loads(base64.b64decode(headers["X-Docker-Container-Path-Stat"]))
    assert link["linkTarget"] == "/bin/busybox" and link["mode"] & GO_SYMLINK
    assert api.request("HEAD", "/containers/arc-py/archive?path=/nope")[0] == 404
    assert api.request("GET", "/containers/arc-py/archive?path=/nope")[0] == 404
    not_dir = api.request("PUT", "/containers/arc-py/archive?path=/bin/busybox", buffer.getvalue())
    assert not_dir[0] == 400 and not_dir[2] == {"message": "extraction point is not a directory"}
    assert api.request("GET", "/containers/arc-py/archive")[0] == 400
    assert api.request("GET", "/containers/nosuch/archive?path=/")[0] == 404
    container.remove()


def test_a_read_only_rootfs_refuses_uploads_but_not_into_volumes(api):
    result = api.docker("run", "-d", "--name", "arc-ro", "--read-only", "-v", "/vol", "busybox", "sleep", "100")
    assert result.returncode == 0, result.stderr
    status, _h, body = api.request("PUT", "/containers/arc-ro/archive?path=/tmp", _tar_of("x", b"1"))
    assert status == 403 and body == {"message": "container rootfs is marked read-only"}
    assert api.request("PUT", "/containers/arc-ro/archive?path=/vol", _tar_of("x", b"1"))[0] == 200
    assert api.docker("exec", "arc-ro", "cat", "/vol/x").stdout == "1"
    assert api.docker("rm", "-f", "arc-ro").returncode == 0


def _tar_of(name: str, data: bytes) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_go_file_modes():
    import stat

    assert go_mode(stat.S_IFDIR | 0o755) == GO_DIR | 0o755
    assert go_mode(stat.S_IFLNK | 0o777) == GO_SYMLINK | 0o777
    assert go_mode(stat.S_IFREG | stat.S_ISUID | 0o755) == (1 << 23) | 0o755
    assert go_mode(stat.S_IFCHR | 0o666) == (1 << 26) | (1 << 21) | 0o666
