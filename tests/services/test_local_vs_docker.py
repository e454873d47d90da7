"""The json-file and local drivers side by side with dockerd's (Debian's docker.io, a private daemon
this module starts and stops): the same options accepted or refused in the same words, the same
rotated files, and the same newest lines shown by ``logs --tail``."""

from __future__ import annotations

import contextlib
import gzip
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.containers.conftest import record

pytestmark = pytest.mark.skipif(shutil.which("dockerd") is None, reason="dockerd is not installed")

LINES = 'i=0; while [ $i -lt 300 ]; do echo "line-$i"; i=$((i+1)); done'


@pytest.fixture(scope="module")
def dockerd(tmp_path_factory):
    """A private dockerd (no iptables, no bridge) with pallet's busybox loaded: the docker command prefix."""
    work = tmp_path_factory.mktemp("dockerd")
    sock = work / "docker.sock"
    log = open(work / "dockerd.log", "wb")
    daemon = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "-H", f"unix://{sock}",
         "--data-root", str(work / "data"), "--exec-root", str(work / "exec"), "--pidfile", str(work / "pid")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prefix = ["docker", "-H", f"unix://{sock}"]
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*prefix, "info"], capture_output=True).returncode != 0:
            assert daemon.poll() is None and time.monotonic() < deadline, (work / "dockerd.log").read_text()[-2000:]
            time.sleep(0.3)
        yield prefix, work / "data"
    finally:
        with contextlib.suppress(Exception):
            ids = subprocess.run([*prefix, "ps", "-aq"], capture_output=True, text=True, timeout=30).stdout.split()
            if ids:
                subprocess.run([*prefix, "rm", "-f", *ids], capture_output=True, timeout=60)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()
        for directory in ("data", "exec"):
            subprocess.run(["umount", "-R", str(work / directory)], capture_output=True)


@pytest.fixture
def both(bb, dockerd, tmp_path):
    """(pallet, docker prefix, docker data root), the same busybox image in each."""
    prefix, data = dockerd
    archive = tmp_path / "busybox.tar"
    bb("save", "-o", str(archive), "busybox", check=True)
    subprocess.run([*prefix, "load", "-q", "-i", str(archive)], check=True, capture_output=True, timeout=120)
    return bb, prefix, data


def _docker(prefix, *args, check=False):
    return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120, check=check)


def _docker_error(result) -> str:
    """Docker's first error line without the CLI's and the daemon's prefixes."""
    line = result.stderr.splitlines()[0]
    for prefix in ("docker: ", "Error response from daemon: ", "failed to initialize logging driver: "):
        line = line.removeprefix(prefix)
    return line.rstrip(".")


# (driver, options, what both say, or None when both accept; "...X" compares the end only)
CASES = [
    ("json-file", ["foo=bar"], "unknown log opt 'foo' for json-file log driver"),
    ("local", ["foo=bar"], "unknown log opt 'foo' for log driver local"),
    ("local", ["tag=x"], "unknown log opt 'tag' for log driver local"),
    ("json-file", ["tag=x", "labels=a", "env=b"], None),
    ("json-file", ["max-file=0"], "max-file cannot be less than 1"),
    ("json-file", ["max-size=0"], "max-size must be a positive number"),
    ("local", ["max-size=0"], None),
    ("json-file", ["max-size=1x"], "...invalid size: '1x'"),
    ("local", ["max-size=1x"], "...invalid size: '1x'"),
    ("local", ["max-size=-1"], "...invalid size: '-1'"),
    ("json-file", ["max-file=1"], None),
    ("json-file", ["max-size=1m", "max-file=1", "compress=true"],
     "compress cannot be true when max-file is less than 2 or max-size is not set"),
    ("local", ["max-file=1"], "compression cannot be enabled when max file count is 1"),
    ("local", ["max-file=1", "compress=false"], None),
    ("local", ["max-size=2k", "max-file=2", "compress=true"], None),
    ("json-file", ["max-size=2k", "max-file=2", "compress=true"], None),
    ("local", ["mode=sometimes"], "logger: logging mode not supported: sometimes"),
    ("json-file", ["mode=blocking", "max-buffer-size=4k"],
     "logger: max-buffer-size option is only supported with 'mode=non-blocking'"),
    ("local", ["mode=non-blocking", "max-buffer-size=4k"], None),
    ("local", ["mode=non-blocking", "max-buffer-size=4q"], "...invalid size: '4q'"),
]


