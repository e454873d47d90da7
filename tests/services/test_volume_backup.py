"""volume export/import/rename/clone: owners, modes, xattrs and links survive, byte for byte."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile

from tests.containers.conftest import bb  # noqa: F401  (the fixture)


def _raw(bb, *args, input: bytes | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(bb.root), "--run-root", str(bb.run_root), *args]
    return subprocess.run(cmd, capture_output=True, env=bb.env, input=input)


def _data(bb, name):
    return bb.root / "volumes" / name / "_data"


def _fill(top):
    """A little of everything a volume may hold, the awkward parts included."""
    (top / "sub").mkdir()
    (top / "sub" / "f").write_bytes(b"payload\n")
    os.link(top / "sub" / "f", top / "hard")
    os.symlink("sub/f", top / "sym")
    os.mkfifo(top / "fifo")
    os.chmod(top / "sub" / "f", 0o4750)
    os.chown(top / "sub", 1234, 567)
    os.chmod(top / "sub", 0o1770)
    os.setxattr(top / "sub" / "f", "user.note", b"bin\xff\x00ary")
    os.setxattr(top / "sub", "user.dir", b"d")
    os.utime(top / "sub" / "f", (1_000_000_000, 1_000_000_000))


def test_export_import_round_trip_is_byte_identical_and_keeps_owners_modes_xattrs(bb, tmp_path):
    bb("volume", "create", "src", check=True)
    _fill(_data(bb, "src"))
    first = _raw(bb, "volume", "export", "src")
    assert first.returncode == 0, first.stderr
    names = tarfile.open(fileobj=io.BytesIO(first.stdout)).getnames()
    assert names == [".", "./fifo", "./hard", "./sub", "./sym", "./sub/f"]  # each directory's entries sorted
    (tmp_path / "v.tar").write_bytes(first.stdout)
    assert bb("volume", "import", "copy", str(tmp_path / "v.tar"), check=True).stdout.strip() == "copy"
    again = _raw(bb, "volume", "export", "copy")
    assert again.stdout == first.stdout
    top = _data(bb, "copy")
    st = os.lstat(top / "sub" / "f")
    assert oct(st.st_mode & 0o7777) == oct(0o4750) and st.st_mtime == 1_000_000_000
    assert os.lstat(top / "sub").st_uid == 1234 and os.lstat(top / "sub").st_gid == 567
    assert oct(os.lstat(top / "sub").st_mode & 0o7777) == oct(0o1770)
    assert os.getxattr(top / "sub" / "f", "user.note") == b"bin\xff\x00ary"
    assert os.getxattr(top / "sub", "user.dir") == b"d"
    assert os.readlink(top / "sym") == "sub/f" and os.lstat(top / "hard").st_ino == st.st_ino
    # a container sees the imported data
    assert bb("run", "--rm", "-v", "copy:/data", "busybox", "cat", "/data/sub/f", check=True).stdout == "payload\n"
    piped = _raw(bb, "volume", "import", "piped", "-", input=first.stdout)
    assert piped.returncode == 0 and _raw(bb, "volume", "export", "piped").stdout == first.stdout
    bb("volume", "export", "-o", str(tmp_path / "o.tar"), "src", check=True)
    assert (tmp_path / "o.tar").read_bytes() == first.stdout


def test_clone_copies_content_and_labels_and_rename_moves_an_unused_volume(bb):
    bb("volume", "create", "--label", "tier=db", "orig", check=True)
    _fill(_data(bb, "orig"))
    exported = _raw(bb, "volume", "export", "orig").stdout
    assert bb("volume", "clone", "orig", "twin", check=True).stdout.strip() == "twin"
    assert _raw(bb, "volume", "export", "twin").stdout == exported
    assert "tier=db" in bb("volume", "ls", "--format", "{{.Name}} {{.Labels}}", check=True).stdout.split("\n")[1]
    assert bb("volume", "rename", "twin", "moved", check=True).stdout.strip() == "moved"
    names = bb("volume", "ls", "-q", check=True).stdout.split()
    assert names == ["moved", "orig"]
    assert _raw(bb, "volume", "export", "moved").stdout == exported
    assert not (bb.root / "volumes" / "twin").exists()


def test_bad_input_is_one_line(bb, tmp_path):
    bb("volume", "create", "busy", check=True)
    bb("run", "-d", "--name", "holder", "-v", "busy:/data", "busybox", "sleep", "60", check=True)
    cid = bb("inspect", "--format", "{{.Id}}", "holder", check=True).stdout.strip()
    cases = [
        (("volume", "rename", "busy", "other"), f"Error: volume rename: volume busy is in use - [{cid}] "
                                                 "(stop and remove those containers first)"),
        (("volume", "rename", "nope", "other"), "Error: No such volume: nope"),
        (("volume", "rename", "busy", "bad/name"), 'Error: invalid volume name "bad/name": only '
                                                    '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed, at least two characters'),
        (("volume", "export", "nope"), "Error: No such volume: nope"),
        (("volume", "clone", "busy", "busy"), "Error: volume clone: volume busy already exists"),
        (("volume", "import", "busy", str(tmp_path / "missing.tar")),
         f"Error: volume import: cannot read {tmp_path / 'missing.tar'}: No such file or directory"),
    ]
    for args, line in cases:
        result = bb(*args)
        assert result.returncode != 0 and result.error_lines == [line], (args, result.stderr)
    bb("exec", "holder", "touch", "/data/x", check=True)
    bb("volume", "create", "small", check=True)
    (tmp_path / "small.tar").write_bytes(_raw(bb, "volume", "export", "small").stdout)
    full = bb("volume", "import", "busy", str(tmp_path / "small.tar"))
    assert full.returncode == 1 and full.error_lines == [
        "Error: volume import: volume busy is not empty (import into a new or empty volume)"]
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    junk = bb("volume", "import", "fresh", str(tmp_path / "junk.tar"))
    assert junk.returncode == 1 and len(junk.error_lines) == 1 and "not a tar archive" in junk.error_lines[0]
    assert "fresh" not in bb("volume", "ls", "-q", check=True).stdout.split()  # a failed import leaves no volume
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        link = tarfile.TarInfo("./esc")
        link.type, link.linkname = tarfile.SYMTYPE, str(tmp_path)
        tar.addfile(link)
        payload = tarfile.TarInfo("./esc/pwned")
        payload.size = 2
        tar.addfile(payload, io.BytesIO(b"x\n"))
    escaped = _raw(bb, "volume", "import", "evil", "-", input=evil.getvalue())
    assert escaped.returncode == 1 and b"goes through a link out of the volume" in escaped.stderr
    assert not (tmp_path / "pwned").exists()
    bb("rm", "-f", "holder", check=True)
