"""Bad input and failures: one ``Dockerfile:LINE`` line, exit 1, nothing tagged and nothing left behind,
also after a failing RUN and after SIGKILL of the builder."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.build.conftest import assert_nothing_left, write_context
from tests.conftest import REPO


def error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


BAD = [
    ("FROM busybox\nFOO bar\n", {}, "Error: Dockerfile:2: unknown instruction: foo"),
    ("FROM busybox\nCOPY --bogus=1 a /b\n", {"a": "a"}, "Error: Dockerfile:2: unknown flag: --bogus"),
    ("FROM busybox\nRUN --chown=1 true\n", {}, "Error: Dockerfile:2: unknown flag: --chown (RUN takes --mount, "
                                               "--network, --security)"),   # COPY's flag, not RUN's
    ("FROM busybox\nRUN --mount=type=cache true\n", {}, "Error: Dockerfile:2: --mount=type=cache needs a target"),
    ("FROM busybox\n\nRUN <<EOF\necho hi\n", {}, "Error: Dockerfile:3: unterminated heredoc EOF"),
    ('FROM busybox\nENV A="open\n', {}, "Error: Dockerfile:2: unterminated quote"),
    ('FROM busybox\nWORKDIR "/open\n', {}, "Error: Dockerfile:2: unexpected end of statement while looking for "
                                            "matching double-quote"),
    ("FROM busybox\nCOPY ../outside /x\n", {}, "Error: Dockerfile:2: forbidden path outside the build context"),
    ("FROM busybox\nCOPY sub/../../outside /x\n", {}, "Error: Dockerfile:2: forbidden path outside the build context"),
    ("FROM busybox\nCOPY link/passwd /x\n", {"link": ("->", "/etc")},
     "Error: Dockerfile:2: forbidden path outside the build context"),
    ("FROM busybox\nCOPY missing.txt /x\n", {}, 'Error: Dockerfile:2: "missing.txt": not found in the build context'),
    ("FROM busybox\nCOPY --from=nostage /x /y\n", {}, 'Error: Dockerfile:2: --from=nostage: no build stage named'),
    ("ARG IMAGE\nFROM $IMAGE\n", {}, "Error: Dockerfile:2: FROM uses ARG IMAGE, which has no value"),
    ("ARG TAG\nFROM busybox:${TAG}\n", {}, "Error: Dockerfile:2: FROM uses ARG TAG, which has no value"),
    ("FROM busybox AS a\nCOPY --from=b /x /y\nFROM busybox AS b\nCOPY --from=a /x /y\n", {},
     "Error: Dockerfile:3: circular dependency detected between stages: b -> a -> b"),
    ("FROM busybox\nENV A=\"${B:?must be set}\"\n", {}, "Error: Dockerfile:2: B: must be set"),
    ("FROM busybox\nEXPOSE 80/xyz\n", {}, 'Error: Dockerfile:2: invalid proto "xyz"'),
    ("FROM busybox\nCOPY a b /notadir\n", {"a": "", "b": ""}, "Error: Dockerfile:2: when using COPY with more than "
                                                             "one source file, the destination must be a directory"),
    ("FROM busybox\nCOPY --chown=ghost a /a\n", {"a": ""}, "Error: Dockerfile:2: unable to find user ghost"),
    ("LABEL a=b\nFROM busybox\n", {}, "Error: Dockerfile:1: LABEL before the first FROM"),
    ("FROM --platform=linux/riscv64 busybox\n", {}, "Error: Dockerfile:1: FROM --platform=linux/riscv64: only the "
                                                    "host's platform"),
    ("# escape=x\nFROM busybox\n", {}, "Error: Dockerfile:1: invalid escape token"),
]


@pytest.mark.parametrize("dockerfile, files, expected", BAD, ids=[b[2][7:60] for b in BAD])
def test_bad_dockerfile_is_one_line_with_its_position(build, dockerfile, files, expected):
    result = build(dockerfile, files, "-t", "never", check=False)
    assert result.returncode == 1
    assert error_line(result).startswith(expected), result.stderr
    assert "never" not in build.pallet("images", check=True).stdout
    assert_nothing_left(build.pallet)


def test_target_naming_no_stage(build):
    result = build("FROM busybox AS a\n", {}, "--target", "b", check=False)
    assert result.returncode == 1 and error_line(result) == 'Error: Dockerfile: target stage "b" could not be found'


def test_context_tar_with_parent_entries_is_refused(build, tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in (("Dockerfile", b"FROM busybox\n"), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    result = build.pallet("build", str(archive))
    assert result.returncode == 1
    assert error_line(result) == 'Error: the context tarball has an entry outside the context: "../escape"'
    assert not (tmp_path / "escape").exists()
    assert not list((build.pallet.run_root / "build" / "contexts").iterdir())


def test_a_two_gigabyte_line_is_refused_without_reading_it(build, tmp_path):
    context = write_context(tmp_path / "huge", {})
    with open(context / "Dockerfile", "wb") as handle:
        handle.write(b"FROM busybox\nRUN echo ")
        handle.truncate(2 << 30)  # sparse: 2 GB on the line without 2 GB on disk
    result = build.pallet("build", str(context))
    assert result.returncode == 1
    assert error_line(result) == "Error: Dockerfile:2: line is longer than 1 MiB"


def test_missing_dockerfile_and_context(build, tmp_path):
    (tmp_path / "empty").mkdir()
    result = build.pallet("build", str(tmp_path / "empty"))
    assert result.returncode == 1 and "failed to read dockerfile" in error_line(result)
    result = build.pallet("build", str(tmp_path / "nothing-here"))
    assert result.returncode == 1 and "unable to prepare context" in error_line(result)


def test_failing_run_stops_with_its_code_and_output_and_leaves_nothing(build):
    result = build('FROM busybox\nRUN echo first > /f\nRUN echo some output; echo more >&2; exit 7\n'
                   'RUN echo never > /n\n', {}, "-t", "broken", check=False)
    assert result.returncode == 1
    assert error_line(result) == ("Error: Dockerfile:3: RUN echo some output; echo more >&2; exit 7 "
                                  "returned a non-zero code: 7")
    assert "  > some output" in result.stderr and "  > more" in result.stderr
    assert "never" not in result.stderr
    assert "broken" not in build.pallet("images", check=True).stdout
    assert_nothing_left(build.pallet)
    assert build.pallet("run", "--rm", "busybox", "true").returncode == 0


def _start_slow_build(pallet, context):
    cmd = [sys.executable, "-m", "pallet.kernel.cli", "--root", str(pallet.root), "--run-root", str(pallet.run_root),
           "build", "--progress", "plain", "-t", "killed", str(context)]
    proc = subprocess.Popen(cmd, cwd=str(REPO), env=pallet.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stderr:
        if "started" in line:
            break
    return proc


def test_ctrl_c_stops_the_build_and_removes_everything(build, tmp_path):
    context = write_context(tmp_path / "slow", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    proc = _start_slow_build(build.pallet, context)
    try:
        assert build.pallet("ps", "-aq", check=True).stdout.strip() != ""
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
    assert "killed" not in build.pallet("images", check=True).stdout
    assert_nothing_left(build.pallet)


def test_sigkill_of_the_builder_is_cleaned_up_by_the_next_build(build, tmp_path):
    context = write_context(tmp_path / "slow", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    pallet = build.pallet
    proc = _start_slow_build(pallet, context)
    try:
        assert pallet("ps", "-aq", check=True).stdout.strip() != ""
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
    assert list((pallet.run_root / "build").glob("*.json"))   # the journal outlived its builder
    deadline = time.monotonic() + 30
    result = build("FROM busybox\nLABEL after=kill\n", {})
    assert result.returncode == 0 and time.monotonic() < deadline
    assert "killed" not in pallet("images", check=True).stdout
    assert_nothing_left(pallet)


def test_sigkill_of_the_builder_is_cleaned_up_by_any_next_command(build, tmp_path):
    context = write_context(tmp_path / "slow", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    pallet = build.pallet
    proc = _start_slow_build(pallet, context)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert list((pallet.run_root / "build").glob("*.json"))
    assert pallet("images", check=True).returncode == 0      # not a build: any command that opens the store
    assert not list((pallet.run_root / "build").glob("*.json"))
    assert_nothing_left(pallet)


def test_a_failing_stage_stops_its_parallel_sibling(build):
    result = build("FROM busybox AS slow\nRUN echo started; sleep 120\nFROM busybox AS bad\nRUN exit 4\n"
                   "FROM scratch\nCOPY --from=slow / /a\nCOPY --from=bad / /b\n", {}, check=False)
    assert result.returncode == 1
    assert error_line(result).startswith("Error: Dockerfile:4: RUN exit 4 returned a non-zero code: 4")
    assert_nothing_left(build.pallet)
