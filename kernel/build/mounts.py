"""``RUN --mount``: cache, bind, tmpfs and secret mounts turned into the container's Docker-style mounts.

Cache directories live under ``<root>/build/mounts/<id>`` and persist across builds; ``sharing=locked``
holds an flock for the RUN's duration, ``sharing=private`` takes a fresh empty directory when another
RUN holds the shared one (BuildKit's rule), and ``from=``/``source=`` seed a new cache directory from a
stage or an image, once.
Secrets are copied into a private temp dir and mounted read-only; they never reach a layer.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from pallet.kernel.errors import PalletError


class RunMounts:
    def __init__(self, solver, stage, state, step):
        self.solver, self.stage, self.state, self.step = solver, stage, state, step
        self.mounts: list[dict] = []
        self.env: dict[str, str] = {}
        self.targets: set[str] = set()
        self._locks: list[int] = []
        self._workspaces = []
        self._dirs: list[str] = []
        self.specs = []
        self.scripts: dict[str, str] = {}   # container path -> content of a heredoc run as a file
        for mount in step.mounts:
            options = {k: solver.expand(v, state, step.line) for k, v in mount.options.items()}
            target = solver.expand(mount.target, state, step.line) if mount.target else ""
            if target and not target.startswith("/"):
                target = os.path.join(state.config.get("WorkingDir") or "/", target)
            self.specs.append((mount.type, target, options))

    def key(self) -> list:
        """What of the mounts goes into the cache key: bind sources by content, never secret values."""
        result = []
        for kind, target, options in self.specs:
            shown = {k: v for k, v in options.items() if k != "env"}
            if kind == "bind" and not options.get("from"):
                shown["content"] = self.solver.context.digest(self.solver.context.matches(options.get("source", ".")))
            elif kind == "bind":
                source_stage = self.solver.plan.stage_by_ref(options["from"])
                if source_stage is not None:
                    shown["stage"] = self.solver.results[source_stage.index].key
            result.append([kind, target, sorted(shown.items())])
        return result

    def __enter__(self):
        try:
            for kind, target, options in self.specs:
                getattr(self, "_" + kind)(target, options)
            for target, content in self.scripts.items():
                self._script(target, content)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        for fd in self._locks:
            os.close(fd)
        for workspace in self._workspaces:
            with contextlib.suppress(Exception):
                workspace.close()
        for directory in self._dirs:
            shutil.rmtree(directory, ignore_errors=True)
            self.solver.journal.drop("dirs", directory)
        self._locks, self._workspaces, self._dirs = [], [], []

    def _target(self, target: str) -> None:
        self.targets.add(os.path.normpath(target).lstrip("/"))

    def _cache(self, target: str, options: dict) -> None:
        name = options.get("id") or target
        mounts = Path(self.solver.engine.root) / "build" / "mounts"
        home = mounts / hashlib.sha256(name.encode()).hexdigest()[:32]
        sharing = options.get("sharing", "shared")
        if sharing != "shared":
            fd = os.open(str(home) + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (fcntl.LOCK_NB if sharing == "private" else 0))
                self._locks.append(fd)
            except BlockingIOError:  # private, and another RUN holds the shared directory
                os.close(fd)
                home = Path(tempfile.mkdtemp(prefix="cache-private-", dir=self._scratch()))
                self._dirs.append(str(home))
                self.solver.journal.add("dirs", str(home))
                os.rmdir(home)
        if not home.is_dir():
            self._fill_cache(home, options)
        self.mounts.append({"Type": "bind", "Source": str(home), "Target": target, "ReadOnly": False})
        self._target(target)

    def _fill_cache(self, home: Path, options: dict) -> None:
        """A cache directory's first use: its mode, its owner and the seed of ``from=``/``source=``,
        made under a temporary name and renamed into place complete."""
        home.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".seed-", dir=home.parent))
        try:
            if options.get("from"):
                source = options.get("source", "/")
                seed = self._source_path(source, options["from"])
                if not os.path.lexists(seed):
                    raise PalletError(f"--mount=type=cache: source {source} not found in {options['from']}")
                if seed.is_dir():
                    shutil.copytree(seed, staging, symlinks=True, dirs_exist_ok=True)
                else:
                    shutil.copy2(seed, staging / seed.name)
            os.chmod(staging, int(options.get("mode", "755"), 8))
            os.chown(staging, int(options.get("uid", "0")), int(options.get("gid", "0")))
            try:
                os.rename(staging, home)
            except OSError:
                if not home.is_dir():  # another build made it first: theirs is as good
                    raise
            else:
                staging = None
        finally:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)

    def _source_path(self, source: str, ref: str) -> Path:
        """``source`` inside the stage or image ``ref``, mounted read-only for this RUN."""
        from pallet.kernel.build.executor import Workspace
        from pallet.kernel.rootpath import resolve_in_root

        stage = self.solver.plan.stage_by_ref(ref)
        if stage is not None:
            layers = self.solver.results[stage.index].layers
        else:
            image = self.solver.resolve_source_image(ref, self.step.line)
            layers = self.solver.image_layers(image)
        workspace = Workspace(self.solver.engine, self.solver.journal, self.solver.store.ensure_chain(layers))
        self._workspaces.append(workspace)
        return resolve_in_root(workspace.root, source)

    def _bind(self, target: str, options: dict) -> None:
        source = options.get("source", "/")
        readonly = options.get("rw", "false") not in ("true", "1") and options.get("readwrite") != "true"
        ref = options.get("from")
        if ref:
            host = self._source_path(source, ref)
        else:
            rel = self.solver.context.matches(source)[0]
            host = self.solver.context.root / rel
        if not os.path.lexists(host):
            raise PalletError(f"--mount=type=bind: source {source} not found")
        if not readonly:  # writes to a read-write bind are thrown away after the RUN, as BuildKit's
            scratch = tempfile.mkdtemp(prefix="bind-", dir=self._scratch())
            self._dirs.append(scratch)
            self.solver.journal.add("dirs", scratch)
            copied = Path(scratch) / "src"
            if host.is_dir():
                shutil.copytree(host, copied, symlinks=True)
            else:
                shutil.copy2(host, copied)
            host = copied
        self.mounts.append({"Type": "bind", "Source": str(host), "Target": target, "ReadOnly": readonly})
        self._target(target)

    def _tmpfs(self, target: str, options: dict) -> None:
        tmpfs = [f"size={options['size']}"] if options.get("size") else []
        self.mounts.append({"Type": "tmpfs", "Target": target, "TmpfsOptions": tmpfs, "ReadOnly": False})
        self._target(target)

    def _secret(self, target: str, options: dict) -> None:
        secret_id = options.get("id") or os.path.basename(target)
        value = self.solver.request.secret_value(secret_id)
        if value is None:
            if options.get("required", "false") in ("true", "1"):
                raise PalletError(f'secret "{secret_id}" is required but was not given (--secret id={secret_id},…)')
            return
        if options.get("env"):
            self.env[options["env"]] = value.decode(errors="replace")
            if not target:
                return
        target = target or f"/run/secrets/{secret_id}"
        scratch = tempfile.mkdtemp(prefix="secret-", dir=self._scratch())
        self._dirs.append(scratch)
        self.solver.journal.add("dirs", scratch)
        path = Path(scratch) / "secret"
        path.write_bytes(value)
        os.chmod(path, int(options.get("mode", "400"), 8))
        os.chown(path, int(options.get("uid", "0")), int(options.get("gid", "0")))
        self.mounts.append({"Type": "bind", "Source": str(path), "Target": target, "ReadOnly": True})
        self._target(target)

    def _script(self, target: str, content: str) -> None:
        scratch = tempfile.mkdtemp(prefix="heredoc-", dir=self._scratch())
        self._dirs.append(scratch)
        self.solver.journal.add("dirs", scratch)
        path = Path(scratch) / "script"
        path.write_text(content)
        os.chmod(path, 0o755)
        self.mounts.append({"Type": "bind", "Source": str(path), "Target": target, "ReadOnly": True})

    def _scratch(self) -> str:
        path = Path(self.solver.engine.run_root) / "build" / "scratch"
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return str(path)
