"""The Dockerfile builder: parse to a typed plan, then solve it with a content-addressed cache.

``build(engine, BuildRequest(...), progress=callback) -> image id`` is the one entry point, used by
``pallet build`` and by the Engine API's ``POST /build``. ``progress`` receives dicts:
``{"type": "step", "id": N, "name": "[stage 2/5] RUN …"}``, ``{"type": "log", "id": N, "text": …}``,
``{"type": "done" | "cached", "id": N, "seconds": s}``.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from pallet.kernel.errors import PalletError, UsageError


@dataclass
class BuildRequest:
    context: str = "."                       # a directory, a tarball, or "-" (stdin: a tar or a Dockerfile)
    dockerfile: str = ""                     # path (relative to the context, or absolute), "-" for stdin, "" = Dockerfile
    dockerfile_text: bytes | None = None     # the Dockerfile itself (the Engine API passes it inside the tar)
    context_stream: object = None            # a binary stream holding a context tar (instead of ``context``)
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    no_cache_filter: list[str] = field(default_factory=list)
    cache_from: list[str] = field(default_factory=list)
    pull: bool = False
    credentials: dict = field(default_factory=dict)   # registry host -> (user, password) for FROM pulls (the API's)
    secrets: dict[str, tuple[str, str]] = field(default_factory=dict)   # id -> ("file", path) | ("env", NAME)
    network: str = "host"                    # RUN's network when a RUN does not say (--network)
    extra_hosts: list[str] = field(default_factory=list)                # --add-host, "name:ip", in RUN's /etc/hosts
    source_date_epoch: int | None = None
    outputs: list[dict] = field(default_factory=list)                    # parsed -o specs
    runtime: str = "pallet"
    format: str = "oci"                      # media types: oci, or docker (schema 2)
    jobs: int = 2                            # stages built at once
    resources: dict = field(default_factory=dict)   # RUN containers' HostConfig limits: ShmSize, Memory, CpuShares…

    def secret_value(self, secret_id: str) -> bytes | None:
        source = self.secrets.get(secret_id)
        if source is None:
            return None
        kind, where = source
        if kind == "env":
            value = os.environ.get(where)
            return None if value is None else value.encode()
        try:
            return Path(where).read_bytes()
        except OSError as exc:
            raise PalletError(f"secret {secret_id}: cannot read {where}: {exc.strerror}") from None


def run_resources(shm_size=None, memory=None, memory_swap=None, cpu_shares=None, cpuset_cpus=None, cpu_period=None,
                  cpu_quota=None) -> dict:
    """The limits of a build's RUN containers as HostConfig fields (``docker build``'s flags, the API's
    ``shmsize``, ``memory``, ``memswap``, ``cpushares``, ``cpusetcpus``, ``cpuperiod``, ``cpuquota``)."""
    from pallet.kernel.runopts import parse_memory, parse_memory_swap, parse_size

    found = {}
    if shm_size not in (None, "", "0", 0):
        found["ShmSize"] = shm_size if isinstance(shm_size, int) else parse_size(str(shm_size), "--shm-size")
        if found["ShmSize"] <= 0:
            raise UsageError(f'invalid argument "{shm_size}" for "--shm-size" flag: must be positive')
    if memory not in (None, "", "0", 0):
        found["Memory"] = memory if isinstance(memory, int) else parse_memory(str(memory))
    if memory_swap not in (None, "", "0", 0):
        found["MemorySwap"] = memory_swap if isinstance(memory_swap, int) else parse_memory_swap(str(memory_swap))
    for key, value in (("CpuShares", cpu_shares), ("CpuPeriod", cpu_period), ("CpuQuota", cpu_quota)):
        if value:
            found[key] = int(value)
    if cpuset_cpus:
        found["CpusetCpus"] = cpuset_cpus
    return found


def build(engine, request: BuildRequest, progress=None) -> str:
    """Build ``request``; return the image id (``sha256:…``). Nothing is tagged when anything fails."""
    return build_result(engine, request, progress).image_id


def build_result(engine, request: BuildRequest, progress=None):
    """Build ``request``; return a :class:`pallet.kernel.build.output.BuildResult` (id, config, manifest)."""
    from pallet.kernel.build import executor
    from pallet.kernel.build.output import finish_image
    from pallet.kernel.build.parser import parse
    from pallet.kernel.build.plan import make_plan
    from pallet.kernel.build.solver import Solver

    engine.plugins.load("storage")   # security and runtime load on the first RUN that is not cached
    executor.clean_stale(engine)
    progress = progress or (lambda event: None)
    build_id = os.urandom(8).hex()
    context, dockerfile_bytes, name = open_context(engine, request, build_id)
    try:
        dockerfile = parse(dockerfile_bytes, name=name)
        plan = make_plan(dockerfile, request.build_args, request.target)
        solver = Solver(engine, request, plan, context, progress, build_id)
        state = solver.solve()
        return finish_image(engine, solver, state)
    finally:
        context.close()


def open_context(engine, request: BuildRequest, build_id: str):
    """The context and the Dockerfile's bytes and display name, per Docker's rules for ``-f`` and ``-``."""
    from pallet.kernel.build.context import Context, load_ignore, unpack_tar

    scratch = Path(engine.run_root) / "build" / "contexts"
    dockerfile_bytes = request.dockerfile_text
    stdin_dockerfile = request.dockerfile == "-"
    if stdin_dockerfile and dockerfile_bytes is None:
        dockerfile_bytes = sys.stdin.buffer.read()
    owned = False
    if request.context_stream is not None:
        root, owned = unpack_tar(request.context_stream, scratch), True
    elif request.context == "-":
        data = sys.stdin.buffer.read() if not stdin_dockerfile else b""
        if _looks_like_tar(data):
            root, owned = unpack_tar(io.BytesIO(data), scratch), True
        else:
            scratch.mkdir(parents=True, exist_ok=True)
            import tempfile

            root, owned = Path(tempfile.mkdtemp(prefix="context-", dir=scratch)), True
            if dockerfile_bytes is None:
                dockerfile_bytes = data
    else:
        path = Path(request.context)
        if path.is_dir():
            root = path.resolve()
        elif path.is_file():
            with open(path, "rb") as handle:
                root, owned = unpack_tar(handle, scratch), True
        else:
            raise PalletError(f"unable to prepare context: path \"{request.context}\" not found")
    dockerfile_path = None
    if dockerfile_bytes is None:
        candidate = Path(request.dockerfile or "Dockerfile")
        dockerfile_path = candidate if candidate.is_absolute() else (
            candidate if request.dockerfile and candidate.exists() and request.context_stream is None
            and request.context != "-" and not (root / candidate).exists() else root / candidate)
        if not dockerfile_path.is_file() and not request.dockerfile:
            lower = root / "dockerfile"
            dockerfile_path = lower if lower.is_file() else dockerfile_path
        try:
            with open(dockerfile_path, "rb") as handle:
                from pallet.kernel.build.parser import MAX_DOCKERFILE

                dockerfile_bytes = handle.read(MAX_DOCKERFILE + 1)
        except OSError:
            import shutil

            if owned:
                shutil.rmtree(root, ignore_errors=True)
            raise PalletError(f"failed to read dockerfile: open {dockerfile_path}: no such file or directory") \
                from None
    name = dockerfile_path.name if dockerfile_path is not None else "Dockerfile"
    import hashlib

    stat_cache = Path(engine.root) / "build" / "contexts" / hashlib.sha256(str(root).encode()).hexdigest()[:32]
    return Context(root, load_ignore(root, dockerfile_path), owned, stat_cache), dockerfile_bytes, name


def _looks_like_tar(data: bytes) -> bool:
    if data[:2] == b"\x1f\x8b" or data[:3] == b"BZh" or data[:6] == b"\xfd7zXZ\x00":
        return True
    return len(data) >= 262 and data[257:262] == b"ustar"
