"""Save, load and import through the API: docker save/load/import and docker-py against pallet's archive code."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from tests.conftest import Pallet


def _members(path) -> dict:
    with tarfile.open(path) as tar:
        return {m.name: m for m in tar.getmembers()}


def _manifest(path) -> list:
    with tarfile.open(path) as tar:
        return json.loads(tar.extractfile("manifest.json").read())


def test_docker_save_then_docker_load_and_pallet_load_elsewhere(api, tmp_path):
    one, two = tmp_path / "one.tar", tmp_path / "two.tar"
    saved = api.docker("save", "-o", str(one), "busybox")
    assert saved.returncode == 0, saved.stderr
    assert [e["RepoTags"] for e in _manifest(one)] == [["busybox:latest"]]
    assert api.docker("tag", "busybox", "mine/saved:1").returncode == 0
    saved = api.docker("save", "-o", str(two), "busybox", "mine/saved:1")   # GET /images/get?names=…&names=…
    assert saved.returncode == 0, saved.stderr
    assert sorted(t for e in _manifest(two) for t in e["RepoTags"]) == ["busybox:latest", "mine/saved:1"]
    assert api.docker("rmi", "mine/saved:1").returncode == 0
    loaded = api.docker("load", "-i", str(two))
    assert loaded.returncode == 0, loaded.stderr
    assert "Loaded image: mine/saved:1" in loaded.stdout
    run = api.docker("run", "--rm", "mine/saved:1", "echo", "loaded")
    assert (run.returncode, run.stdout) == (0, "loaded\n"), run.stderr
    (tmp_path / "other").mkdir()   # a second root on vfs: only blobs and copied layers, nothing mounted
    other = Pallet(tmp_path / "other" / "root", tmp_path / "other" / "run", env={"PALLET_STORAGE_DRIVER": "vfs"})
    elsewhere = other("load", "-i", str(one))
    assert (elsewhere.returncode, elsewhere.stdout) == (0, "Loaded image: busybox:latest\n"), elsewhere.stderr
    assert other("image", "inspect", "-f", "{{.Id}}", "busybox").stdout == \
        api.docker("image", "inspect", "-f", "{{.Id}}", "busybox").stdout


def test_docker_py_save_by_id_and_images_load(api):
    client = api.client()
    image = client.images.get("busybox")
    image.tag("py/load", "1")
    data = b"".join(image.save())   # GET /images/{id}/get: named by id, so every tag of the image
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(json.loads(tar.extractfile("manifest.json").read())[0]["RepoTags"]) == \
            ["busybox:latest", "py/load:1"]
    client.images.remove("py/load:1")
    loaded = client.images.load(data)
    assert [i.id for i in loaded] == [image.id, image.id] and "py/load:1" in client.images.get(image.id).tags
    quiet = list(client.api.load_image(data, quiet=True))
    assert {"stream": "Loaded image: py/load:1\n"} in quiet


def test_bad_archives_and_unknown_names(api, tmp_path):
    status, _headers, body = api.request("POST", "/images/load", body=b"not a tar archive at all",
                                         headers={"Content-Type": "application/x-tar"})
    assert status == 400 and body["message"].startswith("invalid archive:")
    status, _headers, body = api.request("POST", "/images/load", body=b"")
    assert (status, body["message"]) == (400, "invalid archive: the request body is empty")
    status, _headers, body = api.request("GET", "/images/get?names=busybox&names=nope:x")
    assert (status, body["message"]) == (404, "No such image: nope:x")
    saved = api.docker("save", "-o", str(tmp_path / "none.tar"), "nope:y")
    assert (saved.returncode, saved.stderr.strip()) == (1, "Error response from daemon: No such image: nope:y")
    leftovers = list((api.pallet.root / "images" / "tmp").glob("api-upload-*"))
    assert leftovers == []


def _rootfs() -> bytes:
    """A root filesystem tarball: the host's static busybox with an echo link."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("bin")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("echo", "sh"):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def test_docker_import_with_changes_and_docker_py_import_of_gzip(api, tmp_path):
    rootfs = tmp_path / "rootfs.tar"
    rootfs.write_bytes(_rootfs())
    imported = api.docker("import", "-c", "ENV GREETING=imported", "-c", 'CMD ["sh", "-c", "echo $GREETING"]',
                          "-m", "from a tarball", str(rootfs), "imp/cli:1")
    assert imported.returncode == 0, imported.stderr
    image_id = imported.stdout.strip()
    assert image_id.startswith("sha256:")
    assert api.docker("image", "inspect", "-f", "{{.Id}}", "imp/cli:1").stdout.strip() == image_id
    run = api.docker("run", "--rm", "imp/cli:1")
    assert (run.returncode, run.stdout) == (0, "imported\n"), run.stderr
    assert api.docker("history", "--format", "{{.Comment}}", "imp/cli:1").stdout.strip() == "from a tarball"
    client = api.client()
    result = client.api.import_image_from_data(gzip.compress(rootfs.read_bytes()), repository="imp/py", tag="2",
                                               changes=["WORKDIR /bin"])
    assert json.loads(result.strip())["status"].startswith("sha256:")
    assert client.images.get("imp/py:2").attrs["Config"]["WorkingDir"] == "/bin"
    status, _headers, body = api.request("POST", "/images/create?fromSrc=http://127.0.0.1:1/x.tar&repo=imp/url")
    assert status == 400 and "not supported" in body["message"] and "fromSrc=-" in body["message"]
    status, _headers, body = api.request("POST", "/images/create?fromSrc=-&repo=Bad/Name", body=rootfs.read_bytes())
    assert status == 400 and "must be lowercase" in body["message"]
