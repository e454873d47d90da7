"""Helpers for the security tests: a minimal runtime spec, a runc harness and an in-container syscall probe."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

# Beside the repository (the layout CI uses), else the machine's shared folder.
SHARED = next((p for p in (Path(__file__).resolve().parents[2].parent / "shared", Path("/work/shared")) if p.is_dir()),
              Path("/work/shared"))
MOBY_SECCOMP = SHARED / "testdata" / "moby-profiles" / "seccomp"
MOBY_APPARMOR = SHARED / "testdata" / "moby-profiles" / "apparmor"


def base_spec(args=("true",), uid: int = 0) -> dict:
    """A minimal runtime spec: the host's /usr read-only under a busybox-style root, new namespaces."""
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": {"uid": uid, "gid": uid}, "args": list(args),
                    "env": ["PATH=/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE=1"], "cwd": "/"},
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sec",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755", "size=64k"]},
            {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "nodev", "size=1m"]},
            {"destination": "/usr", "type": "bind", "source": "/usr", "options": ["rbind", "ro", "nosuid"]},
        ],
        "linux": {"namespaces": [{"type": t} for t in ("pid", "mount", "ipc", "uts", "network")],
                  "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"]},
    }


class RuncBundle:
    """Runs a spec under runc in a private state dir; every container is deleted afterwards."""

    def __init__(self, base: Path):
        self.base = base
        self.state = base / "runc-state"
        rootfs = base / "bundle" / "rootfs"
        for name in ("proc", "dev", "tmp", "usr", "etc"):
            (rootfs / name).mkdir(parents=True, exist_ok=True)
        for link in ("bin", "sbin", "lib", "lib64"):
            os.symlink(f"usr/{link}", rootfs / link)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/:/bin/sh\nnobody:x:1000:1000::/:/bin/sh\n")

    def run(self, spec: dict, timeout: float = 60) -> subprocess.CompletedProcess:
        bundle = self.base / "bundle"
        (bundle / "config.json").write_text(json.dumps(spec))
        cid = f"pallet-sec-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            return subprocess.run(["runc", "--root", str(self.state), "run", "--bundle", str(bundle), cid],
                                  capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        finally:
            subprocess.run(["runc", "--root", str(self.state), "delete", "-f", cid], capture_output=True)


# A probe run inside the container: tries each call and prints what the kernel answered.
PROBE = r"""
import ctypes, errno, json, os
libc = ctypes.CDLL(None, use_errno=True)
def call(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(nr, *[ctypes.c_long(a) for a in args])
    return 0 if ret >= 0 else errno.errorcode.get(ctypes.get_errno(), ctypes.get_errno())
status = dict(line.split(":\t", 1) for line in open("/proc/self/status").read().splitlines() if ":\t" in line)
out = {k: status[k].strip() for k in ("CapEff", "CapPrm", "CapBnd", "CapInh", "CapAmb", "Seccomp", "NoNewPrivs")}
out["unshare_user"] = call(272, 0x10000000)
out["keyctl"] = call(250, 0, 0)               # KEYCTL_GET_KEYRING_ID of the thread keyring
out["clone3"] = call(435, 0, 0)               # size 0: EINVAL when allowed, ENOSYS when filtered
out["personality_query"] = call(135, 0xFFFFFFFF)
out["personality_bad"] = call(135, 0x0400000)   # READ_IMPLIES_EXEC
out["mount"] = call(165, 0, 0, 0, 0, 0)
out["chroot"] = call(161, 0)                  # NULL path: EFAULT when allowed
print(json.dumps(out))
"""


def probe_args() -> list[str]:
    return ["/usr/bin/python3", "-I", "-c", PROBE]


def run_probe(runc: RuncBundle, spec: dict) -> dict:
    spec["process"]["args"] = probe_args()
    done = runc.run(spec)
    assert done.returncode == 0, f"probe failed ({done.returncode}): {done.stderr}{done.stdout}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def seccomp_decision(oci: dict, name: str, args=()) -> tuple[str, int | None]:
    """What an OCI ``linux.seccomp`` filter answers for one call: ``(action, errno)``.

    Enough of libseccomp's semantics for these profiles: the first rule naming the call whose
    argument comparisons all hold decides, else the default action.
    """
    def holds(cmp: dict) -> bool:
        arg = args[cmp["index"]] if cmp["index"] < len(args) else 0
        value, op = cmp["value"], cmp["op"]
        if op == "SCMP_CMP_MASKED_EQ":
            return arg & value == cmp.get("valueTwo", 0)
        return {"SCMP_CMP_EQ": arg == value, "SCMP_CMP_NE": arg != value, "SCMP_CMP_LT": arg < value,
                "SCMP_CMP_LE": arg <= value, "SCMP_CMP_GT": arg > value, "SCMP_CMP_GE": arg >= value}[op]

    for rule in oci["syscalls"]:
        if name in rule["names"] and all(holds(c) for c in rule.get("args", [])):
            return rule["action"], rule.get("errnoRet")
    return oci["defaultAction"], oci.get("defaultErrnoRet")
