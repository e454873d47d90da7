"""What a RUN step sees of the network: --network host/none (build default and per RUN), the build-time
/etc/hosts and /etc/resolv.conf, and --add-host."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from tests.build.conftest import assert_nothing_left


def host_nameservers() -> list[str]:
    with open("/etc/resolv.conf") as handle:
        return [line.split()[1] for line in handle if line.startswith("nameserver") and len(line.split()) > 1]


def nameservers(text: bytes) -> list[str]:
    return [line.split()[1] for line in text.decode().splitlines() if line.startswith("nameserver")]


def hosts_entries(text: bytes) -> list[tuple[str, str]]:
    """``(address, name)`` for every name on every non-comment line."""
    pairs = []
    for line in text.decode().splitlines():
        fields = line.split("#", 1)[0].split()
        pairs += [(fields[0], name) for name in fields[1:]]
    return pairs


@pytest.fixture
def host_http(tmp_path):
    """An HTTP server on the host's loopback: reachable from a RUN only in the host's network namespace."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "f").write_text("from the host\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/f"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_run_network_host_reaches_the_hosts_loopback_and_none_does_not(build, host_http):
    # busybox's own wget -T segfaults (Debian's busybox-static), hence timeout(1)
    probe = f"timeout 10 wget -q -O /{{out}} {host_http} || echo unreachable > /{{out}}"
    dockerfile = ("FROM busybox\n"
                  f"RUN {probe.format(out='default')}\n"
                  f"RUN --network=host {probe.format(out='host')}\n"
                  f"RUN --network=none {probe.format(out='none')}\n"
                  "RUN --network=none ls /sys/class/net > /none-links\n")
    build(dockerfile, {}, "-t", "nets")
    fs = build.filesystem("nets")
    assert fs["default"].data == b"from the host\n"  # the build's default network is the host's
    assert fs["host"].data == b"from the host\n"
    assert fs["none"].data == b"unreachable\n"
    assert fs["none-links"].data == b"lo\n"
    # --network none for the whole build; a RUN's own --network=host still wins
    build(dockerfile.replace("/default", "/default2"), {}, "-t", "nets-none", "--network", "none")
    fs = build.filesystem("nets-none")
    assert fs["default2"].data == b"unreachable\n"
    assert fs["host"].data == b"from the host\n"
    assert_nothing_left(build.pallet)


def test_run_sees_the_build_time_hosts_and_resolv_conf(build):
    dockerfile = ("FROM busybox\n"
                  "RUN cp /etc/hosts /hosts-seen && cp /etc/resolv.conf /resolv-seen && echo done > /ran\n")
    for network in ("host", "none", "default"):
        build(dockerfile.replace("/ran", f"/ran-{network}"), {}, "-t", f"etc-{network}", "--network", network,
              "--add-host", "db.example:10.1.2.3", "--add-host", "v6.example:[2001:db8::7]")
        fs = build.filesystem(f"etc-{network}")
        entries = hosts_entries(fs["hosts-seen"].data)
        assert ("127.0.0.1", "localhost") in entries
        assert ("10.1.2.3", "db.example") in entries and ("2001:db8::7", "v6.example") in entries
        assert nameservers(fs["resolv-seen"].data) == host_nameservers()  # the host's resolvers
        # the mount-point stubs of the build-time files are not left in the image's layers
        assert "etc/hosts" not in fs and "etc/resolv.conf" not in fs


def test_add_host_is_part_of_the_step_key(build):
    dockerfile = "FROM busybox\nRUN grep example /etc/hosts > /seen\n"
    build(dockerfile, {}, "-t", "first", "--add-host", "a.example:10.0.0.1")
    build(dockerfile, {}, "-t", "second", "--add-host", "a.example:10.0.0.2")
    assert build.filesystem("first")["seen"].data == b"10.0.0.1\ta.example\n"
    assert build.filesystem("second")["seen"].data == b"10.0.0.2\ta.example\n"  # re-ran, not taken from cache
    again = build(dockerfile, {}, "-t", "third", "--add-host", "a.example:10.0.0.1")
    assert "#2 CACHED" in again.stderr


def test_add_host_gateway(build):
    dockerfile = "FROM busybox\nRUN grep gw.example /etc/hosts > /seen\n"
    # in the host's network namespace the host is loopback
    build(dockerfile, {}, "-t", "gw-host", "--add-host", "gw.example:host-gateway")
    assert build.filesystem("gw-host")["seen"].data == b"127.0.0.1\tgw.example\n"
    # with no network there is no gateway: a clear error, as the start of such a container gives
    failed = build(dockerfile, {}, "--network", "none", "--add-host", "gw.example:host-gateway", check=False)
    assert failed.returncode == 1
    assert failed.error_lines[-1] == ("Error: Dockerfile:2: --add-host host-gateway: the container's network has "
                                      "no gateway to the host (set [network] host_gateway_ip in the config)")
    assert_nothing_left(build.pallet)
    # the configured gateway address is used, as dockerd's --host-gateway-ip
    with open(build.pallet.env["PALLET_CONFIG"], "a") as config:
        config.write('[network]\nhost_gateway_ip = "192.0.2.9"\n')
    build(dockerfile, {}, "-t", "gw-configured", "--network", "none", "--add-host", "gw.example:host-gateway")
    assert build.filesystem("gw-configured")["seen"].data == b"192.0.2.9\tgw.example\n"


@pytest.mark.parametrize("spec, message", [
    ("nocolon", 'Error: invalid argument "nocolon" for "--add-host" flag: bad format for add-host: "nocolon"'),
    ("h:999.1.1.1", 'Error: invalid argument "h:999.1.1.1" for "--add-host" flag: invalid IP address in add-host: '
                    '"999.1.1.1"'),
])
def test_bad_add_host_is_a_usage_error(build, spec, message):
    result = build("FROM busybox\n", {}, "--add-host", spec, check=False)
    assert result.returncode == 2 and result.error_lines == [message]


def test_run_steps_get_shm_size_memory_and_cpu_limits_and_bad_sizes_are_refused(build):
    dockerfile = ("FROM busybox\n"
                  "RUN df -k /dev/shm | tail -1 | awk '{print $2}' > /shm && "
                  "cat /sys/fs/cgroup/memory/memory.limit_in_bytes > /mem && "
                  "cat /sys/fs/cgroup/cpu/cpu.shares > /shares\n")
    build(dockerfile, {}, "-t", "limits", "--shm-size", "96m", "-m", "64m", "--cpu-shares", "256")
    fs = build.filesystem("limits")
    assert (fs["shm"].data, fs["mem"].data, fs["shares"].data) == (b"98304\n", b"%d\n" % (64 << 20), b"256\n")
    bad = build(dockerfile, {}, "--shm-size", "lots", check=False)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == ('Error: invalid argument "lots" for "--shm-size" flag: '
                                                    "invalid size: 'lots'")
