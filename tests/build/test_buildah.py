"""The same Dockerfiles built by pallet and by Debian's buildah: image configs and flattened filesystems agree.

buildah runs with its own root, runc and cgroupfs (its default crun refuses this host's hybrid
cgroups), and the vfs driver. Differences that are legitimate are normalised in one place
(:func:`comparable_config`, :func:`flatten`) with the reason next to them.
"""

from __future__ import annotations

import io
import json
import resource
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.build.conftest import write_context

BUILDAH = shutil.which("buildah")
pytestmark = pytest.mark.skipif(BUILDAH is None, reason="buildah is not installed (scripts/setup.sh installs it)")

CONFIG_KEYS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Volumes", "Labels", "StopSignal",
               "Healthcheck", "OnBuild")


class Buildah:
    def __init__(self, home: Path):
        self.home = home
        self.base = [BUILDAH, "--root", str(home / "root"), "--runroot", str(home / "runroot"),
                     "--storage-driver", "vfs"]

    def __call__(self, *args, check=True) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=300)
        if check and proc.returncode != 0:
            raise AssertionError(f"buildah {' '.join(args)} failed: {proc.stderr}")
        return proc

    def bud(self, context: Path, tag: str, *args):
        # --network host, as pallet build's default: buildah's own default would make a CNI bridge
        # (cni-podman0) on the host that outlives the test
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        pid_max = Path("/proc/sys/kernel/pid_max").read_text().strip()
        return self("bud", "--format", "docker", "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--network", "host",
                    "--ulimit", f"nofile={hard}:{hard}", "--ulimit", f"nproc={pid_max}:{pid_max}",
                    "-t", tag, *args, str(context))

    def config(self, tag: str) -> dict:
        return json.loads(self("inspect", "--type", "image", tag).stdout)["Docker"]["config"]

    def filesystem(self, tag: str) -> dict:
        out = self.home / f"dir-{tag}"
        shutil.rmtree(out, ignore_errors=True)
        self("push", tag, f"dir:{out}")
        manifest = json.loads((out / "manifest.json").read_text())
        layers = [(out / layer["digest"].split(":")[1]).read_bytes() for layer in manifest["layers"]]
        return flatten(layers)


def flatten(layers: list[bytes]) -> dict[str, tuple]:
    """Apply tar layers (OCI whiteouts) into ``{path: (type, mode, uid, gid, content or link target)}``."""
    fs: dict[str, tuple] = {}
    for blob in layers:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for member in tar:
                name = member.name.rstrip("/").removeprefix("./")
                head, _, base = name.rpartition("/")
                if base == ".wh..wh..opq":
                    for key in [k for k in fs if k.startswith(head + "/")]:
                        del fs[key]
                    continue
                if base.startswith(".wh."):
                    gone = (head + "/" if head else "") + base[4:]
                    for key in [k for k in fs if k == gone or k.startswith(gone + "/")]:
                        del fs[key]
                    continue
                if not name or name == ".":
                    continue
                if member.islnk():
                    fs[name] = fs[member.linkname.rstrip("/")]
                    continue
                content = tar.extractfile(member).read() if member.isreg() else member.linkname
                fs[name] = (member.type if not member.isreg() else tarfile.REGTYPE, stat.S_IMODE(member.mode),
                            member.uid, member.gid, content)
    return fs


def comparable_config(config: dict) -> dict:
    """Only the fields the issue compares; empty and absent are the same (buildah writes ``[]``/``{}``)."""
    result = {}
    for key in CONFIG_KEYS:
        value = config.get(key)
        if key == "Labels" and value:
            value = {k: v for k, v in value.items() if k != "io.buildah.version"}  # buildah's own label
        if value:
            result[key] = value
    return result


# buildah 1.28 leaves the empty mount-point stubs of its RUN containers (/etc files, /run for
# /run/.containerenv) in the layer; pallet, like BuildKit, drops them. Only these, and only when empty,
# are set aside.
BUILDAH_STUBS = ("etc/hostname", "etc/hosts", "etc/resolv.conf", "run")


@pytest.fixture(scope="module")
def buildah(tmp_path_factory):
    home = tmp_path_factory.mktemp("buildah")
    runner = Buildah(home)
    try:
        yield runner
    finally:
        runner("rm", "--all", check=False)
        subprocess.run(["umount", "-R", str(home / "root")], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def both(build, buildah, tmp_path):
    """Build one context with pallet and buildah (busybox loaded into buildah from pallet's own archive)."""
    archive = tmp_path / "busybox.tar"
    build.pallet("save", "-o", str(archive), "busybox", check=True)
    buildah("pull", "-q", f"docker-archive:{archive}")

    def run(dockerfile: str, files: dict, name: str):
        context = write_context(tmp_path / name, {"Dockerfile": dockerfile, **files})
        result = build.pallet("build", "-q", "-t", name, str(context))
        assert result.returncode == 0, result.stderr
        buildah.bud(context, name)
        ours = comparable_config(build.config(name)["Config"])
        theirs = comparable_config(buildah.config(name))
        return ours, theirs, build.filesystem(name), buildah.filesystem(name)

    return run


def pallet_flat(fs: dict) -> dict[str, tuple]:
    return {name: (e.type if not e.isreg() else tarfile.REGTYPE, stat.S_IMODE(e.mode), e.uid, e.gid,
                   e.data if e.isreg() else e.linkname) for name, e in fs.items()}


def assert_same_files(ours: dict, theirs: dict) -> None:
    ours = pallet_flat(ours)
    for stub in BUILDAH_STUBS:
        if stub not in ours and stub in theirs:
            assert not theirs.pop(stub)[4]
    assert (sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))) == ([], [])
    different = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    assert different == {}


