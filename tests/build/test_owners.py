"""Owners and modes of what COPY and ADD write: --chown with build variables, ADD --chown/--chmod on files,
directories, URLs and archives."""

from __future__ import annotations

import io
import stat
import tarfile

from tests.build.conftest import assert_nothing_left
from tests.build.test_cache import cached_steps
from tests.build.test_instructions import http_server  # noqa: F401  (a loopback HTTP server)


def owner(entry) -> tuple[int, int, int]:
    return entry.uid, entry.gid, stat.S_IMODE(entry.mode)


def test_copy_chown_expands_build_args_and_env(build):
    dockerfile = ("FROM busybox\n"
                  "ARG UID=1234\n"
                  "ARG GID=5678\n"
                  "ENV OWNER=nobody\n"
                  "COPY --chown=${UID}:${GID} a.txt /by-args\n"
                  "COPY --chown=$UID a.txt /uid-only\n"
                  "COPY --chown=${OWNER} a.txt /by-env-name\n"
                  "COPY --chown=${MISSING:-42}:${OWNER} a.txt /default-and-group-name\n")
    build(dockerfile, {"a.txt": "a\n"}, "-t", "owners", "--build-arg", "GID=777")
    fs = build.filesystem("owners")
    assert owner(fs["by-args"]) == (1234, 777, 0o644)      # --build-arg overrides the ARG's default
    assert owner(fs["uid-only"]) == (1234, 1234, 0o644)    # a uid without a gid: the same number, as Docker
    assert owner(fs["by-env-name"]) == (65534, 65534, 0o644)  # a name: the image's /etc/passwd, its group
    assert owner(fs["default-and-group-name"]) == (42, 65534, 0o644)
    # the expanded owner is in the step key: another UID re-runs the COPY
    again = build(dockerfile, {"a.txt": "a\n"}, "-t", "owners2", "--build-arg", "GID=777", "--build-arg", "UID=99")
    assert cached_steps(again.stderr)["COPY --chown=${UID}:${GID} a.txt /by-args"] is False
    assert owner(build.filesystem("owners2")["by-args"]) == (99, 777, 0o644)


def test_copy_chown_of_an_unknown_variable_name_fails_on_its_line(build):
    result = build("FROM busybox\nARG WHO=ghost\nCOPY --chown=$WHO a.txt /a\n", {"a.txt": ""}, check=False)
    assert result.returncode == 1
    assert result.error_lines[-1] == "Error: Dockerfile:3: unable to find user ghost: no matching entries in passwd file"


def test_copy_and_add_chmod_expand_build_variables_in_every_form(build):
    dockerfile = ("FROM busybox AS src\n"
                  "RUN echo made > /made\n"
                  "FROM busybox\n"
                  "ARG MODE=0755\n"
                  "ARG UID=1234\n"
                  "ENV EMODE=600 OWNER=nobody\n"
                  "COPY --chmod=${EMODE} --chown=${OWNER} a.txt /by-env\n"
                  "ADD --chmod=${MISSING:-0640} --chown=$UID:$UID a.txt /by-default\n"
                  "COPY --chmod=$MODE a.txt /by-arg\n"
                  "COPY --link --chmod=$MODE --chown=$UID a.txt /linked\n"
                  "COPY --from=src --chmod=$EMODE --chown=${UID}:7 /made /from-stage\n"
                  "COPY --chmod=$MODE <<EOF /heredoc\nhello\nEOF\n")
    build(dockerfile, {"a.txt": ("a\n", 0o644)}, "-t", "modes")
    fs = build.filesystem("modes")
    assert owner(fs["by-arg"]) == (0, 0, 0o755)
    assert owner(fs["by-env"]) == (65534, 65534, 0o600)
    assert owner(fs["by-default"]) == (1234, 1234, 0o640)
    assert owner(fs["linked"]) == (1234, 1234, 0o755)
    assert owner(fs["from-stage"]) == (1234, 7, 0o600) and fs["from-stage"].data == b"made\n"
    assert owner(fs["heredoc"]) == (0, 0, 0o755) and fs["heredoc"].data == b"hello\n"
    # another MODE is not served the first build's layers (a --link COPY is keyed without its parent)
    again = build(dockerfile, {"a.txt": ("a\n", 0o644)}, "-t", "modes2", "--build-arg", "MODE=0700")
    assert cached_steps(again.stderr)["COPY --link --chmod=$MODE --chown=$UID a.txt /linked"] is False
    fs = build.filesystem("modes2")
    assert owner(fs["by-arg"]) == (0, 0, 0o700) and owner(fs["linked"]) == (1234, 1234, 0o700)


