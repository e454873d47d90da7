"""Which libzfs_core the zfs driver runs on: the real one (pyzfs) when it imports, else the zfs commands.

A stand-in ``libzfs_core`` package, put on ``PYTHONPATH`` of a subprocess, records every name the
driver asks it for and serves pyzfs's API from pallet's command backend on a real zfs-fuse pool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# The public names of pyzfs's libzfs_core package (openzfs contrib/pyzfs/libzfs_core/__init__.py).
PYZFS_API = {
    "ctypes", "exceptions", "MAXNAMELEN", "ZCP_DEFAULT_INSTRLIMIT", "ZCP_DEFAULT_MEMLIMIT", "WRAPPING_KEY_LEN",
    "zfs_key_location", "zfs_keyformat", "zio_encrypt", "lzc_bookmark", "lzc_change_key", "lzc_channel_program",
    "lzc_channel_program_nosync", "lzc_clone", "lzc_create", "lzc_destroy_bookmarks", "lzc_destroy_snaps",
    "lzc_exists", "lzc_get_bookmarks", "lzc_get_holds", "lzc_hold", "lzc_load_key", "lzc_pool_checkpoint",
    "lzc_pool_checkpoint_discard", "lzc_promote", "lzc_receive", "lzc_receive_one", "lzc_receive_resumable",
    "lzc_receive_with_cmdprops", "lzc_receive_with_header", "lzc_receive_with_heal", "lzc_release", "lzc_reopen",
    "lzc_rollback", "lzc_rollback_to", "lzc_send", "lzc_send_resume", "lzc_send_space", "lzc_snaprange_space",
    "lzc_snapshot", "lzc_sync", "lzc_unload_key", "is_supported", "lzc_recv", "lzc_snap", "lzc_rename",
    "lzc_destroy", "receive_header",
}

STAND_IN = '''\
"""Stand-in for pyzfs's libzfs_core: records each name asked for, serves pyzfs's API from zfs_lzc."""
import json
import os

from pallet.plugins.storage import zfs_lzc as _impl

_API = set(json.loads(os.environ["STANDIN_API"]))
# Only this stand-in may reach the command backend's functions: a driver that called them directly,
# bypassing libzfs_core, trips over these (unless the driver is meant to fall back on them).
_REAL = {name: getattr(_impl, name) for name in _impl.__all__ if callable(getattr(_impl, name))}
_FALLBACK = os.environ.get("STANDIN_BROKEN") or os.environ.get("STANDIN_LACKS")


def _tripwire(name):
    def bypassed(*args, **kwargs):
        _record({"bypass": name})
        raise AssertionError(f"zfs_lzc.{name} called without going through libzfs_core")
    return bypassed


for _name in [] if _FALLBACK else _REAL:
    setattr(_impl, _name, _tripwire(_name))


def _record(entry):
    with open(os.environ["STANDIN_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    _record({"name": name})
    if name not in _API:
        raise AttributeError(f"pyzfs's libzfs_core has no {name}")
    if os.environ.get("STANDIN_BROKEN"):
        def unloadable(*args, **kwargs):  # what pyzfs does where the C library is missing: dlopen fails
            raise OSError("libzfs_core.so.3: cannot open shared object file: No such file or directory")
        return unloadable
    if name == "is_supported" and os.environ.get("STANDIN_LACKS"):  # an older C library
        return lambda func: func.__name__ != os.environ["STANDIN_LACKS"]
    implementation = _REAL.get(name)

    def call(*args, **kwargs):
        _record({"name": name, "args": [_kind(arg) for arg in args],
                 "kwargs": {key: _kind(value) for key, value in kwargs.items()}})
        if implementation is None:
            raise NotImplementedError(name)
        return implementation(*args, **kwargs)
    call.__name__ = name
    return call


def _kind(value):
    if isinstance(value, (list, tuple)):
        return [_kind(each) for each in value]
    if isinstance(value, dict):  # property names shown, a name that is not bytes shows as <type>
        return {key.decode() if isinstance(key, bytes) else f"<{type(key).__name__}>": _kind(each)
                for key, each in value.items()}
    return type(value).__name__
'''

DRIVER_SCRIPT = textwrap.dedent('''\
    import json, sys
    from pathlib import Path
    from pallet.kernel.drivers import DriverContext
    from pallet.plugins.storage.zfs import ZfsDriver, backend

    home, fsname = Path(sys.argv[1]), sys.argv[2]
    driver = ZfsDriver(DriverContext(home, {"zfs.fsname": fsname}))
    driver.create("base")
    (driver.get("base") / "file").write_text("from base")
    driver.put("base")
    driver.create_rw("ctr", "base", {"size": "8M"})
    seen = (driver.get("ctr") / "file").read_text()
    driver.put("ctr")
    driver.remove("base")   # parent first: its blocks live on under a hidden name
    driver.remove("ctr")
    print(json.dumps({"backend": backend().name, "seen": seen, "status": dict(driver.status())}))
''')


@pytest.fixture
def stand_in(tmp_path):
    """Environment for a subprocess that imports the stand-in as ``libzfs_core``; yields (env, log path)."""
    package = tmp_path / "standin" / "libzfs_core"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    (package / "exceptions.py").write_text(
        '"""pyzfs\'s exception classes, as the command backend defines them."""\n'
        "from pallet.plugins.storage.zfs_lzc.exceptions import *  # noqa: F401,F403\n")
    log = tmp_path / "calls.jsonl"
    env = {"PYTHONPATH": str(package.parent), "STANDIN_LOG": str(log), "STANDIN_API": json.dumps(sorted(PYZFS_API))}
    return env, log


