"""runc and crun as alternate runtimes: the same bundle, executed by their command-line tools.

``run`` is ``<tool> create`` + ``<tool> start``; the container's process is then an orphan of the
tool, so the caller is made a child subreaper (``PR_SET_CHILD_SUBREAPER``, as containerd-shim
and conmon are) and the process is re-parented to it: the caller reaps it like a built-in
runtime child. crun refuses hybrid cgroups (v1 controllers + a cgroup2 mount); on such a host it
runs in a private mount namespace where ``/sys/fs/cgroup/unified`` is unmounted.
"""

from __future__ import annotations

import json
from pathlib import Path

from pallet.kernel import hookimpl
from pallet.kernel.drivers import Availability, Runtime
from pallet.kernel.errors import PalletError

PR_SET_CHILD_SUBREAPER = 36


class OciCliRuntime(Runtime):
    binary = "runc"

    @classmethod
    def probe(cls, home=None, options=None):
        from pallet.kernel import host

        if host.which(cls.binary) is None:
            return Availability.no(f"{cls.binary} is not installed")
        return Availability.ok()

    # --- the tool ------------------------------------------------------------------------------

    def _isolate_cgroup2(self) -> bool:
        return False

    def _tool(self, *args: str, stdio=None, check: bool = True):
        import subprocess

        from pallet.kernel import host

        log = self.state_dir / f"{self.binary}.log"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        cmd = [host.which(self.binary) or self.binary, "--root", str(self.state_dir), "--log", str(log),
               "--log-format", "json", *args]
        stdin, stdout, stderr = stdio if stdio is not None else (subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE)
        preexec = _without_cgroup2 if self._isolate_cgroup2() else None
        size_before = log.stat().st_size if log.exists() else 0
        proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=stderr, preexec_fn=preexec)
        if check and proc.returncode != 0:
            message = _last_error(log, size_before) or (proc.stderr or b"").decode(errors="replace").strip()
            prefix = f"{self.binary} {args[0]} failed: "
            message = message[len(prefix):] if message.startswith(prefix) else message  # runc logs it so itself
            raise PalletError(prefix + message, exit_code=_docker_code(message))
        return proc

    # --- lifecycle -----------------------------------------------------------------------------

    def run(self, container_id, bundle, stdio, console_socket=None):
        from pallet.kernel import linux

        linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
        pid_file = self.state_dir / f"{container_id}.pid"
        extra = ["--console-socket", console_socket] if console_socket else []
        self._tool("create", "--bundle", str(bundle), "--pid-file", str(pid_file), *extra, container_id,
                   stdio=tuple(stdio))
        try:
            pid = int(pid_file.read_text())
            self._tool("start", container_id)
        except BaseException:
            self._tool("delete", "--force", container_id, check=False)
            raise
        finally:
            pid_file.unlink(missing_ok=True)
        return pid

    def exec(self, container_id, process, stdio, console_socket=None):
        import tempfile

        from pallet.kernel import linux

        linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
        spec = json.loads((Path(self.state(container_id)["bundle"]) / "config.json").read_text())
        merged = dict(spec.get("process") or {})
        merged.update(process)
        with tempfile.TemporaryDirectory(dir=self.state_dir) as tmp:
            process_file, pid_file = Path(tmp, "process.json"), Path(tmp, "exec.pid")
            process_file.write_text(json.dumps(merged))
            extra = ["--console-socket", console_socket] if console_socket else []
            self._tool("exec", "--detach", "--process", str(process_file), "--pid-file", str(pid_file), *extra,
                       container_id, stdio=tuple(stdio))
            return int(pid_file.read_text())

    def state(self, container_id) -> dict:
        proc = self._tool("state", container_id)
        return json.loads(proc.stdout)

    def kill(self, container_id, signal, all_processes=False):
        self._tool("kill", *(["--all"] if all_processes else []), container_id, str(int(signal)))

    def pause(self, container_id):
        self._tool("pause", container_id)

    def resume(self, container_id):
        self._tool("resume", container_id)

    def delete(self, container_id, force=False):
        proc = self._tool("delete", *(["--force"] if force else []), container_id, check=False)
        if proc.returncode != 0:
            message = (proc.stderr or b"").decode(errors="replace")
            if "does not exist" in message or "not exist" in message:
                return
            self._tool("delete", *(["--force"] if force else []), container_id)


def _without_cgroup2() -> None:
    """preexec_fn for crun: a private mount namespace without the (controller-less) cgroup2 mount."""
    from pallet.kernel import linux

    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_SLAVE)
    linux.umount2("/sys/fs/cgroup/unified", linux.MNT_DETACH)


def _last_error(log: Path, offset: int) -> str:
    try:
        with open(log, "rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("level") in ("error", "fatal"):
            return entry.get("msg", "")
    return ""


def _docker_code(message: str) -> int:
    """Docker's exit codes for a runtime that could not start the command."""
    lowered = message.lower()
    if "executable file not found" in lowered or "no such file or directory" in lowered:
        return 127
    if "permission denied" in lowered or "is a directory" in lowered:
        return 126
    return 125


class RuncRuntime(OciCliRuntime):
    description = "runc, the OCI reference runtime"
    binary = "runc"


class CrunRuntime(OciCliRuntime):
    description = "crun, the C OCI runtime"
    binary = "crun"

    def _isolate_cgroup2(self) -> bool:
        from pallet.kernel import host

        return host.cgroup_info().version == "hybrid"


@hookimpl
def pallet_register_runtimes(register):
    register("runc", RuncRuntime)
    register("crun", CrunRuntime)