def test_options_are_accepted_and_refused_as_dockerd_does(both):
    pallet, prefix, _data = both
    for driver, options, expected in CASES:
        flags = [arg for option in options for arg in ("--log-opt", option)]
        ours = pallet("run", "--rm", "--log-driver", driver, *flags, "busybox", "true")
        theirs = _docker(prefix, "run", "--rm", "--network", "none", "--log-driver", driver, *flags, "busybox", "true")
        case = (driver, options, ours.stderr, theirs.stderr)
        if expected is None:
            assert (ours.returncode, theirs.returncode) == (0, 0), case
            continue
        assert (ours.returncode, theirs.returncode) == (125, 125) and len(ours.error_lines) == 1, case
        mine = ours.error_lines[0].removeprefix("Error: ")
        if expected.startswith("..."):
            assert mine.endswith(expected[3:]) and _docker_error(theirs).endswith(expected[3:]), case
        else:
            assert mine == expected == _docker_error(theirs), case


def _pallet_files(pallet, name):
    log = Path(record(pallet, name)["LogPath"])
    return log, sorted(p.name[len(log.name):] for p in log.parent.iterdir() if p.name.startswith(log.name))


def _docker_files(prefix, data, name, expected):
    cid = _docker(prefix, "inspect", "-f", "{{.Id}}", name, check=True).stdout.strip()
    directory = data / "containers" / cid / "local-logs"

    def names():
        return sorted(p.name.removeprefix("container.log") for p in directory.iterdir())
    for _ in range(100):   # dockerd compresses a rotated file in the background: give it 10 s
        if names() == expected:
            break
        time.sleep(0.1)
    return directory, names()


@pytest.mark.parametrize("compress", ["true", "false"])
def test_local_rotates_into_the_same_files_and_tails_the_same_lines_as_dockerd(both, compress):
    pallet, prefix, data = both
    options = ["--log-opt", "max-size=2k", "--log-opt", "max-file=3", "--log-opt", f"compress={compress}"]
    pallet("run", "--name", "cmp-local", "--log-driver", "local", *options, "busybox", "sh", "-c", LINES, check=True)
    _docker(prefix, "run", "--name", "cmp-local", "--network", "none", "--log-driver", "local", *options,
            "busybox", "sh", "-c", LINES, check=True)
    try:
        suffix = ".gz" if compress == "true" else ""
        expected = ["", f".1{suffix}", f".2{suffix}"]
        log, ours = _pallet_files(pallet, "cmp-local")
        directory, theirs = _docker_files(prefix, data, "cmp-local", expected)
        assert ours == expected and theirs == expected, (ours, theirs)
        for name in expected[1:]:   # the rotated files are gzip'ed, or not, alike
            for path in (Path(f"{log}{name}"), directory / f"container.log{name}"):
                assert (path.read_bytes()[:2] == b"\x1f\x8b") == (compress == "true"), path
                raw = path.read_bytes()
                assert len(gzip.decompress(raw) if compress == "true" else raw) <= 2048
        # both keep a contiguous newest tail (Docker's entries are smaller, so its tail is longer)
        mine = pallet("logs", "cmp-local", check=True).stdout.splitlines()
        docker = _docker(prefix, "logs", "cmp-local", check=True).stdout.splitlines()
        for kept in (mine, docker):
            first = int(kept[0].split("-")[1])
            assert kept == [f"line-{n}" for n in range(first, 300)] and first > 0, kept
        assert len(mine) > 40
        assert pallet("logs", "--tail", "40", "cmp-local", check=True).stdout == \
            _docker(prefix, "logs", "--tail", "40", "cmp-local", check=True).stdout == \
            "".join(f"line-{n}\n" for n in range(260, 300))
    finally:
        _docker(prefix, "rm", "-f", "cmp-local")