def test_metadata_matches_buildah(both):
    ours, theirs, _fs, _their_fs = both(
        'FROM busybox\nENV A=1 B="two words"\nENV C $A-x\nLABEL one=1 "two"="2 2"\nEXPOSE 80 53/udp\n'
        'VOLUME /data\nUSER nobody\nWORKDIR /srv\nWORKDIR sub\nSTOPSIGNAL SIGUSR1\n'
        'HEALTHCHECK --interval=5s --retries=3 CMD true\nONBUILD RUN echo hi\n'
        'ENTRYPOINT ["/bin/sh", "-c"]\nCMD ["echo hi"]\n', {}, "meta")
    assert ours == theirs


def test_shell_form_commands_match_buildah(both):
    ours, theirs, _fs, _their_fs = both('FROM busybox\nSHELL ["/bin/sh", "-ec"]\nCMD echo $HOME\n'
                                        'ENTRYPOINT exec sh\n', {}, "shellform")
    # pallet follows Docker: SHELL also applies to shell-form CMD and ENTRYPOINT. buildah 1.28 keeps
    # /bin/sh -c for them, so only that differs.
    assert ours["Cmd"] == ["/bin/sh", "-ec", "echo $HOME"] and ours["Entrypoint"] == ["/bin/sh", "-ec", "exec sh"]
    assert theirs["Cmd"] == ["/bin/sh", "-c", "echo $HOME"] and theirs["Entrypoint"] == ["/bin/sh", "-c", "exec sh"]
    assert {k: v for k, v in ours.items() if k not in ("Cmd", "Entrypoint")} == \
        {k: v for k, v in theirs.items() if k not in ("Cmd", "Entrypoint")}


def test_filesystem_matches_buildah(both):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("pkg/data.txt")
        info.size, info.mode, info.uid, info.gid = 4, 0o640, 7, 8
        tar.addfile(info, io.BytesIO(b"data"))
    files = {"a.txt": "alpha", "tool": ("#!/bin/sh\n", 0o755), "dir/x": "x", "dir/deep/y": ("y", 0o600),
             "pkg.tar": archive.getvalue()}
    ours, theirs, our_fs, their_fs = both(
        'FROM busybox AS build\nRUN mkdir -p /out && echo built > /out/artefact && chmod 751 /out/artefact && '
        'mkdir /owned && echo o > /owned/file && chown -R 42:43 /owned\n'
        'FROM busybox\n'
        'RUN rm -rf /var/www /bin/vi && mkdir -m 700 /private && echo p > /private/p && ln -s /private/p /plink\n'
        'COPY a.txt tool /copied/\n'
        'COPY dir /tree/\n'
        'COPY --chown=nobody:nobody --chmod=640 a.txt /owned.txt\n'
        'COPY --from=build /out/artefact /artefact\n'
        'COPY --from=build /owned /kept-owner/\n'
        'COPY --from=build --chown=7:8 /owned /new-owner/\n'
        'ADD pkg.tar /unpacked/\n'
        'WORKDIR /work\n'
        'RUN echo here > in-workdir\n', files, "files")
    assert ours == theirs
    assert_same_files(our_fs, their_fs)
    assert our_fs["owned.txt"].uid == 65534 and our_fs["unpacked/pkg/data.txt"].uid == 7
    # COPY --from keeps the source's owners unless --chown says (as Docker's builders do too)
    assert (our_fs["kept-owner/file"].uid, our_fs["kept-owner/file"].gid) == (42, 43)
    assert (our_fs["new-owner/file"].uid, our_fs["new-owner/file"].gid) == (7, 8)


def test_run_and_arg_history_name_the_build_args_as_docker_and_buildah_do(both, buildah, build):
    both('FROM busybox\nARG A=1\nARG B=2 C\nRUN echo $A$B > /ab\nENV B=from-env\nRUN echo again > /again\n',
         {}, "history")
    ours = [h["created_by"] for h in build.document(build.config("history")["Id"])["history"][1:]]
    theirs = [h["created_by"] for h in json.loads(buildah("inspect", "--type", "image", "history").stdout)
              ["Docker"]["history"][1:]]
    assert ours[2] == theirs[2] == "|2 A=1 B=2 /bin/sh -c echo $A$B > /ab"   # C has no value: in neither
    # an ENV of the same name hides the ARG from the RUN, so Docker leaves it out of the line; buildah
    # 1.28 still lists the ARG (with the ENV's value)
    assert ours[4] == "|1 A=1 /bin/sh -c echo again > /again"
    assert theirs[4] == "|2 A=1 B=from-env /bin/sh -c echo again > /again"
    assert ours[3] == theirs[3].replace("#(nop) ", "#(nop)  ")   # Docker's two spaces after #(nop)
    # ARG declarations are empty-layer entries in both; buildah writes the names of the ARGs with a
    # value so far, pallet each declaration as written, as Docker does
    assert ours[:2] == ["/bin/sh -c #(nop)  ARG A=1", "/bin/sh -c #(nop)  ARG B=2 C"]
    assert theirs[:2] == ["/bin/sh -c #(nop) ARG A", "/bin/sh -c #(nop) ARG A B"]
