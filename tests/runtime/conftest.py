"""Fixtures for the runtime tests: a busybox rootfs, OCI bundles written by hand, and a runner that cleans up."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.runtime import ocispec


@dataclass
class Outcome:
    status: int  # Docker's exit code: the process's, or 128+signal
    stdout: str
    stderr: str


def exit_code(wait_status: int) -> int:
    return os.waitstatus_to_exitcode(wait_status) if os.WIFEXITED(wait_status) else 128 + os.WTERMSIG(wait_status)


@pytest.fixture(scope="session")
def rootfs() -> Path:
    # Not under pytest's 0700 tmp dir: a user-namespaced container's root must be able to reach it.
    import shutil
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="pallet-rt-rootfs-"))
    top.chmod(0o755)
    try:
        yield ocispec.make_rootfs(top / "rootfs")
    finally:
        shutil.rmtree(top, ignore_errors=True)


class Runner:
    """Starts containers from generated bundles with the built-in runtime; deletes every one it made."""

    def __init__(self, tmp: Path, rootfs: Path):
        from pallet.kernel.drivers import DriverContext
        from pallet.plugins.runtime.builtin import PalletRuntime

        self.tmp = tmp
        self.rootfs = rootfs
        self.runtime = PalletRuntime(DriverContext(tmp / "state"))
        self.ids: list[str] = []

    def new_id(self) -> str:
        container_id = f"rt{os.getpid()}-{uuid.uuid4().hex[:10]}"
        self.ids.append(container_id)
        return container_id

    def bundle(self, container_id: str, args, **spec) -> Path:
        return ocispec.write_bundle(self.tmp / container_id, self.rootfs, ocispec.spec(args, **spec))

    def start(self, args, **spec) -> tuple[str, int, Path, Path]:
        """Start detached: ``(id, pid, stdout file, stderr file)``."""
        container_id = self.new_id()
        bundle = self.bundle(container_id, args, **spec)
        out, err = self.tmp / f"{container_id}.out", self.tmp / f"{container_id}.err"
        with open(os.devnull) as stdin, open(out, "w") as stdout, open(err, "w") as stderr:
            pid = self.runtime.run(container_id, bundle, (stdin.fileno(), stdout.fileno(), stderr.fileno()))
        return container_id, pid, out, err

    def run(self, args, before_delete=None, **spec) -> Outcome:
        """Run to completion (a start failure becomes its exit code and message) and delete."""
        from pallet.kernel.errors import PalletError

        try:
            container_id, pid, out, err = self.start(args, **spec)
        except PalletError as failure:
            return Outcome(failure.exit_code, "", str(failure))
        _, status = os.waitpid(pid, 0)
        if before_delete is not None:
            before_delete(container_id)
        self.runtime.delete(container_id)
        return Outcome(exit_code(status), out.read_text(), err.read_text())

    def cleanup(self) -> None:
        for container_id in self.ids:
            try:
                state = self.runtime.state(container_id)
            except Exception:  # noqa: BLE001 - never started, or already deleted
                continue
            self.runtime.delete(container_id, force=True)
            try:
                os.waitpid(state.pid, 0)
            except ChildProcessError:
                pass


@pytest.fixture
def runner(tmp_path, rootfs):
    runner = Runner(tmp_path, rootfs)
    try:
        yield runner
    finally:
        runner.cleanup()
