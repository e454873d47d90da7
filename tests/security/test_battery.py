"""The security-check battery, run for real under runc with specs from the security profiles."""

from __future__ import annotations

import os

from pallet.plugins.security.battery import SCRIPT, parse_report

# Docker's device rules: deny everything, then the usual character devices (none of them block devices).
DEVICE_RULES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": "c", "major": major, "minor": minor, "access": "rwm"}
    for major, minor in ((1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1), (5, 2))]


def battery(runc, spec, privileged=False) -> dict[str, bool | None]:
    """Run the script in ``spec`` with the masks, device rules and /sys mount a container gets from kernel/spec.py."""
    spec["process"]["args"] = ["/bin/busybox", "sh", "-c", SCRIPT]
    # What Docker's --privileged gives: every device, nothing masked or read-only.
    devices = [{"allow": True, "access": "rwm"}] if privileged else DEVICE_RULES
    spec["linux"]["resources"] = {"devices": devices}
    spec["linux"]["maskedPaths"] = [] if privileged else ["/proc/kcore", "/sys/firmware"]
    spec["linux"]["readonlyPaths"] = [] if privileged else ["/proc/sys"]
    spec["mounts"].append({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "ro"]})
    done = runc.run(spec)
    assert done.returncode == 0, done.stderr
    return {r.id: r.closed for r in parse_report(done.stdout)}


def test_default_container_closes_everything(secure_spec, runc):
    spec, _ = secure_spec()
    results = battery(runc, spec)
    assert results == {key: True for key in results}, results


def test_privileged_container_shows_the_openings(secure_spec, runc):
    spec, _ = secure_spec(privileged=True)
    results = battery(runc, spec, privileged=True)
    for opened in ("mount", "modules", "userns", "ptrace", "procsys", "mknod", "hostname", "seccomp"):
        assert results[opened] is False, (opened, results)
    assert results["hostpids"] is True  # a privileged container still has its own PID namespace
    # /proc/kcore stays closed only where the kernel has none (as here); /sys/firmware where it is empty.


def test_report_parsing_marks_missing_checks():
    results = {r.id: r for r in parse_report("CHECK mount closed refused\nnoise\nCHECK kcore open read 16 bytes\n")}
    assert results["mount"].closed is True and results["kcore"].closed is False
    assert results["seccomp"].closed is None and results["seccomp"].detail == "no report"


def test_sharing_the_host_pid_namespace_opens_ptrace_and_host_pids(secure_spec, runc):
    spec, _ = secure_spec()
    spec["linux"]["namespaces"] = [ns for ns in spec["linux"]["namespaces"] if ns["type"] != "pid"]
    with open("/proc/self/comm") as handle:
        comm = handle.read().strip()
    spec["process"]["env"] += [f"PALLET_CHECK_HOST_PID={os.getpid()}", f"PALLET_CHECK_HOST_COMM={comm}"]
    results = battery(runc, spec)
    assert results["ptrace"] is False and results["hostpids"] is False
    assert results["mount"] is True and results["seccomp"] is True
