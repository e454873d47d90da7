"""Fixtures shared by every test package: a private pallet root per test and a CLI runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
# PALLET_TEST_ENGINE=1: every command of a test goes through the thin client to a resident engine started
# for the test's root, so the same tests check both paths (tests/fastpath/). The client is the native one
# users get from scripts/setup.sh (kernel/client.c, built once per test session from this checkout), or
# with PALLET_TEST_CLIENT=python the stdlib-only kernel/launcher.py; tests/fastpath runs both.
ENGINE_MODE = os.environ.get("PALLET_TEST_ENGINE") == "1"
CLIENT = os.environ.get("PALLET_TEST_CLIENT", "native")
LAUNCHER = REPO / "kernel" / "launcher.py"
NATIVE_SOURCE = REPO / "kernel" / "client.c"
_native: list[Path] = []


def native_client() -> Path:
    """kernel/client.c compiled as scripts/setup.sh compiles it, once per test session."""
    if not _native:
        import atexit
        import shutil
        import tempfile

        out = Path(tempfile.mkdtemp(prefix="pallet-test-client-"))
        atexit.register(shutil.rmtree, out, True)
        subprocess.run(["cc", "-O2", "-Wall", "-Werror", "-o", str(out / "pallet-client"), str(NATIVE_SOURCE)],
                       check=True, capture_output=True)
        _native.append(out / "pallet-client")
    return _native[0]


def client_argv(kind: str) -> list[str]:
    """The thin client's argv prefix: ``native`` (PYTHON and LAUNCHER are its fallbacks) or ``python``."""
    if kind == "native":
        return [str(native_client()), sys.executable, str(LAUNCHER)]
    return [sys.executable, "-I", "-S", str(LAUNCHER)]
_engines: list[Pallet] = []
# The host's CNI conflists (podman's 87-podman-bridge.conflist, say) are not the tests': the cni driver
# would list them as networks. The suite looks in an empty directory of its own; tests of conflists
# point PALLET_CNI_CONFIG_DIR at theirs.
if "PALLET_CNI_CONFIG_DIR" not in os.environ:
    import atexit
    import tempfile

    os.environ["PALLET_CNI_CONFIG_DIR"] = tempfile.mkdtemp(prefix="pallet-test-cni-")
    atexit.register(os.rmdir, os.environ["PALLET_CNI_CONFIG_DIR"])


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


class Pallet:
    """Runs the real ``pallet`` command against a private ``--root``/``--run-root``."""

    def __init__(self, root: Path, run_root: Path | None, env: dict[str, str] | None = None):
        self.root = root
        self.run_root = run_root
        self.env = dict(os.environ)
        self.env.pop("PALLET_STORAGE_DRIVER", None)
        self.env.pop("PALLET_DISABLE_PLUGINS", None)
        self.env["PALLET_CONFIG"] = str(root.parent / "pallet.toml")
        self.env.update(env or {})
        (root.parent / "pallet.toml").touch()

    engine_started = False
    client = CLIENT   # which thin client ``command`` uses for the engine: "native" or "python"

    def command(self, *args: str, engine: bool | None = None) -> list[str]:
        """The argv that runs ``pallet ARGS`` on this root: the direct CLI, or (engine mode) the thin client."""
        use_engine = (ENGINE_MODE or self.engine_started) if engine is None else engine
        if use_engine:
            self.start_engine()
            cmd = client_argv(self.client)
        else:
            cmd = [sys.executable, "-m", "pallet.kernel.cli"]
        cmd += ["--root", str(self.root)]
        if self.run_root is not None:
            cmd += ["--run-root", str(self.run_root)]
        return cmd + list(args)

    def start_engine(self, env: dict | None = None) -> None:
        """Start this root's resident engine once (``env``: more variables for the engine's process);
        the ``engines_stopped`` fixture stops it after the test."""
        if self.engine_started:
            return
        self.engine_started = True
        _engines.append(self)
        proc = subprocess.run(self.command("engine", "start", engine=False), capture_output=True, text=True,
                              timeout=120, env={**self.env, **(env or {})}, cwd=str(REPO))
        assert proc.returncode == 0, f"pallet engine start failed: {proc.stderr}"

    def stop_engine(self) -> None:
        if self.engine_started:
            self.engine_started = False
            proc = subprocess.run(self.command("engine", "stop", engine=False), capture_output=True, text=True,
                                  timeout=120, env=self.env, cwd=str(REPO))
            assert proc.returncode == 0, f"pallet engine stop failed (a leaked engine): {proc.stderr}"

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None, timeout: float = 120,
                 check: bool = False) -> Result:
        cmd = self.command(*args)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              env={**self.env, **(env or {})}, cwd=str(REPO))
        result = Result(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"pallet {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return result


def _pallet_cgroups() -> set[str]:
    found = set()
    for controller in Path("/sys/fs/cgroup").iterdir():
        for dirpath, dirnames, _files in os.walk(controller):
            found.update(os.path.join(dirpath, d) for d in dirnames if "pallet" in d.lower())
            if dirpath.count("/") >= 7:
                dirnames.clear()
    return found


@pytest.fixture(autouse=True)
def engines_stopped():
    """Stop the resident engines a test started (engine mode), after every other fixture's teardown."""
    yield
    while _engines:
        _engines.pop().stop_engine()


@pytest.fixture(scope="session", autouse=True)
def cgroup_parents_removed():
    """Containers' cgroups share a parent (``pallet`` under each controller) made on first use, as
    Docker's ``docker`` parent is; the session removes the ones it made. A non-empty one stays: a leak."""
    before = _pallet_cgroups()
    yield
    for path in sorted(_pallet_cgroups() - before, key=len, reverse=True):
        try:
            os.rmdir(path)
        except OSError:
            pass


@pytest.fixture
def pallet(tmp_path) -> Pallet:
    """The CLI on a private root; whatever networks its containers made are torn down afterwards."""
    runner = Pallet(tmp_path / "root", tmp_path / "run")
    try:
        yield runner
    finally:
        teardown_networks(runner)


def teardown_networks(pallet: Pallet) -> None:
    """Remove the bridges, endpoints, DNS responders and nft table that a root's networks made."""
    from pallet.kernel.config import Config
    from pallet.kernel.engine import Engine
    from pallet.kernel.network.store import NetworkStore

    if (pallet.root / "networks").exists():
        NetworkStore(Engine(Config.load(root=str(pallet.root), config_path=pallet.env["PALLET_CONFIG"]))).teardown_all()
    from pallet.plugins.network.nft import table_exists, table_name

    table = table_name(pallet.root)
    for family in ("ip", "ip6"):   # the root's own tables (ip6 for IPv6 networks), as the network tests remove theirs
        if table_exists(table, family):
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True)