def test_onbuild_copy_expands_chmod_and_chown_in_the_child(build):
    build("FROM busybox\nENV MODE=0700 WHO=nobody\nONBUILD COPY --chmod=$MODE --chown=$WHO a.txt /triggered\n",
          {}, "-t", "onbuild-parent")
    build("FROM onbuild-parent\n", {"a.txt": "t\n"}, "-t", "onbuild-child")
    assert owner(build.filesystem("onbuild-child")["triggered"]) == (65534, 65534, 0o700)


def test_chmod_that_expands_to_no_octal_mode_fails_on_its_line(build, pallet):
    result = build("FROM busybox\nARG MODE=u+x\nCOPY --chmod=$MODE a.txt /a\n", {"a.txt": ""}, "-t", "badmode",
                   check=False)
    assert result.returncode == 1
    assert result.error_lines[-1] == ('Error: Dockerfile:3: invalid --chmod "u+x" (octal like 755; symbolic modes '
                                      'are not supported)')
    assert pallet("image", "inspect", "badmode").returncode == 1
    assert_nothing_left(pallet)
    written = build("FROM busybox\nCOPY --chmod=u+x a.txt /a\n", {"a.txt": ""}, check=False)  # caught at parse
    assert written.error_lines[-1] == ('Error: Dockerfile:2: invalid --chmod "u+x" (octal like 755; symbolic '
                                       'modes are not supported)')


def test_add_chown_and_chmod_on_files_directories_and_urls(build, http_server):  # noqa: F811
    root, base = http_server
    (root / "remote.sh").write_text("echo remote\n")
    build("FROM busybox\n"
          "ADD --chown=42:43 --chmod=750 tool.sh /opt/tool.sh\n"
          "ADD --chown=nobody:nobody --chmod=700 tree /tree/\n"
          "ADD --chmod=644 tool.sh /mode-only\n"
          "ADD --chown=7 tool.sh /owner-only\n"
          f"ADD --chown=42:43 --chmod=755 {base}/remote.sh /remote/\n"
          f"ADD --chown=42:43 {base}/remote.sh /remote-default-mode\n",
          {"tool.sh": ("echo local\n", 0o600), "tree/x": ("x", 0o644), "tree/sub/y": ("y", 0o640)}, "-t", "added")
    fs = build.filesystem("added")
    assert owner(fs["opt/tool.sh"]) == (42, 43, 0o750) and fs["opt/tool.sh"].data == b"echo local\n"
    assert owner(fs["tree/x"]) == (65534, 65534, 0o700) and owner(fs["tree/sub/y"]) == (65534, 65534, 0o700)
    assert owner(fs["tree/sub"]) == (65534, 65534, 0o700)   # --chmod applies to the copied directories too
    assert owner(fs["mode-only"]) == (0, 0, 0o644)
    assert owner(fs["owner-only"]) == (7, 7, 0o600)         # the source's mode is kept without --chmod
    assert owner(fs["remote/remote.sh"]) == (42, 43, 0o755) and fs["remote/remote.sh"].data == b"echo remote\n"
    assert owner(fs["remote-default-mode"]) == (42, 43, 0o600)  # a download is 0600 unless --chmod says


def test_add_chown_on_an_archive_owns_the_destination_not_the_entries(build):
    # As Docker's builders: an unpacked archive keeps its entries' owners; --chown applies to the
    # directories ADD makes for the destination.
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("./in/f")  # "./" names, as `tar -C dir -cf x.tar .` writes them
        info.size, info.mode, info.uid, info.gid = 2, 0o640, 1234, 99
        tar.addfile(info, io.BytesIO(b"ok"))
    result = build("FROM busybox\nADD --chown=42:43 pack.tar /unpacked/\n", {"pack.tar": archive.getvalue()},
                   "-t", "unpacked")
    fs = build.filesystem("unpacked")
    assert owner(fs["unpacked"]) == (42, 43, 0o755)
    assert owner(fs["unpacked/in/f"]) == (1234, 99, 0o640) and fs["unpacked/in/f"].data == b"ok"
    # the parent the archive lacks is in the layer itself (root-owned, 0755), dated like the rest of it
    from tests.build.test_instructions import _layer_blob_for

    doc = build.document(result.image_id)
    layer = tarfile.open(fileobj=io.BytesIO(_layer_blob_for(build, result.image_id, doc["rootfs"]["diff_ids"][-1])))
    members = {m.name.rstrip("/"): m for m in layer}
    assert sorted(members) == ["unpacked", "unpacked/in", "unpacked/in/f"]
    parent = members["unpacked/in"]
    assert parent.isdir() and (parent.uid, parent.gid, stat.S_IMODE(parent.mode)) == (0, 0, 0o755)
    assert parent.mtime == members["unpacked"].mtime
