"""Defects 4 and 8: inputs that used to end in an internal error."""

from __future__ import annotations


def test_v_binds_an_existing_host_file(bb, tmp_path):
    source = tmp_path / "greeting.txt"
    source.write_text("hi from the host\n")
    result = bb("run", "--rm", "-v", f"{source}:/greeting.txt:ro", "busybox", "cat", "/greeting.txt")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hi from the host\n"
    assert source.is_file()


def test_v_still_creates_a_missing_source_directory(bb, tmp_path):
    source = tmp_path / "made" / "here"
    result = bb("run", "--rm", "-v", f"{source}:/data", "busybox", "sh", "-c", "echo x > /data/f")
    assert result.returncode == 0, result.stderr
    assert (source / "f").read_text() == "x\n"


def test_env_file_with_invalid_utf8_or_nul_is_one_clear_line(bb, tmp_path):
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"A=caf\xe9\n")
    result = bb("run", "--rm", "--env-file", str(latin), "busybox", "true")
    assert result.returncode == 125
    assert result.error_lines == [f"Error: env file {latin} is not valid UTF-8 (byte 5)"]
    nul = tmp_path / "nul.env"
    nul.write_bytes(b"A=1\nB=x\x00y\n")
    result = bb("run", "--rm", "--env-file", str(nul), "busybox", "true")
    assert result.returncode == 125
    assert result.error_lines == [f"Error: env file {nul} contains a NUL byte (line 2)"]


def _tar(path, members: dict[str, bytes]) -> None:
    import io
    import tarfile

    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_truncated_docker_archive_is_refused_and_adds_nothing(bb, tmp_path):
    archive = tmp_path / "bb.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    bb("rmi", "busybox", check=True)
    blobs_before = sorted((bb.root / "images" / "blobs" / "sha256").iterdir())
    truncated = tmp_path / "cut.tar"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size * 2 // 3])
    result = bb("load", "-i", str(truncated))
    assert result.returncode == 1
    assert len(result.error_lines) == 1 and "truncated or corrupt" in result.stderr, result.stderr
    assert sorted((bb.root / "images" / "blobs" / "sha256").iterdir()) == blobs_before
    assert bb("images", "-q", check=True).stdout == ""


def test_manifest_json_with_wrong_types_or_no_entry_is_one_clear_line(bb, tmp_path):
    cases = {
        b'[{"Config": 5, "Layers": []}]': "Config must be a file name",
        b'[{"Config": "c.json", "Layers": "l.tar"}]': "Layers must be a list of strings",
        b'[{"Config": "c.json", "RepoTags": [1]}]': "RepoTags must be a list of strings",
        b'["x"]': "entry 0 is not an object",
        b"[]": "manifest.json lists no image",
    }
    for manifest, message in cases.items():
        path = tmp_path / "bad.tar"
        _tar(path, {"manifest.json": manifest, "c.json": b"{}"})
        result = bb("load", "-i", str(path))
        assert result.returncode == 1, manifest
        assert len(result.error_lines) == 1 and message in result.stderr, (manifest, result.stderr)
