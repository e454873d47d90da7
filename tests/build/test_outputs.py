"""``-o`` exports: a docker archive that a real dockerd loads and runs, the flattened filesystem as a tar
(to a file or stdout), and the bad output specs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.build.conftest import assert_nothing_left, read_tar

APP = ('FROM busybox AS tools\n'
       "RUN mkdir -p /out && printf '#!/bin/sh\\necho hello from the app\\n' > /out/hello.sh && "
       'chmod 755 /out/hello.sh\n'
       'FROM busybox\n'
       'COPY --from=tools /out/hello.sh /usr/local/bin/hello\n'
       'RUN rm /bin/vi && ln -s /usr/local/bin/hello /hello-link\n'
       'LABEL org.example.app=yes\n'
       'CMD ["hello"]\n')
CGROUP_PARENT = "pallet-test-dockerd"


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted at or below ``directory``, deepest first."""
    prefix = str(directory)
    with open("/proc/self/mountinfo") as handle:
        points = [line.split()[4] for line in handle]
    for point in sorted({p for p in points if p == prefix or p.startswith(prefix + "/")}, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture
def dockerd(tmp_path):
    """Debian's dockerd on private roots (no iptables, no bridge, its containers under a cgroup parent of
    its own); yields the docker command prefix. Stopped, unmounted and its cgroups removed afterwards."""
    work = Path(f"/tmp/pallet-dockerd-{os.getpid()}-{os.urandom(3).hex()}")  # short: the socket path has a limit
    work.mkdir()
    sock = work / "d.sock"
    log = open(tmp_path / "dockerd.log", "wb")
    daemon = subprocess.Popen(
        ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "-H", f"unix://{sock}",
         "--data-root", str(work / "data"), "--exec-root", str(work / "exec"), "--pidfile", str(work / "pid"),
         "--cgroup-parent", CGROUP_PARENT],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    prefix = ["docker", "-H", f"unix://{sock}"]
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([*prefix, "version"], capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start: {(tmp_path / 'dockerd.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield prefix
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)  # its containerd, if it outlived it
        log.close()
        unmount_under(work)  # dockerd does not always unmount its own (exec-root/netns/default)
        shutil.rmtree(work, ignore_errors=True)
        for controller in Path("/sys/fs/cgroup").iterdir():
            with contextlib.suppress(OSError):
                (controller / CGROUP_PARENT).rmdir()


def test_docker_export_loads_into_dockerd_and_runs(build, dockerd, tmp_path):
    archive = tmp_path / "app.tar"
    result = build(APP, {}, "-t", "app:1", "-t", "example/app:2", "-o", f"type=docker,dest={archive}")
    loaded = subprocess.run([*dockerd, "load", "-i", str(archive)], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.splitlines() == ["Loaded image: app:1", "Loaded image: example/app:2"]
    inspected = json.loads(subprocess.run([*dockerd, "image", "inspect", "app:1"], capture_output=True,
                                          check=True).stdout)[0]
    assert inspected["Id"] == result.image_id  # the same config: dockerd computes the same image id
    assert inspected["Config"]["Cmd"] == ["hello"]
    assert inspected["Config"]["Labels"] == {"org.example.app": "yes"}
    assert inspected["RootFS"]["Layers"] == build.config("app:1")["RootFS"]["Layers"]
    run = subprocess.run([*dockerd, "run", "--rm", "--network", "none", "example/app:2"], capture_output=True,
                         text=True, timeout=120)
    assert (run.returncode, run.stdout) == (0, "hello from the app\n"), run.stderr
    gone = subprocess.run([*dockerd, "run", "--rm", "--network", "none", "app:1", "ls", "/bin/vi"],
                          capture_output=True, text=True, timeout=120)
    assert gone.returncode != 0  # the RUN's whiteout holds in docker's overlay too
    # name= names the archive's image instead of the tags
    named = tmp_path / "named.tar"
    build(APP, {}, "-o", f"type=docker,dest={named},name=renamed:7")
    loaded = subprocess.run([*dockerd, "load", "-i", str(named)], capture_output=True, text=True, check=True)
    assert loaded.stdout.splitlines() == ["Loaded image: renamed:7"]


def test_tar_export_is_the_flattened_filesystem(build, tmp_path):
    dest = tmp_path / "fs.tar"
    build(APP, {}, "-t", "flat", "-o", f"type=tar,dest={dest}")
    with tarfile.open(dest) as tar:
        names = tar.getnames()
    assert names == sorted(names, key=lambda n: n.split("/"))   # parents first, entries in a fixed order
    fs = read_tar(dest.read_bytes())
    hello = fs["usr/local/bin/hello"]
    assert hello.data == b"#!/bin/sh\necho hello from the app\n" and stat.S_IMODE(hello.mode) == 0o755
    assert fs["hello-link"].issym() and fs["hello-link"].linkname == "/usr/local/bin/hello"
    assert "bin/vi" not in fs and "bin/busybox" in fs                  # the whiteout is applied, not shipped
    assert not [n for n in names if ".wh." in n]
    assert not [n for n in names if n in ("etc/hosts", "etc/resolv.conf", "etc/hostname")]  # no RUN stubs
    # the same with -o - on stdout, and stdout then holds only the tar (no image id after it)
    piped = subprocess.run(build.pallet.command("build", "-q", "-o", "-", str(build.tmp / f"ctx{build.count}")),
                           capture_output=True, cwd=str(Path(__file__).resolve().parents[2]), env=build.pallet.env)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == dest.read_bytes()
    # a tar export loads as a plain filesystem: docker import / pallet import of it runs the app
    imported = build.pallet("import", str(dest), "flat-import", check=True)
    assert imported.returncode == 0
    assert build.pallet("run", "--rm", "flat-import", "hello", check=True).stdout == "hello from the app\n"
    assert_nothing_left(build.pallet)


def test_docker_export_to_stdout_loads_into_pallet(build, tmp_path):
    piped = subprocess.run(build.pallet.command("build", "-t", "piped:1", "-o", "type=docker,dest=-",
                                                str(_context(build, APP))),
                           capture_output=True, cwd=str(Path(__file__).resolve().parents[2]), env=build.pallet.env)
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
    assert manifest[0]["RepoTags"] == ["piped:1"]
    archive = tmp_path / "piped.tar"
    archive.write_bytes(piped.stdout)
    from tests.conftest import Pallet

    from tests.conftest import teardown_networks

    other = Pallet(tmp_path / "other-root", tmp_path / "other-run")
    try:
        assert other("load", "-i", str(archive), check=True).stdout.strip() == "Loaded image: piped:1"
        # --network none: the default bridge would be this second root's own (left behind before this)
        assert other("run", "--rm", "--network", "none", "piped:1", check=True).stdout == "hello from the app\n"
        assert_nothing_left(other)
    finally:
        teardown_networks(other)


def _context(build, dockerfile: str) -> Path:
    from tests.build.conftest import write_context

    build.count += 1
    return write_context(build.tmp / f"ctx{build.count}", {"Dockerfile": dockerfile})


@pytest.mark.parametrize("spec, message", [
    ("type=zip,dest=x", 'invalid output "type=zip,dest=x": type must be one of oci, docker, tar, local, image'),
    ("type=tar", 'invalid output "type=tar": dest= is required for type=tar'),
    ("type=local,dest=-", 'invalid output "type=local,dest=-": type=local writes a directory, not stdout '
                          '(type=tar does)'),
    ("type=tar,dest=x,name=a:1", 'invalid output "type=tar,dest=x,name=a:1": name= is only for type=oci or '
                                 'type=docker'),
])
def test_bad_output_specs_are_usage_errors(build, spec, message):
    result = build("FROM busybox\n", {}, "-o", spec, check=False)
    assert result.returncode == 2 and result.error_lines == [f"Error: {message}"]


def test_two_outputs_on_stdout_are_refused(build):
    result = build("FROM busybox\n", {}, "-o", "-", "-o", "type=docker,dest=-", check=False)
    assert result.returncode == 2 and result.error_lines == ["Error: only one output can be written to stdout"]