def _names(fsname: str) -> list[str]:
    out = subprocess.run(["zfs", "list", "-H", "-o", "name", "-t", "all", "-r", fsname],
                         capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if line != fsname]


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def test_with_libzfs_core_importable_the_driver_calls_only_pyzfs_api(stand_in, zfs_fsname, tmp_path):
    env, log = stand_in
    result = subprocess.run([sys.executable, "-c", DRIVER_SCRIPT, str(tmp_path / "zfs"), zfs_fsname],
                            capture_output=True, text=True, cwd=REPO, env={**os.environ, **env}, timeout=240)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["backend"] == "libzfs_core"
    assert report["seen"] == "from base"
    assert report["status"]["Backend"] == "libzfs_core (pyzfs imports and initialises)"
    calls = _calls(log)
    assert not [call for call in calls if "bypass" in call]
    asked = {call["name"] for call in calls}
    assert asked <= PYZFS_API, f"the driver asked libzfs_core for {sorted(asked - PYZFS_API)}"
    assert {"is_supported", "lzc_exists", "lzc_create", "lzc_snapshot", "lzc_clone", "lzc_rename", "lzc_destroy",
            "lzc_destroy_snaps"} <= asked
    signatures = {(call["name"], json.dumps(call["args"]), json.dumps(call["kwargs"])) for call in calls if "args" in call}
    # Names are bytes; property values as libzfs_core takes them: numbers for index and numeric properties.
    assert signatures == {
        ("is_supported", '["function"]', "{}"),
        ("lzc_create", '["bytes"]', '{"props": {"mountpoint": "bytes", "canmount": "int"}}'),
        ("lzc_snapshot", '[["bytes"]]', "{}"),
        ("lzc_clone", '["bytes", "bytes", {"mountpoint": "bytes", "canmount": "int", "quota": "int"}]', "{}"),
        ("lzc_rename", '["bytes", "bytes"]', "{}"),
        ("lzc_destroy_snaps", '[["bytes"], "bool"]', "{}"),
        ("lzc_destroy", '["bytes"]', "{}"),
    }
    assert _names(zfs_fsname) == []


def test_plugins_ls_and_storage_status_say_which_backend_and_why(pallet, stand_in, zfs_fsname):
    env, _log = stand_in
    status = ("--storage-driver", "zfs", "--storage-opt", f"zfs.fsname={zfs_fsname}", "storage", "status", "--json")

    rows = {row["Name"]: row for row in json.loads(pallet("plugins", "ls", "--json", check=True).stdout)}
    assert rows["zfs"]["Reason"].endswith(
        "backend: zfs commands (pyzfs is not installed: No module named 'libzfs_core')")
    block = json.loads(pallet(*status, check=True).stdout)
    assert dict(block["Status"])["Backend"].startswith("zfs commands (pyzfs is not installed")

    rows = {row["Name"]: row for row in json.loads(pallet("plugins", "ls", "--json", env=env, check=True).stdout)}
    assert rows["zfs"]["Reason"].endswith("backend: libzfs_core (pyzfs imports and initialises)")
    block = json.loads(pallet(*status, env=env, check=True).stdout)
    assert dict(block["Status"])["Backend"] == "libzfs_core (pyzfs imports and initialises)"

    broken = {**env, "STANDIN_BROKEN": "1"}
    rows = {row["Name"]: row for row in json.loads(pallet("plugins", "ls", "--json", env=broken, check=True).stdout)}
    assert rows["zfs"]["Status"] == "available"
    assert rows["zfs"]["Reason"].endswith("backend: zfs commands (pyzfs's libzfs_core does not initialise: "
                                          "libzfs_core.so.3: cannot open shared object file: No such file or directory)")

    lacking = {**env, "STANDIN_LACKS": "lzc_rename"}
    block = json.loads(pallet(*status, env=lacking, check=True).stdout)
    assert dict(block["Status"])["Backend"] == "zfs commands (the installed libzfs_core lacks lzc_rename)"
